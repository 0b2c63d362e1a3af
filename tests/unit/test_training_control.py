"""Run control on real rstoolbox chips (in-process, tiny network): resume, cancel, initial weights,
early stopping and the time limit."""
import onnxruntime as ort
import numpy as np
import pytest
import torch

from landcover_plugin.core.chip_export import export_chips
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from training import checkpoint
from training.config import TrainConfig
from training.loop import train
from training.networks import build_network

TINY = {"batch_size": 4, "base_width": 8, "learning_rate": 3e-3, "patience": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def chips(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("rstoolbox") / "chips"
    export_chips(shared_data / "rstoolbox" / "landsat5_1988_7band.tif", folder,
                 labels_vector=shared_data / "rstoolbox" / "training_polygons.gpkg", class_field="class",
                 chip_size=32)
    return folder


class CancelAfter(RecordingEvents):
    """Asks to cancel (as SIGTERM would) once ``count`` progress events were seen."""

    def __init__(self, count):
        super().__init__()
        self.count = count

    def emit(self, event):
        super().emit(event)
        if event["event"] == "progress" and len(self.of_type("progress")) >= self.count:
            self.cancel_requested = True


def metrics(events):
    return {m["epoch"]: m["values"] for m in events.of_type("metric")}


def test_a_resumed_run_continues_from_its_epoch_and_matches_an_uninterrupted_run(chips, tmp_path):
    straight = RecordingEvents()
    train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "a.onnx"), epochs=3, **TINY), straight)

    per_epoch = len(straight.of_type("progress")) // 3
    first = CancelAfter(2 * per_epoch)  # cancelled as epoch 3 starts, like a user stopping the run
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "b.onnx"), epochs=3, **TINY), first)
    assert out["cancelled"] and list(metrics(first)) == [1, 2]
    assert checkpoint.load(out["LAST_CHECKPOINT"])["epoch"] == 2
    resumed = RecordingEvents()
    result = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "c.onnx"), epochs=3,
                               resume=out["LAST_CHECKPOINT"], **TINY), resumed)
    assert list(metrics(resumed)) == [3]
    assert result["epochs_run"] == 3
    assert "continuing at epoch 3" in " ".join(e["message"] for e in resumed.of_type("log"))
    # Same seeds, same samples, restored weights and optimiser: epoch 3 is the same numbers.
    for key in ("train_loss", "val_loss", "val_accuracy", "val_miou"):
        assert metrics(resumed)[3][key] == pytest.approx(metrics(straight)[3][key], rel=1e-4, abs=1e-5), key
    history = checkpoint.load(result["LAST_CHECKPOINT"])["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]


def test_cancel_mid_run_exports_the_best_epoch_so_far(chips, tmp_path):
    probe = RecordingEvents()
    train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "probe.onnx"), epochs=1, **TINY), probe)
    per_epoch = len(probe.of_type("progress"))
    events = CancelAfter(int(per_epoch * 2.5))  # during epoch 3
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), epochs=20, **TINY), events)
    assert out["cancelled"] is True
    assert out["epochs_run"] == 2 and out["BEST_EPOCH"] in (1, 2)
    assert list(metrics(events)) == [1, 2]
    best = metrics(events)[out["BEST_EPOCH"]]
    assert out["BEST_VAL_MIOU"] == best["val_miou"] == max(m["val_miou"] for m in metrics(events).values())
    session = ort.InferenceSession(out["OUTPUT"], providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": np.zeros((2, 7, 32, 32), np.float32)})[0]
    assert probs.shape == (2, 4, 32, 32)
    assert checkpoint.load(out["CHECKPOINT"])["epoch"] == out["BEST_EPOCH"]


def test_cancel_before_the_first_epoch_still_gives_a_model_and_says_so(chips, tmp_path):
    events = CancelAfter(1)
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), epochs=5, **TINY), events)
    assert out["cancelled"] is True and out["epochs_run"] == 0 and out["BEST_EPOCH"] is None
    warnings = " ".join(e["message"] for e in events.of_type("log") if e["level"] == "warning")
    assert "No epoch finished" in warnings
    assert ort.InferenceSession(out["OUTPUT"], providers=["CPUExecutionProvider"]).get_inputs()[0].shape[1:] == [7, 32, 32]


def test_initial_weights_are_loaded_where_shapes_fit(chips, tmp_path):
    source = build_network("unet", 7, 9, base_width=TINY["base_width"]).state_dict()
    path = tmp_path / "weights.pt"
    torch.save(source, path)  # a head for 9 classes: it must be skipped, the rest loaded
    head = [k for k in source if k.startswith("head.")]
    events = RecordingEvents()
    events.cancel_requested = True  # stop before the first batch: the exported weights are the initial ones
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "b.onnx"), epochs=1,
                            initial_weights=str(path), **TINY), events)
    message = [e["message"] for e in events.of_type("log") if "Initial weights" in e["message"]][0]
    assert f"loaded {len(source) - len(head)} of {len(source)} tensors" in message
    state = checkpoint.load(out["LAST_CHECKPOINT"]) if out["LAST_CHECKPOINT"] else None
    assert out["cancelled"] and state is None
    session = ort.InferenceSession(out["OUTPUT"], providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 7, 32, 32)).astype(np.float32)
    net = build_network("unet", 7, 4, base_width=TINY["base_width"])
    net.load_state_dict({k: v for k, v in source.items() if k not in head}, strict=False)
    torch.manual_seed(0)  # the trainer's seed: the same random head
    fresh = build_network("unet", 7, 4, base_width=TINY["base_width"]).state_dict()
    net.load_state_dict({k: fresh[k] for k in head}, strict=False)
    with torch.no_grad():
        expected = torch.softmax(net.eval()(torch.from_numpy(x)), 1).numpy()
    assert np.abs(session.run(None, {"input": x})[0] - expected).max() < 1e-4


def test_resume_rejects_a_checkpoint_of_other_classes(chips, tmp_path, shared_data):
    first = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "a.onnx"), epochs=1, **TINY))
    other = tmp_path / "eolearn_chips"
    export_chips(shared_data / "eolearn" / "sentinel2_13band_composite.tif", other,
                 labels_raster=shared_data / "eolearn" / "lulc.tif", chip_size=32)
    with pytest.raises(BadInputError, match="Cannot resume"):
        train(TrainConfig(dataset_dir=str(other), output=str(tmp_path / "b.onnx"), epochs=2,
                          resume=first["LAST_CHECKPOINT"], **TINY))


def test_a_time_limit_ends_the_run_with_the_learning_rate_annealed(chips, tmp_path):
    events = RecordingEvents()
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), epochs=10_000,
                            time_limit_minutes=0.05, **TINY), events)
    logs = " ".join(e["message"] for e in events.of_type("log"))
    assert "Time limit of 0.05 min reached after epoch" in logs
    assert 1 <= out["epochs_run"] < 10_000 and not out["cancelled"]
    rows = [m["values"] for m in events.of_type("metric")]
    assert sum(r["epoch_seconds"] for r in rows) < 0.05 * 60 + 2 * max(r["epoch_seconds"] for r in rows)
    rates = [r["lr"] for r in rows]
    peak = rates.index(max(rates))
    assert rates[peak:] == sorted(rates[peak:], reverse=True)  # the schedule follows the clock, no jumps
    if len(rows) >= 4:
        assert rates[-1] < 0.5 * TINY["learning_rate"]


def test_early_stopping_anneals_the_learning_rate_then_stops(chips, tmp_path):
    events = RecordingEvents()
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), epochs=40,
                            **dict(TINY, patience=1)), events)
    rows = {m["epoch"]: m["values"] for m in events.of_type("metric")}
    message = [e["message"] for e in events.of_type("log") if "Early stopping" in e["message"]][0]
    trigger = int(message.split("after epoch ")[1].split(":")[0])
    assert out["stopped_early"] and out["epochs_run"] == trigger + 2 < 40  # a tail of max(2, patience / 2)
    assert "annealing the learning rate over 2" in message
    assert rows[trigger + 2]["lr"] < rows[trigger + 1]["lr"] < rows[trigger]["lr"]
    assert rows[trigger + 2]["lr"] < 0.1 * rows[trigger]["lr"]
    best = max(rows, key=lambda e: (rows[e]["val_miou"], -rows[e]["val_loss"]))
    assert out["BEST_EPOCH"] == best
