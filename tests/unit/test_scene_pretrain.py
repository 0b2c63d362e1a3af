"""Self-supervised pretraining of the encoder on the scene itself (issue 17): masked-image reconstruction over
random tiles of the rstoolbox raster the chips were cut from, then training on the polygons from that encoder."""
import json

import numpy as np
import onnx
import pytest
import torch

from landcover_plugin.core.chips.dataset import load_spec
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY
from landcover_plugin.core.train.options import TrainConfig
from training import checkpoint, scene_pretrain
from training.loop import train
from training.networks import build_network
from training.scene_pretrain import pretrain_encoder, scene_tiles


def test_tiles_are_standardised_with_the_dataset_statistics_and_nodata_zero(chips):
    spec = load_spec(chips)
    tiles, valid = scene_tiles(spec.raw["source"]["image"], spec, 64, 32, np.random.default_rng(0))
    assert tiles.shape == (64, 7, 32, 32) and tiles.dtype == np.float32 and valid.mean(axis=(1, 2)).min() >= 0.5
    assert np.all(tiles.transpose(1, 0, 2, 3)[:, ~valid] == 0)
    inside = tiles.transpose(1, 0, 2, 3)[:, valid]
    assert np.abs(inside.mean(axis=1)).max() < 0.5 and 0.5 < inside.std(axis=1).mean() < 1.5


def test_tiles_of_chips_cut_from_chosen_bands_are_those_bands(shared_data, tmp_path):
    """Chips of rstoolbox's bands 5, 4, 3 (of 7): the tiles read those bands (before, the scene's 7 bands against
    the chips' 3 stopped the run, saying the raster had changed)."""
    from landcover_plugin.core.chips.export import export_chips  # noqa: PLC0415
    from landcover_plugin.core.chips.options import ChipExportOptions  # noqa: PLC0415

    export_chips(ChipExportOptions(shared_data / "rstoolbox" / "landsat5_1988_7band.tif", tmp_path / "chips",
                                   labels_vector=shared_data / "rstoolbox" / "training_polygons.gpkg",
                                   class_field="class", chip_size=32, bands=[5, 4, 3]))
    spec = load_spec(tmp_path / "chips")
    tiles, valid = scene_tiles(spec.raw["source"]["image"], spec, 64, 32, np.random.default_rng(0))
    inside = tiles.transpose(1, 0, 2, 3)[:, valid]
    assert tiles.shape == (64, 3, 32, 32) and np.abs(inside.mean(axis=1)).max() < 0.5  # standardised as the chips


def test_reconstruction_learns(chips):
    spec, events = load_spec(chips), RecordingEvents()
    # 60 steps on small tiles, whatever the clock says: a busy machine makes few steps in a time budget
    state, info = pretrain_encoder("unet_resnet18", spec, 8, 0.01, torch.device("cpu"), events, seed=3,
                                   min_steps=60, tile=32, batch=8)
    assert info["steps"] >= 60 and info["loss_last"] < 0.95 * info["loss_first"], info
    torch.manual_seed(3)
    fresh = build_network("unet_resnet18", 7, 7, 8).encoder.state_dict()
    assert not torch.equal(state["layer2.0.conv1.weight"], fresh["layer2.0.conv1.weight"])
    assert "reconstruction loss of the hidden pixels" in " ".join(e["message"] for e in events.of_type("log"))


def test_the_training_run_starts_from_the_scene_pretrained_encoder(chips, tmp_path):
    out, events = tmp_path / "model.onnx", RecordingEvents()
    config = TrainConfig(dataset_dir=str(chips), output=str(out), epochs=1, batch_size=4, base_width=8,
                         patience=0, device="cpu", refit=False, seed=5, scene_pretrain_minutes=0.05)
    outputs = train(config, events)
    logs = " ".join(e["message"] for e in events.of_type("log"))
    assert outputs["architecture"] == "unet_resnet18" and "Scene pretraining of the unet_resnet18 encoder" in logs
    assert "Epoch 1: encoder frozen" in logs
    (state, info), = scene_pretrain._MEMO.values()  # what the run pretrained (kept for its refit)
    trained = checkpoint.load(outputs["LAST_CHECKPOINT"])["model"]
    assert torch.equal(trained["encoder.layer2.0.conv1.weight"], state["layer2.0.conv1.weight"])  # frozen epoch
    card = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}[CARD_KEY])
    assert card["network"]["encoder_weights"] == info and info["method"] == "masked-image reconstruction"


def test_scene_pretraining_needs_an_encoder_and_excludes_weights(chips, tmp_path):
    common = dict(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), epochs=1, device="cpu")
    with pytest.raises(BadInputError, match="Scene pretraining needs an architecture with a ResNet encoder"):
        train(TrainConfig(architecture="pixel_context", scene_pretrain_minutes=1.0, **common), RecordingEvents())
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"x")
    with pytest.raises(BadInputError, match="either encoder weights or scene pretraining"):
        TrainConfig(encoder_weights=str(weights), scene_pretrain_minutes=1.0, **common).validate()
