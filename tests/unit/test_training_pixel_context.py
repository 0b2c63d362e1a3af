"""The ``pixel_context`` network (sparse polygons, issue 11) and the trainer's ``auto`` architecture choice."""
import numpy as np
import pytest
import torch

from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import build_card
from landcover_plugin.core.schema import ClassSchema
from training.export_onnx import export
from training.loop import choose_architecture
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
