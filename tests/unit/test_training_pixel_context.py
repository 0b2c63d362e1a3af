"""The ``pixel_context`` network (sparse polygons, issue 11) and the trainer's ``auto`` choices: the architecture
and the number of epochs."""
import json

import numpy as np
import onnx
import pytest
import torch

from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY, build_card
from landcover_plugin.core.schema import ClassSchema
from landcover_plugin.core.train.options import TrainConfig
from training.choices import AUTO_EPOCHS, SPARSE_SHARE, choose_epochs
from training.export_onnx import export
from training.loop import choose_architecture, train
from training.networks import available_architectures, build_network


@pytest.mark.parametrize("bands,size", [(4, 32), (7, 30), (13, 17)])
def test_builds_for_any_band_count_keeps_size_and_exports(tmp_path, bands, size):
    torch.manual_seed(0)
    net = build_network("pixel_context", bands, 5, base_width=8)
    x = torch.randn(2, bands, size, size, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 5, size, size)
    np.testing.assert_allclose(torch.softmax(out, 1).sum(1).detach().numpy(), 1.0, atol=1e-5)
    out[:, 1].sum().backward()
    assert x.grad.abs().sum() > 0
    names = [f"class {i}" for i in range(5)]
    card = build_card(schema=ClassSchema.from_names(names), band_names=[f"b{i}" for i in range(bands)],
                      input_dtype="float32", nodata=None, mean=[0.0] * bands, std=[1.0] * bands, tile_size=size,
                      overlap=0.25, resolution=None, crs=None, architecture="pixel_context", metrics={})
    result = export(net.eval(), tmp_path / "m.onnx", card=card, tile_size=size, band_count=bands)
    assert result["max_abs_diff"] < 1e-4


def test_translation_equivariant_away_from_borders():
    torch.manual_seed(1)
    net = build_network("pixel_context", 4, 3, base_width=8).eval()
    x = torch.randn(1, 4, 40, 40)
    dy, dx, margin = 3, 5, 2  # the 5x5 averaging reaches 2 px
    with torch.no_grad():
        whole = net(x)
        shifted = net(x[..., dy:, dx:])
    a = whole[..., dy + margin:40 - margin, dx + margin:40 - margin]
    b = shifted[..., margin:40 - dy - margin, margin:40 - dx - margin]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_auto_chooses_by_labelled_share():
    events = RecordingEvents()
    assert "pixel_context" in available_architectures()
    assert choose_architecture("auto", [300, 200], 10, 64, events) == "pixel_context"   # 1 % labelled
    assert choose_architecture("auto", [20000, 20000], 10, 64, events) == "unet"        # 98 % labelled
    assert choose_architecture("deeplabv3plus", [300, 200], 10, 64, events) == "deeplabv3plus"


def test_automatic_epochs_follow_the_labelled_share():
    events = RecordingEvents()
    assert choose_epochs(0, [300, 200], 10, 64, events) == AUTO_EPOCHS["sparse"] == 30   # 1 % labelled
    assert choose_epochs(0, [20000, 20000], 10, 64, events) == AUTO_EPOCHS["dense"] == 60  # 98 % labelled
    assert choose_epochs(12, [300, 200], 10, 64, events) == 12
    assert sum("Epochs 'automatic'" in e["message"] for e in events.of_type("log")) == 2


def test_the_trainer_resolves_automatic_epochs_and_the_card_says_how_many(chips, tmp_path):
    meta = json.loads((chips / "dataset.json").read_text())
    train_chips = [c for c in meta["chips"] if c["split"] == "train"]
    share = sum(c["labelled_pixels"] for c in train_chips) / (len(train_chips) * meta["chip_size"] ** 2)
    expected = AUTO_EPOCHS["sparse" if share < SPARSE_SHARE else "dense"]
    events = RecordingEvents()
    out = tmp_path / "auto.onnx"
    outputs = train(TrainConfig(dataset_dir=str(chips), output=str(out), epochs=0, time_limit_minutes=0.02,
                                batch_size=4, base_width=8, device="cpu", refit=False), events)
    assert not outputs["cancelled"] and outputs["epochs_run"] < expected  # the time limit ended it
    card = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}[CARD_KEY])
    assert card["training"]["epochs"] == expected
    assert any(f"so {expected} epochs at most" in e["message"] for e in events.of_type("log"))
