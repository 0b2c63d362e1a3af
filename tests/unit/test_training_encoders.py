"""Training with a pretrained encoder on real chips (rstoolbox, 7 bands): frozen first, then fine-tuned at a
lower learning rate with its batch norm statistics kept (small batches); the weights' file and checksum in the
model card; the ONNX contract unchanged. The weights file is a torchvision-layout ResNet-18 made in the test."""
import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from resnet_states import torchvision_resnet

from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY
from landcover_plugin.core.train.options import TrainConfig
from training import checkpoint
from training.loop import train

RUN = {"batch_size": 4, "base_width": 8, "learning_rate": 3e-3, "patience": 0, "device": "cpu", "refit": False,
       "freeze_encoder_epochs": 1}


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18-f37072fd.pth"
    state = torchvision_resnet("resnet18", seed=7)
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def runs(chips, weights, tmp_path_factory):
    """Epoch 1 with the encoder frozen (architecture auto: the U-Net on the weights' ResNet-18), then the run
    resumed for epoch 2 with the encoder training."""
    out = tmp_path_factory.mktemp("pretrained") / "model.onnx"
    first, second = RecordingEvents(), RecordingEvents()
    common = dict(RUN, dataset_dir=str(chips), output=str(out), encoder_weights=str(weights[0]))
    frozen = train(TrainConfig(epochs=1, architecture="auto", **common), first)
    after_frozen = checkpoint.load(frozen["LAST_CHECKPOINT"])
    tuned = train(TrainConfig(epochs=2, resume=frozen["LAST_CHECKPOINT"], **common), second)
    return frozen, after_frozen, tuned, checkpoint.load(tuned["LAST_CHECKPOINT"]), first, second, out


def _encoder(model_state):
    return {k[len("encoder."):]: v for k, v in model_state.items() if k.startswith("encoder.")}


def test_the_encoder_is_frozen_first_then_tuned_with_its_batch_norm_statistics_kept(weights, runs):
    _, state = weights
    frozen, after_frozen, tuned, after_tuned, first, second, _ = runs
    assert frozen["architecture"] == tuned["architecture"] == "unet_resnet18"
    one, two = _encoder(after_frozen["model"]), _encoder(after_tuned["model"])
    for name, value in one.items():  # epoch 1: nothing of the encoder moved
        if name != "conv1.weight":
            assert torch.equal(value, state[name].to(value.dtype)), name
    decoder_moved = [k for k, v in after_frozen["model"].items()
                     if not k.startswith("encoder.") and v.dtype.is_floating_point
                     and not torch.equal(v, after_tuned["model"][k])]
    assert decoder_moved  # the decoder trains in both epochs
    assert not torch.equal(one["layer3.0.conv1.weight"], two["layer3.0.conv1.weight"])  # epoch 2: tuned
    assert not torch.equal(one["conv1.weight"], two["conv1.weight"])
    for name in ("bn1.running_mean", "layer2.1.bn2.running_var", "layer4.0.downsample.1.running_mean"):
        assert torch.equal(two[name], state[name])  # batches of 4: the pretrained statistics stay
    groups = after_tuned["optimizer"]["param_groups"]
    assert [g["lr_scale"] for g in groups] == [0.1, 1.0]
    assert groups[0]["lr"] == pytest.approx(0.1 * groups[1]["lr"])
    logs = " ".join(e["message"] for e in first.of_type("log") + second.of_type("log"))
    assert "unet_resnet18, the U-Net on the weights' resnet18" in logs
    assert "Epoch 1: encoder frozen" in logs and "Epoch 2: encoder unfrozen" in logs
    assert "loaded 120 of 120 encoder tensors" in logs and "mean RGB filter" in logs


def test_the_card_names_the_weights_and_the_onnx_contract_holds(chips, weights, runs):
    path, _ = weights
    *_, tuned, _, _, _, out = runs
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    card = json.loads(props[CARD_KEY])
    source = card["network"]["encoder_weights"]
    assert source["file"] == path.name and source["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert source["encoder"] == "resnet18" and source["unused"] == ["fc.bias", "fc.weight"]
    assert card["architecture"] == "unet_resnet18" and props["model_type"] == "Segmentor"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": np.zeros((3, 7, 32, 32), np.float32)})[0]
    assert probs.shape == (3, 4, 32, 32)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert tuned["onnx_max_abs_diff"] < 1e-4 and tuned["BEST_VAL_ACCURACY"] is not None


def test_encoder_weights_need_an_encoder_architecture(chips, weights, tmp_path):
    config = TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), architecture="unet", epochs=1,
                         encoder_weights=str(weights[0]), **{k: v for k, v in RUN.items()})
    with pytest.raises(BadInputError, match="need an architecture with a ResNet encoder.*unet_resnet18"):
        train(config, RecordingEvents())
    with pytest.raises(BadInputError, match="encoder weights file .* does not exist"):
        TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"),
                    encoder_weights=str(tmp_path / "missing.pth")).validate()
