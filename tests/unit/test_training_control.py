"""Run control on real rstoolbox chips (in-process, tiny network): resume, cancel, initial weights,
early stopping and the time limit."""
import numpy as np
import onnxruntime as ort
import pytest
import torch

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.train.options import TrainConfig
from landcover_plugin.core.train.report import read_card, write_training_report
from training import checkpoint
from training.epochs import is_better
from training.loop import train
from training.networks import build_network

# refit off: these tests follow one run's mechanics (tests/unit/test_training_refit.py covers the refit)
TINY = {"batch_size": 4, "base_width": 8, "learning_rate": 3e-3, "patience": 0, "device": "cpu", "refit": False}


class CancelWhen(RecordingEvents):
    """Asks to cancel (as SIGTERM would) once an event matches ``predicate``."""

    def __init__(self, predicate):
        super().__init__()
        self.predicate = predicate

    def emit(self, event):
        super().emit(event)
        if self.predicate(event):
            self.cancel_requested = True


def cancel_after_progress(count):
    seen = []

    def predicate(event):
        if event["event"] == "progress":
            seen.append(event)
        return len(seen) >= count

    return CancelWhen(predicate)


def metrics(events):
    return {m["epoch"]: m["values"] for m in events.of_type("metric")}


def test_cancel_mid_epoch_then_resume_matches_an_uninterrupted_run(chips, tmp_path):
    straight = RecordingEvents()
    train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "a.onnx"), epochs=3, **TINY), straight)

    # A user cancels part way through epoch 3: that epoch is dropped, the best of epochs 1-2 is exported.
    first = CancelWhen(lambda e: e["event"] == "progress" and e["message"].startswith("epoch 3/3: batch 3/"))
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "b.onnx"), epochs=3, **TINY), first)
    assert out["cancelled"] is True and out["epochs_run"] == 2 and list(metrics(first)) == [1, 2]
    assert out["stopped_by"] == "cancel"
    assert out["BEST_VAL_MIOU"] == max(m["val_miou"] for m in metrics(first).values())
    assert out["BEST_VAL_MIOU"] == metrics(first)[out["BEST_EPOCH"]]["val_miou"]
    assert checkpoint.load(out["CHECKPOINT"])["epoch"] == out["BEST_EPOCH"]
    assert any("Cancelled during epoch 3" in e["message"] for e in first.of_type("log"))
    probs = ort.InferenceSession(out["OUTPUT"], providers=["CPUExecutionProvider"]).run(
        None, {"input": np.zeros((2, 7, 32, 32), np.float32)})[0]
    assert probs.shape == (2, 4, 32, 32)

    # Resuming from its last checkpoint continues at epoch 3 with the same numbers as the straight run:
    # same seeds and samples, restored weights and optimiser state.
    assert checkpoint.load(out["LAST_CHECKPOINT"])["epoch"] == 2
    resumed = RecordingEvents()
    result = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "c.onnx"), epochs=3,
                               resume=out["LAST_CHECKPOINT"], **TINY), resumed)
    assert list(metrics(resumed)) == [3] and result["epochs_run"] == 3
    assert "continuing at epoch 3" in " ".join(e["message"] for e in resumed.of_type("log"))
    for key in ("train_loss", "val_loss", "val_accuracy", "val_miou"):
        assert metrics(resumed)[3][key] == pytest.approx(metrics(straight)[3][key], rel=1e-4, abs=1e-5), key
    history = checkpoint.load(result["LAST_CHECKPOINT"])["history"]
    assert [row["epoch"] for row in history] == [1, 2, 3]


def test_cancel_before_the_first_epoch_still_gives_a_model_and_says_so(chips, tmp_path):
    events = cancel_after_progress(1)
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), epochs=5, **TINY), events)
    assert out["cancelled"] is True and out["epochs_run"] == 0 and out["BEST_EPOCH"] is None
    warnings = " ".join(e["message"] for e in events.of_type("log") if e["level"] == "warning")
    assert "No epoch finished" in warnings
    session = ort.InferenceSession(out["OUTPUT"], providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [7, "height", "width"]  # any tile size (multiples of 32)
    assert session.run(None, {"input": np.zeros((1, 7, 32, 32), np.float32)})[0].shape == (1, 4, 32, 32)


def test_a_rerun_cancelled_before_its_first_epoch_names_no_checkpoint_of_the_earlier_run(chips, tmp_path):
    """The checkpoints folder beside a model is reused by the next run into that model: a rerun that wrote none
    reported the earlier run's best.pt and last.pt as its own CHECKPOINT and LAST_CHECKPOINT (to resume from)."""
    earlier = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), epochs=1, **TINY))
    assert checkpoint.load(earlier["LAST_CHECKPOINT"])["epoch"] == 1
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), epochs=5, **TINY),
                cancel_after_progress(1))
    assert out["epochs_run"] == 0 and out["CHECKPOINT"] is None and out["LAST_CHECKPOINT"] is None


def test_initial_weights_are_loaded_where_shapes_fit(chips, tmp_path):
    source = build_network("unet", 7, 9, base_width=TINY["base_width"]).state_dict()
    path = tmp_path / "weights.pt"
    torch.save(source, path)  # a head for 9 classes: it must be skipped, the rest loaded
    head = [k for k in source if k.startswith("head.")]
    events = RecordingEvents()
    events.cancel_requested = True  # stop before the first batch: the exported weights are the initial ones
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "b.onnx"), epochs=1,
                            architecture="unet", initial_weights=str(path), **TINY), events)
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
    export_chips(ChipExportOptions(shared_data / "eolearn" / "sentinel2_13band_composite.tif", other,
                                   labels_raster=shared_data / "eolearn" / "lulc.tif", chip_size=32))
    with pytest.raises(BadInputError, match="Cannot resume"):
        train(TrainConfig(dataset_dir=str(other), output=str(tmp_path / "b.onnx"), epochs=2,
                          resume=first["LAST_CHECKPOINT"], **TINY))


def test_a_time_limit_ends_the_run_with_the_learning_rate_annealed(chips, tmp_path):
    events = RecordingEvents()
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), epochs=10_000,
                            time_limit_minutes=0.05, **TINY), events)
    logs = " ".join(e["message"] for e in events.of_type("log"))
    assert f"Time limit of 3 s reached after epoch {out['epochs_run']} of 10000." in logs  # not '0.05 min'
    assert "or 3 s," in logs
    assert 1 <= out["epochs_run"] < 10_000 and not out["cancelled"] and out["stopped_by"] == "time limit"
    # the card and the report say the run was cut short, not that it trained all its epochs
    card = read_card(out["OUTPUT"])
    assert card["training"]["epochs"] == 10_000 and card["metrics"]["epochs_trained"] == out["epochs_run"]
    assert card["training"]["stopped_by"] == "time limit" and card["training"]["time_limit_minutes"] == 0.05
    assert not card["metrics"]["cancelled"] and not card["metrics"]["stopped_early"]  # keys kept as they were
    page = open(write_training_report(tmp_path / "r.html", out["OUTPUT"], out["CURVES_CSV"], None, chips),
                encoding="utf-8").read()
    assert f"of {out['epochs_run']} trained (10000 planned: stopped by the time limit of 3 s)" in page
    assert ">time limit</th><td>3 s<" in page and ">stopped by</th><td>time limit<" in page
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
    assert out["stopped_by"] == read_card(out["OUTPUT"])["training"]["stopped_by"] == "early stopping"
    assert "annealing the learning rate over 2" in message
    assert rows[trigger + 2]["lr"] < rows[trigger + 1]["lr"] < rows[trigger]["lr"]
    assert rows[trigger + 2]["lr"] < 0.1 * rows[trigger]["lr"]
    # it waited for the learning rate to fall to half its peak, though validation had stalled before that
    peak = max(r["lr"] for r in rows.values())
    assert rows[trigger]["lr"] <= 0.5 * peak
    best, stalled_at_peak_rate = None, []
    for epoch in sorted(rows):
        if not is_better(rows[epoch], best):
            stalled_at_peak_rate += [epoch] if epoch < trigger and rows[epoch]["lr"] > 0.5 * peak else []
        else:
            best = rows[epoch]
    assert stalled_at_peak_rate, rows
    best = max(rows, key=lambda e: (rows[e]["val_miou"], -rows[e]["val_loss"]))
    assert out["BEST_EPOCH"] == best
