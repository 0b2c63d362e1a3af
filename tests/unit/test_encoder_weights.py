"""Pretrained ResNet weights into the U-Net / DeepLabV3+ encoders (issue 17).

The weight files are made here in torchvision's layout (tests/resnet_states.py: its key names and shapes,
pinned by the key counts torchvision's resnet18/34/50 state dicts have; random values), so no download is
needed; the checks say which tensors changed and how the first convolution was adapted.
"""
import datetime
import hashlib

import numpy as np
import pytest
import torch
from resnet_states import STAGES, TORCHVISION_KEYS, torchvision_resnet

from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import build_card
from landcover_plugin.core.schema import ClassSchema
from training.encoder_weights import band_colours, load_encoder_weights
from training.export_onnx import export
from training.networks import available_architectures, build_network

BAND_NAMES = {3: ["red", "green", "blue"],
              4: ["Blue", "Green", "Red", "NIR"],  # Zion's Landsat 8 order
              7: [f"band {i}" for i in range(1, 8)],  # no colour names: the mean filter everywhere
              13: ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]}
RGB_OF = {3: {0: 0, 1: 1, 2: 2}, 4: {2: 0, 1: 1, 0: 2}, 7: {}, 13: {3: 0, 2: 1, 1: 2}}  # band -> RGB filter


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    files = {}
    for name in STAGES:
        state = torchvision_resnet(name, seed=len(name))
        assert len(state) == TORCHVISION_KEYS[name]
        files[name] = (folder / f"{name}-torchvision.pth", state)
        torch.save(state, files[name][0])
    return files


def _snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("bands", [3, 4, 7, 13])
@pytest.mark.parametrize("architecture", ["unet_resnet18", "unet_resnet34", "unet_resnet50",
                                          "deeplabv3plus_resnet50"])
def test_torchvision_layout_loads_into_every_encoder_for_any_band_count(weight_files, architecture, bands):
    depth = architecture.rsplit("_", 1)[1]
    path, state = weight_files[depth]
    torch.manual_seed(0)
    model = build_network(architecture, bands, 5, base_width=8)
    before = _snapshot(model)
    events = RecordingEvents()
    info = load_encoder_weights(model, path, BAND_NAMES[bands], events)
    after = model.state_dict()

    encoder_keys = [k for k in after if k.startswith("encoder.")]
    assert len(encoder_keys) == TORCHVISION_KEYS[depth] - 2  # everything but fc
    for key in encoder_keys:
        name = key[len("encoder."):]
        if name != "conv1.weight":
            torch.testing.assert_close(after[key], state[name].to(after[key].dtype), rtol=0, atol=0)
    for key in after:  # the decoder, the per-pixel branch and the head keep their random start
        if not key.startswith("encoder."):
            assert torch.equal(after[key], before[key]), key

    conv1, rgb = after["encoder.conv1.weight"], state["conv1.weight"]
    assert conv1.shape == (64, bands, 7, 7)
    scale, mean = 3 / bands, rgb.mean(dim=1)
    for band in range(bands):
        expected = rgb[:, RGB_OF[bands][band]] if band in RGB_OF[bands] else mean
        torch.testing.assert_close(conv1[:, band], expected * scale)

    assert info["loaded"] == len(encoder_keys) and info["new_in_encoder"] == []
    assert info["new_outside_encoder"] == len(after) - len(encoder_keys)
    assert info["unused"] == ["fc.bias", "fc.weight"] and info["encoder"] == depth
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and info["file"] == path.name
    log = " ".join(e["message"] for e in events.of_type("log"))
    assert f"loaded {len(encoder_keys)} of {len(encoder_keys)} encoder tensors" in log and "fc.weight" in log
    assert ("band(s)" in log) == (bands != 3)  # the bands without an RGB filter are named


@pytest.mark.parametrize("layout", ["module.", "backbone.", "encoder.", "moco", "satlas", "timm"])
def test_common_checkpoint_layouts_are_recognised(tmp_path, weight_files, layout):
    path, state = weight_files["resnet18"]
    if layout == "moco":  # SSL4EO-S12 MoCo: query and key encoders, a projection head instead of fc
        wrapped = {"epoch": 100, "arch": "resnet18", "state_dict": {
            **{f"module.encoder_q.{k}": v for k, v in state.items() if not k.startswith("fc.")},
            "module.encoder_q.fc.0.weight": torch.zeros(512, 512),
            **{f"module.encoder_k.{k}": torch.zeros_like(v) for k, v in state.items()}}}
    elif layout == "satlas":
        wrapped = {f"backbone.backbone.resnet.{k}": v for k, v in state.items()}
        wrapped["intermediates.0.weight"] = torch.zeros(3)
    elif layout == "timm":  # timm's resnet18: torchvision's names, fc included, in a 'model' entry
        wrapped = {"model": dict(state), "epoch": 300}
    else:
        wrapped = {f"{layout}{k}": v for k, v in state.items()}
    torch.save(wrapped, tmp_path / "w.pth")
    model = build_network("unet_resnet18", 4, 3, base_width=8)
    info = load_encoder_weights(model, tmp_path / "w.pth", BAND_NAMES[4], RecordingEvents())
    assert info["loaded"] == TORCHVISION_KEYS["resnet18"] - 2 and info["new_in_encoder"] == []
    torch.testing.assert_close(model.encoder.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_a_13_band_first_convolution_is_taken_as_it_is(tmp_path):
    state = torchvision_resnet("resnet18", seed=3, in_channels=13)  # as SSL4EO-S12's Sentinel-2 ResNets
    torch.save(state, tmp_path / "s2.pth")
    model = build_network("deeplabv3plus_resnet18", 13, 4, base_width=8)
    info = load_encoder_weights(model, tmp_path / "s2.pth", BAND_NAMES[13], RecordingEvents())
    assert torch.equal(model.encoder.conv1.weight.detach(), state["conv1.weight"])
    assert "taken as they are" in info["first_conv"]


def test_weights_of_another_network_are_refused_with_the_fix(tmp_path, weight_files):
    model = build_network("unet_resnet18", 4, 3, base_width=8)
    with pytest.raises(BadInputError, match="holds a resnet34.*unet_resnet34"):
        load_encoder_weights(model, weight_files["resnet34"][0], BAND_NAMES[4], RecordingEvents())
    torch.save({"weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(BadInputError, match="does not hold a ResNet"):
        load_encoder_weights(model, tmp_path / "other.pth", BAND_NAMES[4], RecordingEvents())
    # unreadable files: our own reason and fix, never PyTorch's advice to load with weights_only=False
    (tmp_path / "text.pth").write_text("not a torch file" * 20)
    torch.save({"conv1.weight": torch.zeros(1), "when": datetime.date(2024, 1, 1)}, tmp_path / "objects.pth")
    whole = (tmp_path / "objects.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(whole[:len(whole) // 2])
    for name, reason in (("text", "is not a PyTorch weights file"), ("objects", "holds Python objects other than "
                                                                               "tensors"),
                         ("cut", "is a damaged or incomplete PyTorch file")):
        with pytest.raises(BadInputError) as caught:
            load_encoder_weights(model, tmp_path / f"{name}.pth", BAND_NAMES[4], RecordingEvents())
        message = str(caught.value)
        assert reason in message and "Give a .pth/.pt state dict of a ResNet encoder" in message, message
        assert "weights_only" not in message and "file an issue" not in message.lower(), message
    with pytest.raises(BadInputError, match="ResNet encoder"):
        load_encoder_weights(build_network("unet", 4, 3, 8), weight_files["resnet18"][0], BAND_NAMES[4],
                             RecordingEvents())


def test_band_colours_by_name():
    assert band_colours(["coastal", "blue", "green", "red", "red edge 1", "nir"]) == {1: 2, 2: 1, 3: 0}
    assert band_colours(["band 1", "band 2", "band 3"]) == {0: 0, 1: 1, 2: 2}  # three unnamed: taken as RGB
    assert band_colours(["band 1", "band 2", "band 3", "band 4"]) == {}


@pytest.mark.parametrize("architecture", ["unet_resnet18", "deeplabv3plus_resnet18"])
def test_encoder_nets_keep_size_and_export_the_onnx_contract(tmp_path, weight_files, architecture):
    assert architecture in available_architectures()
    model = build_network(architecture, 4, 5, base_width=8)
    load_encoder_weights(model, weight_files["resnet18"][0], BAND_NAMES[4], RecordingEvents())
    x = torch.randn(2, 4, 30, 30, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 5, 30, 30)
    out[:, 1].sum().backward()
    assert x.grad.abs().sum() > 0
    card = build_card(schema=ClassSchema.from_names([f"c{i}" for i in range(5)]), band_names=BAND_NAMES[4],
                      input_dtype="float32", nodata=None, mean=[0.0] * 4, std=[1.0] * 4, tile_size=64, overlap=0.25,
                      resolution=None, crs=None, architecture=architecture, metrics={})
    sample = np.random.default_rng(0).standard_normal((2, 4, 64, 64)).astype(np.float32)
    result = export(model.eval(), tmp_path / "m.onnx", card=card, tile_size=64, band_count=4, sample=sample)
    assert result["max_abs_diff"] < 1e-4
