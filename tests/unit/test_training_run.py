"""A tiny real training run on chips cut from the rstoolbox Landsat scene and its digitised polygons.

The expected numbers come from the chips themselves (majority-class share of the validation labels) and
from an independent re-computation: the exported ONNX model is run with onnxruntime on the validation chips
standardised here with numpy, and scored here with numpy.
"""
import csv
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import rasterio
import torch

from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY, card_from_metadata
from landcover_plugin.core.train.options import TrainConfig
from training import checkpoint
from training.export_onnx import ProbabilityModel
from training.loop import train
from training.networks import build_network

# refit off: the exported model is the best epoch scored on the validation chips (tests/unit/test_training_refit.py
# covers the refit on all polygons)
TINY = {"epochs": 6, "batch_size": 4, "base_width": 8, "learning_rate": 3e-3, "patience": 0, "device": "cpu",
        "refit": False}


@pytest.fixture(scope="module")
def trained(chips, tmp_path_factory):
    events = RecordingEvents()
    out = tmp_path_factory.mktemp("model") / "rstoolbox.onnx"
    outputs = train(TrainConfig(dataset_dir=str(chips), output=str(out), **TINY), events)
    return outputs, events


def val_chips(folder):
    meta = json.loads((folder / "dataset.json").read_text())
    images, labels = [], []
    for chip in meta["chips"]:
        if chip["split"] == "val":
            with rasterio.open(folder / chip["image"]) as src:
                images.append(src.read().astype(np.float64))
            with rasterio.open(folder / chip["label"]) as src:
                labels.append(src.read(1))
    return meta, np.stack(images), np.stack(labels)


def test_validation_accuracy_is_clearly_above_the_majority_share(chips, trained):
    outputs, _ = trained
    _, _, labels = val_chips(chips)
    counts = np.bincount(labels[labels > 0])
    majority_share = counts.max() / counts.sum()
    assert outputs["BEST_VAL_ACCURACY"] >= min(0.95, majority_share + 0.25), (majority_share, outputs)
    assert outputs["BEST_VAL_MIOU"] > 0.5
    assert not outputs["cancelled"] and outputs["epochs_run"] == TINY["epochs"]


def test_onnx_model_reproduces_the_reported_validation_accuracy(chips, trained):
    outputs, _ = trained
    meta, images, labels = val_chips(chips)
    mean = np.asarray(meta["mean"])[None, :, None, None]
    std = np.asarray(meta["std"])[None, :, None, None]
    session = ort.InferenceSession(outputs["OUTPUT"], providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": ((images - mean) / std).astype(np.float32)})[0]
    assert probs.shape == (len(images), len(meta["classes"]), 32, 32)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)  # softmax inside the graph
    class_ids = np.array([c["id"] for c in meta["classes"]])
    predicted = class_ids[probs.argmax(axis=1)]
    labelled = labels > 0
    accuracy = (predicted[labelled] == labels[labelled]).mean()
    assert accuracy == pytest.approx(outputs["BEST_VAL_ACCURACY"], abs=1e-6)


def test_onnx_contract_metadata_and_dynamic_batch(chips, trained):
    outputs, _ = trained
    meta = json.loads((chips / "dataset.json").read_text())
    model = onnx.load(outputs["OUTPUT"])
    (inp,) = model.graph.input
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "input" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    # dynamic height and width: the classifier may run tiles of any multiple of the 32 px tile
    assert isinstance(dims[0], str) and dims[1:] == [7, "height", "width"]
    assert model.opset_import[0].version == 17
    props = {p.key: p.value for p in model.metadata_props}
    assert props["model_type"] == "Segmentor"
    assert json.loads(props["class_names"]) == {str(k): c["name"] for k, c in enumerate(meta["classes"])}
    assert props["tile_size"] == props["tiles_size"] == "32"
    assert float(props["resolution"]) == pytest.approx(3000.0)  # 30 m in cm
    np.testing.assert_allclose(json.loads(props["standardization_mean"]), np.asarray(meta["mean"]) / 255.0)
    card, assumptions = card_from_metadata(props, [None, 7, 32, 32], len(meta["classes"]))
    assert assumptions == [] and CARD_KEY in props
    assert [c["id"] for c in card["classes"]] == [c["id"] for c in meta["classes"]]
    # the default architecture is "auto": the card names the net it chose (these sparse polygons: pixel_context)
    assert card["architecture"] == outputs["architecture"] == "pixel_context"
    assert card["input_dtype"] == "uint8" and card["nodata"] == 255
    assert card["metrics"]["val_miou"] == outputs["BEST_VAL_MIOU"]
    # measured at export on the rstoolbox scene: the largest tile that keeps >= 99 % of the 32 px tile's labels
    agreed = card["tile_agreement"]
    assert agreed["tile"] % 32 == 0 and 32 <= agreed["tile"] <= 256 and agreed["pixels"] > 10_000
    assert agreed["agreement"] and all(share >= 0.99 for size, share in agreed["agreement"].items()
                                       if int(size) <= agreed["tile"])
    session = ort.InferenceSession(outputs["OUTPUT"], providers=["CPUExecutionProvider"])
    for batch, size in ((1, 32), (5, 32), (2, 96)):
        out = session.run(None, {"input": np.zeros((batch, 7, size, size), np.float32)})[0]
        assert out.shape == (batch, 4, size, size)


def test_export_round_trip_equals_the_best_checkpoint_in_torch(trained):
    outputs, _ = trained
    state = checkpoint.load(outputs["CHECKPOINT"])
    assert state["epoch"] == outputs["BEST_EPOCH"]
    net = build_network(state["network"]["architecture"], 7, 4, base_width=TINY["base_width"])
    net.load_state_dict(state["model"])
    model = ProbabilityModel(net).eval()
    session = ort.InferenceSession(outputs["OUTPUT"], providers=["CPUExecutionProvider"])
    for size in (32, 128):  # the export tile, and a bigger tile the classifier may run
        x = np.random.default_rng(1).standard_normal((3, 7, size, size)).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        got = session.run(None, {"input": x})[0]
        assert np.abs(got - expected).max() < 1e-4
    assert outputs["onnx_max_abs_diff"] < 1e-4


def test_events_metrics_and_curves(trained):
    outputs, events = trained
    metrics = events.of_type("metric")
    assert [m["epoch"] for m in metrics] == list(range(1, TINY["epochs"] + 1))
    for m in metrics:
        values = m["values"]
        for key in ("train_loss", "val_loss", "val_accuracy", "val_miou", "val_iou_forest", "val_iou_water"):
            assert key in values
        assert 0.0 <= values["val_accuracy"] <= 1.0 and values["train_loss"] > 0
    assert metrics[-1]["values"]["train_loss"] < metrics[0]["values"]["train_loss"]
    fractions = [p["fraction"] for p in events.of_type("progress")]
    assert fractions == sorted(fractions) and len(fractions) >= TINY["epochs"] * 2
    logs = " ".join(e["message"] for e in events.of_type("log"))
    assert "Training on CPU" in logs
    with open(outputs["CURVES_CSV"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == list(range(1, TINY["epochs"] + 1))
    assert float(rows[-1]["val_miou"]) == pytest.approx(metrics[-1]["values"]["val_miou"])
    with open(outputs["CURVES_PNG"], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_run_with_mixed_precision(chips, tmp_path):
    events = RecordingEvents()
    outputs = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "gpu.onnx"),
                                **dict(TINY, device="auto")), events)
    logs = " ".join(e["message"] for e in events.of_type("log"))
    assert "Training on GPU" in logs and "mixed precision" in logs and outputs["device"] == "cuda"
    assert outputs["onnx_max_abs_diff"] < 1e-4 and outputs["BEST_VAL_ACCURACY"] > 0.8
