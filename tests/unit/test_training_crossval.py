"""Polygon-grouped cross-validation for the held-out estimate: the folds hold every polygon out once and never
train on a pixel they score; the trainer pools the folds and refits the exported model on every polygon."""
import html
import json

import numpy as np
import onnx
import pytest
from test_training_control import CancelWhen

from landcover_plugin.core.chips.dataset import load_spec
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY
from landcover_plugin.core.train.options import TrainConfig
from landcover_plugin.core.train.report import read_card, read_curves, write_training_report
from landcover_plugin.qgis_glue.engine_runner import format_metric
from training.dataset import IGNORE, ChipStore
from training.folds import plan_folds
from training.loop import train


@pytest.fixture(scope="module")
def store(chips):
    return ChipStore(load_spec(chips))


def _grid(store, labels):
    """{(row, col) in the source raster: class} of the labelled pixels, and how often each is labelled."""
    seen, count = {}, {}
    for index, chip in enumerate(store.spec.chips):
        rows, cols = np.nonzero(labels[index] != IGNORE)
        for r, c in zip(rows + chip.window[0], cols + chip.window[1]):
            seen[(r, c)] = labels[index][r - chip.window[0], c - chip.window[1]]
            count[(r, c)] = count.get((r, c), 0) + 1
    return seen, count


def test_every_labelled_pixel_is_scored_once_by_a_fold_that_never_trains_on_it(store):
    windows = [chip.window for chip in store.spec.chips]
    plan = plan_folds(store.labels, windows, folds=4, seed=0)
    assert plan is not None and plan.folds == 4 and plan.groups >= 8
    everything, _ = _grid(store, store.labels)
    scored_anywhere = {}
    for fold in range(plan.folds):
        train_labels, val_labels = plan.labels(store.labels, fold)
        val, val_count = _grid(store, val_labels)
        train, _ = _grid(store, train_labels)
        assert val and max(val_count.values()) == 1          # each held-out pixel scored once
        assert not set(val) & set(train)                     # ... and in no training chip of its fold
        assert all(everything[p] == v for p, v in val.items())  # with its own class
        for p in val:
            assert p not in scored_anywhere                  # held out by one fold only
            scored_anywhere[p] = fold
        held_classes = {int(v) for v in val.values()}
        assert held_classes <= {int(v) for v in train.values()}  # a class held out still has training pixels
    never = {p for p in everything if p not in scored_anywhere}
    unsplit = {int(everything[p]) for p in never}
    assert unsplit == set(plan.unsplit_classes)  # only the classes of a single group are never held out


def test_wall_to_wall_polygons_are_grouped_class_by_class(shared_data, tmp_path):
    """eolearn's land-cover polygons cover the scene without gaps: grouped across classes all their pixels were
    one or two groups; grouped class by class, every class the export could hold out is held out by some fold,
    and no held-out pixel touches a training pixel of its class in its fold."""
    from landcover_plugin.core.chips.export import export_chips
    from landcover_plugin.core.chips.options import ChipExportOptions

    folder = tmp_path / "chips"
    export_chips(ChipExportOptions(shared_data / "eolearn/sentinel2_13band_composite.tif", folder,
                                   labels_vector=shared_data / "eolearn/lulc_polygons.gpkg", class_field="LULC_NAME",
                                   chip_size=32, stride=16))
    store = ChipStore(load_spec(folder))
    plan = plan_folds(store.labels, [chip.window for chip in store.spec.chips], folds=4, seed=0)
    names = store.spec.schema.names
    split = json.loads((folder / "dataset.json").read_text())["split"]
    held_classes = set()
    for fold in range(plan.folds):
        train_labels, val_labels = plan.labels(store.labels, fold)
        val, _ = _grid(store, val_labels)
        train, _ = _grid(store, train_labels)
        held_classes |= {names[int(v)] for v in val.values()}
        for (r, c), value in val.items():
            near = [train.get((r + dr, c + dc)) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
            assert value not in near, (fold, r, c)
    assert held_classes >= set(names) - set(split["unsplit_classes"])  # (pixels part finer than extents)
    assert {names[c] for c in plan.unsplit_classes} <= set(split["unsplit_classes"])


def test_no_folds_when_no_class_has_two_groups(store):
    one = np.full_like(store.labels[:1], IGNORE)
    one[0, 2:6, 2:6], one[0, 20:24, 20:24] = 0, 1
    assert plan_folds(one, [(0, 0)], folds=4) is None
    two = one.copy()
    two[0, 2:6, 20:24] = 0
    plan = plan_folds(two, [(0, 0)], folds=4)
    assert plan.folds == 2 and plan.unsplit_classes == [1]


@pytest.fixture(scope="module")
def crossvalidated(chips, tmp_path_factory):
    events = RecordingEvents()
    out = tmp_path_factory.mktemp("cv") / "model.onnx"
    outputs = train(TrainConfig(dataset_dir=str(chips), output=str(out), epochs=3, batch_size=4, base_width=8,
                                learning_rate=3e-3, patience=0, device="cpu", cv_folds=3), events)
    return outputs, events, out


def test_training_with_few_held_out_polygons_cross_validates_then_refits(chips, crossvalidated):
    outputs, events, out = crossvalidated
    assert json.loads((chips / "dataset.json").read_text())["split"]["val_polygons"] < 40
    assert outputs["cv_folds"] == 3 and outputs["fold_epochs"] == [3, 3, 3]  # no early stop inside a fold
    assert 1 <= outputs["BEST_EPOCH"] <= 3 and outputs["refit_epochs"] == outputs["BEST_EPOCH"]
    pooled = next(m for m in events.of_type("log") if m["message"].startswith("Cross-validation: the pooled"))
    assert f"lowest after epoch {outputs['BEST_EPOCH']} of 3" in pooled["message"]
    phases = [m["values"].get("phase") for m in events.of_type("metric")]
    assert [p for p in phases if p != "refit"] == ["fold 1/3"] * 3 + ["fold 2/3"] * 3 + ["fold 3/3"] * 3
    assert phases.count("refit") == outputs["refit_epochs"]
    assert not any("stopped each cross-validation fold" in m["message"] for m in events.of_type("log"))  # no limit
    fold_metric = next(m for m in events.of_type("metric") if m["values"].get("phase") == "fold 2/3")
    assert format_metric(fold_metric).startswith("Fold 2/3 epoch 1:")
    logs = [m["message"] for m in events.of_type("log")]
    for said in ("Class weights: ", "Training pixels per class"):  # the first fold's and the refit's, not each fold's
        assert sum(m.startswith(said) for m in logs) == 2, said
    heldout = outputs["HELDOUT"]
    assert heldout["method"].startswith("3-fold cross-validation over") and heldout["pixels"] > 0
    assert "top-class probability" in heldout["method"] and 0.0 < heldout["confidence_threshold"] < 1.0
    assert outputs["HELDOUT_OA"] == heldout["overall_accuracy"] and 0.0 <= outputs["HELDOUT_OA"] <= 1.0
    card = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}[CARD_KEY])
    assert card["heldout"] == heldout
    progress = [e["fraction"] for e in events.of_type("progress")]
    assert progress == sorted(progress)  # one progress bar over the folds and the refit
    assert (out.parent / "model_checkpoints" / "fold3" / "last.pt").exists()


def test_every_score_of_the_curves_is_pooled_over_the_folds(chips, crossvalidated):
    """The per-class IoU columns are the folds' pooled ones, like the mIoU beside them (they were fold 1's: all
    1.0 beside a pooled mIoU of 0.45 on rstoolbox), and the held-out pixels per class are the pooled ones."""
    outputs, events, out = crossvalidated
    names = [c["name"] for c in json.loads((chips / "dataset.json").read_text())["classes"]]
    rows = read_curves(outputs["CURVES_CSV"])
    assert len(rows) == min(outputs["fold_epochs"])
    for row in rows:
        iou = [row[f"val_iou_{n}"] for n in names if row[f"val_iou_{n}"] is not None]
        assert row["val_miou"] == pytest.approx(np.mean(iou), abs=2e-6), row  # mIoU: the mean of these IoUs
    fold_rows = {}
    for metric in events.of_type("metric"):
        if metric["values"].get("phase", "").startswith("fold"):
            fold_rows.setdefault(metric["epoch"], []).append(metric["values"])
    for row in rows:  # the training loss: the folds' mean
        assert row["train_loss"] == pytest.approx(np.mean([v["train_loss"] for v in fold_rows[row["epoch"]]]),
                                                  abs=2e-6)
    heldout = outputs["HELDOUT"]
    assert heldout["cv_folds"] == 3 and sum(heldout["class_pixels"].values()) == heldout["pixels"]


def test_the_estimate_is_of_the_map_classify_makes_with_the_classes_weighed(shared_data, crossvalidated, tmp_path):
    """The folds' held-out pixels and the exported model's scene sample are weighed by the card's class shares as
    Classify weighs a tile's, so the estimate's class shares are those of the default map, not of the unweighed."""
    import rasterio

    from landcover_plugin.core.classify.options import ClassifyOptions
    from landcover_plugin.core.classify.run import classify_raster

    outputs, _, out = crossvalidated
    card = read_card(out)
    held = card["heldout"]
    assert held["classes_weighed"] is True and held["unweighed"]["overall_accuracy"] is not None
    ids = [c["id"] for c in card["classes"]]
    estimated = np.array([held["class_shares"][c["name"]] for c in card["classes"]])
    errors = {}
    for shares in ("model", "off"):
        result = classify_raster(ClassifyOptions(shared_data / "rstoolbox" / "landsat5_1988_7band.tif", out,
                                                 tmp_path / f"{shares}.tif", class_shares=shares), RecordingEvents())
        with rasterio.open(result["OUTPUT"]) as src:
            labels = src.read(1, masked=True).compressed()
        errors[shares] = np.abs(np.array([(labels == i).mean() for i in ids]) - estimated).max()
    assert errors["model"] < 0.02 and errors["off"] > 2 * errors["model"], errors


def test_automatic_epochs_are_chosen_once_for_every_fold(chips, tmp_path):
    events = RecordingEvents()
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "auto.onnx"), epochs=0, batch_size=4,
                            base_width=16, device="cpu", cv_folds=3, time_limit_minutes=0.1), events)
    # base width 16: 3-6 epochs a 1.5 s fold on an idle 2-core machine; at 8 the folds reached 6-10, and 10 is
    # enough epochs for the short-folds warning below to stay quiet
    chosen = [m["message"] for m in events.of_type("log") if m["message"].startswith("Epochs 'automatic'")]
    assert len(chosen) == 1, chosen  # on the first fold; the others and the refit train that count
    planned = [m["message"] for m in events.of_type("log") if m["message"].startswith("Fold ")
               and "training" in m["message"]]
    assert len(planned) == 3 and len({p.split("epochs 1..")[1].split()[0] for p in planned}) == 1, planned
    # each fold's share of the time limit (0.75 of 0.1 min over 3 folds) in seconds, not '0.025 min'
    assert all(" or 1.5 s," in p for p in planned), planned
    cut = [m["message"] for m in events.of_type("log") if m["message"].startswith("Time limit of 1.5 s reached")]
    assert cut  # automatic epochs are many more than 1.5 s allows
    # ... and the analyst is told so once, in terms of the limit they set, not each fold's share of it
    short = [m["message"] for m in events.of_type("log")
             if m["level"] == "warning" and "stopped each cross-validation fold" in m["message"]]
    assert len(short) == 1 and short[0].startswith("The time limit (6 s) stopped") and "3 folds" in short[0], short
    # where the folds stopped at their best epoch (1.5 s: most often their first), still improving, the refit
    # trains on for the time left, not that count; else that count
    reached = min(out["fold_epochs"])
    on = [m["message"] for m in events.of_type("log") if m["message"].startswith("Training again on all polygons")]
    assert len(on) == 1 and out["refit_longer"] is (out["BEST_EPOCH"] == reached)
    assert ("for the time left (up to " in on[0] and f"at epoch {reached} " in on[0]) \
        if out["refit_longer"] else f"for {out['BEST_EPOCH']} epochs, the best count" in on[0], on
    training = read_card(out["OUTPUT"])["training"]
    assert training["time_limit_minutes"] == 0.1 and training["selection_stopped_by"] == "time limit"
    page = open(write_training_report(tmp_path / "r.html", out["OUTPUT"], out["CURVES_CSV"], None, chips,
                                      outputs=out), encoding="utf-8").read()
    assert "the held-out run that chose it was stopped by the time limit of 6 s" in page
    assert ("for the time left: the time limit stopped the held-out training at its best epoch" in page) is \
        (out["refit_longer"] and out["refit_epochs"] != out["BEST_EPOCH"])
    # whatever the time left, the exported model has at least the epochs the estimate is of
    assert out["refit_epochs"] >= out["BEST_EPOCH"]
    count = "that many epochs" if out["refit_epochs"] == out["BEST_EPOCH"] else \
        f"{out['refit_epochs']} epochs (see 'Exported model' above)"
    assert f"trained again on all polygons for {count}: its weights" in html.unescape(page)
    assert ("past the time limit to reach the held-out count" in page) is (out["refit_past_limit_s"] is not None)


def test_a_cancel_during_cross_validation_exports_the_running_fold_s_best_weights_and_says_so(chips, tmp_path):
    events = CancelWhen(lambda e: e["event"] == "metric" and e["values"].get("phase") == "fold 2/3")
    out = tmp_path / "model.onnx"
    result = train(TrainConfig(dataset_dir=str(chips), output=str(out), epochs=3, batch_size=4, base_width=8,
                               learning_rate=3e-3, patience=0, device="cpu", cv_folds=3), events)
    assert result["cancelled"] is True and result["stopped_by"] == "cancel" and result["BEST_EPOCH"] == 1
    phases = [m["values"].get("phase") for m in events.of_type("metric")]
    assert phases == ["fold 1/3"] * 3 + ["fold 2/3"]  # no third fold, no refit
    assert result["CHECKPOINT"].endswith("fold2/best.pt") and out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written file left
    logs = " ".join(e["message"] for e in events.of_type("log"))
    assert "Cancelled during epoch 2" in logs and "Exporting the weights of epoch 1" in logs
    card = read_card(out)
    assert card["training"]["stopped_by"] == "cancel"
    assert card["class_shares"]["found_by"] in ("em", "counts")  # the model is weighed as any other is
