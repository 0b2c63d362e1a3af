"""With polygons held out for validation, the trainer scores them (the held-out estimate, in the outputs and
the model card), then trains the exported model again on every polygon for the best epoch count."""
import json
import time
from dataclasses import replace

import onnx
import pytest
import torch

from landcover_plugin.core.chips.dataset import load_spec
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY
from landcover_plugin.core.train.options import TrainConfig
from landcover_plugin.core.train.report import write_training_report
from landcover_plugin.qgis_glue.engine_runner import format_metric
from training.dataset import IGNORE, ChipStore
from training.folds import plan_folds
from training.loop import _Training, train
from training.refit import _cut_while_improving, held_out_share


@pytest.fixture(scope="module")
def refitted(chips, tmp_path_factory):
    events = RecordingEvents()
    out = tmp_path_factory.mktemp("refit") / "model.onnx"
    outputs = train(TrainConfig(dataset_dir=str(chips), output=str(out), epochs=4, batch_size=4, base_width=8,
                                learning_rate=3e-3, patience=0, device="cpu", cv_folds=1), events)
    return outputs, events, out


def test_the_held_out_estimate_is_reported_and_written_into_the_card(chips, refitted):
    outputs, events, out = refitted
    split = json.loads((chips / "dataset.json").read_text())["split"]
    assert split["method"] == "polygons"
    heldout = outputs["HELDOUT"]
    assert 0.0 <= outputs["HELDOUT_OA"] <= 1.0 and outputs["HELDOUT_OA"] == heldout["overall_accuracy"]
    assert outputs["HELDOUT_MIOU"] == heldout["mean_iou"] is not None
    assert heldout["polygons"] == split["val_polygons"] and heldout["pixels"] > 0
    assert "top-class probability" in heldout["method"]  # the source raster was read: the map's confidences
    assert "the IoUs from the map's own class probabilities" in heldout["method"]  # and its expected errors
    assert heldout["mean_iou"] == pytest.approx(
        sum(heldout["iou"].values()) / len(heldout["iou"]), abs=1e-3)
    assert 0.0 < heldout["confidence_threshold"] < 1.0 and 0.0 <= heldout["polygon_overall_accuracy"] <= 1.0
    assert sum(heldout["class_shares"].values()) == pytest.approx(1.0, abs=1e-3)
    card = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}[CARD_KEY])
    assert card["heldout"] == heldout
    # the refit has no validation: the card's val_* are the held-out run's at its best epoch, as BEST_VAL_MIOU
    metrics = card["metrics"]
    assert metrics["val_miou"] == outputs["BEST_VAL_MIOU"] is not None and metrics["val_iou"]
    assert metrics["best_epoch"] == outputs["BEST_EPOCH"] and "held-out polygons" in metrics["val_source"]
    page = open(write_training_report(out.with_suffix(".html"), out, outputs["CURVES_CSV"], None, chips, outputs),
                encoding="utf-8").read()
    assert "These rows are the run scored on the held-out polygons; the highlighted row is its best epoch" in page
    assert "whose weights the model holds" not in page
    logs = [e["message"] for e in events.of_type("log")]
    assert sum("Held-out estimate of the map's accuracy" in m for m in logs) == 1
    assert any("rests on only" in m for m in logs)  # rstoolbox holds out a handful of polygons


def test_the_exported_model_is_trained_again_on_every_polygon(refitted):
    outputs, events, out = refitted
    logs = [e["message"] for e in events.of_type("log")]
    assert any(m.startswith("Training again on all polygons") for m in logs)
    assert outputs["refit_epochs"] == outputs["BEST_EPOCH"] and outputs["epochs_run"] == \
        outputs["selection_epochs_run"] + outputs["refit_epochs"]
    pixels = [m for m in logs if m.startswith("Training pixels per class")]
    counts = [[int(part.split()[-1]) for part in m.split(": ", 1)[1].split(", ")] for m in pixels]
    assert len(counts) == 2 and sum(counts[1]) > sum(counts[0])  # the held-out polygons' pixels join in
    assert (out.parent / "model_checkpoints" / "refit" / "last.pt").exists()
    assert outputs["BEST_VAL_MIOU"] is not None  # the selection run's score, not the refit's (none)
    refit_metrics = [m for m in events.of_type("metric") if m["values"].get("phase") == "refit"]
    assert len(refit_metrics) == outputs["refit_epochs"]
    assert not any(k.startswith("val_") for m in refit_metrics for k in m["values"])
    assert format_metric(refit_metrics[0]).startswith("Refit epoch 1:") and " loss " in format_metric(refit_metrics[0])


def test_cross_validation_without_the_refit_is_said_to_be_skipped(chips, tmp_path):
    # the folds choose the refit's epoch count and estimate that model: without a refit they are skipped, aloud
    events = RecordingEvents()
    outputs = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), epochs=1, batch_size=4,
                                base_width=8, patience=0, device="cpu", cv_folds=3, refit=False), events)
    logs = [e["message"] for e in events.of_type("log")]
    val_polygons = json.loads((chips / "dataset.json").read_text())["split"]["val_polygons"]
    skipped = [m for m in logs if m.startswith("Cross-validation (3 folds) skipped: the refit is off.")]
    assert len(skipped) == 1 and f"the exporter's {val_polygons} held-out polygons alone" in skipped[0]
    assert "again on all polygons" in skipped[0]
    assert not any("-fold cross-validation" in m for m in logs) and "cv_folds" not in outputs
    assert not any(m.get("values", {}).get("phase", "").startswith("fold") for m in events.of_type("metric"))
    # one split asked for (CV folds 1): nothing to say
    quiet = RecordingEvents()
    train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "n.onnx"), epochs=1, batch_size=4,
                      base_width=8, patience=0, device="cpu", cv_folds=1, refit=False), quiet)
    assert not any("Cross-validation" in e["message"] for e in quiet.of_type("log"))


@pytest.mark.parametrize("chosen, longer", [
    ({"epochs": 4, "fold_epochs": [5, 4, 4, 5], "planned": 30, "stopped_by": "time limit"}, True),  # still best at 4
    ({"epochs": 7, "fold_epochs": [11, 10, 10, 9], "planned": 30, "stopped_by": "time limit"}, False),  # past best
    ({"epochs": 4, "fold_epochs": [4, 4], "planned": 30, "stopped_by": "epochs"}, False),  # no time limit
    ({"epochs": 30, "fold_epochs": [30], "planned": 30, "stopped_by": "time limit"}, False),  # nothing more planned
    ({"epochs": 10, "fold_epochs": [10], "planned": 60, "stopped_by": "time limit"}, True),  # one held-out run
])
def test_the_refit_trains_on_only_where_the_time_limit_cut_the_held_out_training_at_its_best(chosen, longer):
    assert _cut_while_improving(chosen) is longer


class _BusyAfterEpochs(RecordingEvents):
    """A machine that got busy: each epoch of a refit takes ``seconds`` longer (slept at its metric event)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def emit(self, event):
        super().emit(event)
        if event["event"] == "metric" and event["values"].get("phase") == "refit":
            time.sleep(self.seconds)


def _refit_run(chips, tmp_path, min_epochs: int, events):
    """The training on all chips as the refit runs it, with a time limit one epoch overruns."""
    spec = load_spec(str(chips))
    everything = replace(spec, chips=[replace(chip, split="train") for chip in spec.chips])
    config = TrainConfig(dataset_dir=str(chips), output=str(tmp_path / f"m{min_epochs}.onnx"), epochs=3,
                         batch_size=4, base_width=8, patience=0, device="cpu", time_limit_minutes=0.01)
    run = _Training(config, everything, torch.device("cpu"), events, final_fit=True)
    run.min_epochs = min_epochs
    return run.fit()


def test_a_refit_trains_the_held_out_epoch_count_past_the_time_limit_and_says_so(chips, tmp_path):
    """The held-out estimate is of N epochs: a busier machine (or the refit's larger share of chips) must not cut the
    exported model shorter. The demo's rstoolbox refit, beside a test run, stopped after 1 of the 7 epochs the folds
    chose, and its map lost fallen_dry."""
    events = _BusyAfterEpochs(0.7)  # epochs of over 0.6 s: the 0.6 s limit is reached after the first
    state = _refit_run(chips, tmp_path, 3, events)
    assert state["epoch"] == 3 and state["stopped_by"] == "epochs" and state["past_limit_s"] > 0
    warned = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert len(warned) == 1 and warned[0].startswith("The time limit is reached after epoch 1 of the training on "
                                                     "all polygons") and "trains on to epoch 3" in warned[0]
    # the schedule follows the epochs it must train, not the clock that ran out: the rate still falls by epoch
    rates = [m["values"]["lr"] for m in events.of_type("metric")]
    assert rates[0] > rates[1] > rates[2] and rates[1] > 0.05 * 1e-3, rates
    # without a count to reach, the limit stops it after the first epoch, at the schedule's end
    state = _refit_run(chips, tmp_path, 0, _BusyAfterEpochs(0.7))
    assert state["epoch"] == 1 and state["stopped_by"] == "time limit" and "past_limit_s" not in state


def test_the_time_limit_leaves_the_refit_time_for_the_held_out_epoch_count(chips):
    """The refit trains as many epochs as the held-out training (at least), over every chip: where the usual split
    would leave it less time than that takes, the split follows the training steps of an epoch."""
    spec = load_spec(str(chips))
    store = ChipStore(spec, 64, RecordingEvents())
    train_chips = sum(chip.split == "train" for chip in spec.chips)
    config = TrainConfig(dataset_dir=str(chips), output="m.onnx", batch_size=2)
    assert len(spec.chips) > train_chips > 16 * 2  # epochs as long as their chips
    share = held_out_share(config, spec, None)
    assert share == pytest.approx(train_chips / (train_chips + len(spec.chips))) and share < 0.6
    # with few chips for the batch every epoch is 16 steps: half each
    assert held_out_share(replace(config, batch_size=16), spec, None) == pytest.approx(0.5)
    windows = [chip.window for chip in spec.chips]
    assert held_out_share(config, spec, plan_folds(store.labels, windows, 4, 0)) == 0.75  # as before
    for plan in (plan_folds(store.labels, windows, 4, 0), plan_folds(store.labels, windows, 2, 0)):
        for fold in range(plan.folds):  # counted from the plan as the fold's labels would leave them
            train_labels = plan.labels(store.labels, fold)[0]
            assert plan.training_chip_count(fold) == int((train_labels != IGNORE).any(axis=(1, 2)).sum())
    two = held_out_share(config, spec, plan_folds(store.labels, windows, 2, 0))
    assert 0.4 < two < 0.6  # each of 2 folds trains on about half the chips
