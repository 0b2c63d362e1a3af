"""The training report (core/train/report.py) and what Train and Export tell before a run (core/train/preflight.py,
core/chips/expect.py), on a real tiny training run over rstoolbox chips."""
import json
import re
from html.parser import HTMLParser

import pytest

from landcover_plugin.core.chips.expect import describe, expectation, window_count
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.class_shares import vanishing
from landcover_plugin.core.train import preflight
from landcover_plugin.core.train.options import TrainConfig
from landcover_plugin.core.train.report import best_epoch, read_card, read_curves, write_training_report
from training.loop import train

TINY = {"epochs": 3, "batch_size": 4, "base_width": 8, "learning_rate": 3e-3, "patience": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def run(chips, tmp_path_factory):
    events = RecordingEvents()
    out = tmp_path_factory.mktemp("model") / "rstoolbox.onnx"
    outputs = train(TrainConfig(dataset_dir=str(chips), output=str(out), **TINY), events)
    return outputs, events


def test_the_report_holds_the_run_as_the_trainer_saw_it(run, chips, tmp_path):
    outputs, events = run
    page_path = write_training_report(tmp_path / "report.html", outputs["OUTPUT"], outputs["CURVES_CSV"],
                                      outputs["CURVES_PNG"], chips, outputs)
    page = open(page_path, encoding="utf-8").read()
    HTMLParser().feed(page)
    # the refit has no validation: the card's val_* figures are the ones that chose its epoch count, the folds
    # pooled (BEST_VAL_MIOU), and say so; they match the curves' highlighted row
    metrics = read_card(outputs["OUTPUT"])["metrics"]
    assert metrics["val_miou"] == outputs["BEST_VAL_MIOU"] and metrics["val_accuracy"] == outputs["BEST_VAL_ACCURACY"]
    assert metrics["best_epoch"] == outputs["BEST_EPOCH"] and metrics["val_loss"] is not None
    assert metrics["val_source"].startswith(f"{outputs['cv_folds']}-fold cross-validation")
    assert sum(map(sum, metrics["val_confusion"])) == read_card(outputs["OUTPUT"])["heldout"]["pixels"]
    best = best_epoch(read_card(outputs["OUTPUT"]), read_curves(outputs["CURVES_CSV"]), outputs)
    assert best["best_epoch"] == outputs["BEST_EPOCH"] and best["val_miou"] == pytest.approx(outputs["BEST_VAL_MIOU"])
    assert best["val_iou"] == pytest.approx(metrics["val_iou"])
    # the highlighted row is not the exported weights: those are the refit's
    assert "whose weights the model holds" not in page
    assert "the highlighted row is the epoch with the lowest pooled held-out loss" in page
    assert "its weights are that refit&#x27;s, which has no validation and no row here" in page
    assert f"{100 * outputs['BEST_VAL_MIOU']:.1f} %" in page
    assert f"{100 * outputs['HELDOUT_OA']:.1f} %" in page and f"{100 * outputs['HELDOUT_MIOU']:.1f} %" in page
    assert page.count("<tr") >= 3 + 4  # an epoch row each, a class row each
    assert page.count('class="best"') == 1
    # the class weights are the ones the trainer used for the exported model (its last such log line: the refit's)
    logged = [e["message"] for e in events.of_type("log") if e["message"].startswith("Class weights: ")][-1]
    for name, weight in re.findall(r"(\w+) (\d+\.\d\d)", logged):
        assert re.search(rf"{name}</td>.*?<td>{weight}</td></tr>", page)
    summary = json.loads((chips / "dataset.json").read_text())["summary"]
    assert "rstoolbox_curves.png" in page
    assert f"{summary['train_chips']} training, {summary['val_chips']} validation" in page
    assert f"for {outputs['refit_epochs']} epoch(s)" in page  # the exported model is the refit's


def test_under_cross_validation_the_class_table_is_pooled_over_the_folds(run, chips, tmp_path):
    """The per-class IoU and held-out pixels are the folds' pooled ones (not fold 1's IoU beside the export
    split's pixel counts), and the table says so."""
    outputs, _ = run
    assert outputs["cv_folds"] >= 2
    card = read_card(outputs["OUTPUT"])
    best = best_epoch(card, read_curves(outputs["CURVES_CSV"]), outputs)
    page = open(write_training_report(tmp_path / "report.html", outputs["OUTPUT"], outputs["CURVES_CSV"],
                                      outputs["CURVES_PNG"], chips), encoding="utf-8").read()  # from files only
    table = page.split("Per-class IoU at the best epoch")[1].split("<h2>")[0]
    folds = outputs["cv_folds"]
    assert f"held-out IoU ({folds} folds pooled)" in table and f"held-out pixels ({folds} folds pooled)" in table
    assert "not its training/validation split" in table
    dataset = json.loads((chips / "dataset.json").read_text())
    held = card["heldout"]["class_pixels"]
    assert sum(held.values()) == card["heldout"]["pixels"]
    for c in dataset["classes"]:
        iou, pixels = best["val_iou"][c["name"]], held[c["name"]]
        cells = (f"{100 * iou:.1f} %" if iou is not None else "n/a", f"{dataset['class_pixels'][str(c['id'])]:,}",
                 f"{pixels:,}")
        assert re.search(rf"{c['name']}</td><td>{c['id']}</td><td>{cells[0]}</td><td>{cells[1]}</td>"
                         rf"<td>{cells[2]}</td>", table), (c, cells)


def test_a_report_far_from_its_plot_links_it_by_path(run, chips, tmp_path):
    outputs, _ = run
    page = open(write_training_report(tmp_path / "elsewhere" / "r.html", outputs["OUTPUT"], outputs["CURVES_CSV"],
                                      outputs["CURVES_PNG"], chips), encoding="utf-8").read()
    assert 'src="file://' in page


def test_batch_size_and_validation_advice(chips):
    train_chips, val_chips = preflight.chip_counts(chips)
    summary = json.loads((chips / "dataset.json").read_text())["summary"]
    assert (train_chips, val_chips) == (summary["train_chips"], summary["val_chips"])
    assert 16 < train_chips < 64 and val_chips >= 5 and preflight.advice(4, train_chips, val_chips) == (4, [])
    assert preflight.advice(15, 30, 14) == (15, [])  # two full batches: kept
    batch, warnings = preflight.advice(16, 16, 3)
    assert batch == 4 and "too large for 16 training chips" in warnings[0] and "Only 3 validation chip" in warnings[1]
    assert preflight.chip_counts(chips / "nowhere") == (None, None)
    # the trainer makes at least 16 steps an epoch (training/loaders.py), repeating chips when there are few
    assert preflight.plan(4, train_chips).startswith(
        f"Expect 16 steps of 4 chips per epoch ({train_chips} training chips, repeated")
    assert "unchanged (augmentation off)" in preflight.plan(4, train_chips, augment=False)
    assert "repeated with other colours (flips" in preflight.plan(4, train_chips, augment=False, colour_augment=True)
    assert preflight.plan(4, 200).startswith("Expect 50 steps of 4 chips per epoch (200 training chips)")
    assert preflight.plan(4, None) == ""


def test_expected_windows_and_size_match_the_export(chips):
    summary = json.loads((chips / "dataset.json").read_text())["summary"]
    expected = expectation(287, 310, 7, 1, 32)  # the rstoolbox raster: 287 x 310 px, 7 uint8 bands
    assert expected["windows"] == summary["windows"] == 90
    assert expected["bytes_per_chip"] == 32 * 32 * 8
    assert window_count(100, 32, 16) == 6 and window_count(10, 32, 32) == 0
    assert "720.0 KB" in describe(expected, 32)


def test_a_report_that_cannot_be_put_in_place_leaves_no_temporary_file(run, chips, tmp_path):
    """The page was written as '<report>.html.tmp': visible, shared by two runs, and left behind when the rename
    failed (here the report's path is a folder). Now hidden, this process's own, and removed."""
    outputs, _ = run
    (tmp_path / "report.html").mkdir()
    with pytest.raises(OSError):
        write_training_report(tmp_path / "report.html", outputs["OUTPUT"], outputs["CURVES_CSV"],
                              outputs["CURVES_PNG"], chips, outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    write_training_report(tmp_path / "kept.html", outputs["OUTPUT"], outputs["CURVES_CSV"], outputs["CURVES_PNG"],
                          chips, outputs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.html", "report.html"]


def test_the_report_gives_the_scene_s_class_shares_and_says_which_map_the_estimate_is_of(run, chips, tmp_path):
    outputs, _ = run
    card = read_card(outputs["OUTPUT"])
    entry = card["class_shares"]  # a model trained on polygons
    page = open(write_training_report(tmp_path / "shares.html", outputs["OUTPUT"], outputs["CURVES_CSV"], None,
                                      chips, outputs), encoding="utf-8").read()
    section = page.split("<h2>Class shares of the scene</h2>")[1].split("<h2>")[0]
    rows = re.findall(r"<tr><td>([^<]+)</td>" + r"<td>([^<]+)</td>" * 5 + "</tr>", section)
    names = {c["id"]: c["name"] for c in card["classes"]}
    mapped = entry["map_shares"]  # the map's shares over the trainer's sample, weighed and not
    assert rows == [(names[i], f"{100 * s:.1f} %", f"{100 * lr:.1f} %", f"{w:.3f}", f"{100 * on:.1f} %",
                     f"{100 * off:.1f} %") for i, s, lr, w, on, off in
                    zip(entry["class_ids"], entry["scene_shares"], entry["learned_shares"], entry["weights"],
                        mapped["weighed"], mapped["unweighed"])]
    assert ("almost none of" in section) == bool(vanishing(mapped["unweighed"], mapped["weighed"]))
    if entry["found_by"] == "counts":  # EM went astray (core/model/class_shares.py): the report names where
        astray = [names[i] for i in entry["em_astray_ids"]]
        assert "Counted on the model's own map" in section
        assert all(f"{n} " in section.split("astray")[1] for n in astray)
    else:
        assert "Estimated from the model's own probabilities" in section and "astray" not in section
    held = page.split("<h2>Held-out estimate of the map's accuracy</h2>")[1].split("<h2>")[0]
    unweighed = card["heldout"]["unweighed"]
    assert "This estimate is of the map with the classes weighed by the scene's shares" in held
    assert f"off: overall accuracy {100 * unweighed['overall_accuracy']:.1f} %" in held


def test_the_report_says_how_far_another_date_s_light_changes_the_map(run, chips, tmp_path):
    outputs, _ = run
    entry = read_card(outputs["OUTPUT"])["light_sensitivity"]
    page = open(write_training_report(tmp_path / "light.html", outputs["OUTPUT"], outputs["CURVES_CSV"], None,
                                      chips, outputs), encoding="utf-8").read()
    section = page.split("<h2>Another date's light</h2>")[1].split("<h2>")[0]
    assert f"Every band 5.0 % brighter</th><td>{100 * entry['brighter']:.1f} % of the labels change" in section
    assert f"Every band 5.0 % darker</th><td>{100 * entry['darker']:.1f} % of the labels change" in section
    worst = max(range(7), key=entry["bands"].__getitem__)
    assert f"band {worst + 1}: {100 * entry['bands'][worst]:.1f} % change when it alone" in section
    fragile = max(entry["brighter"], entry["darker"]) >= 0.2
    assert ("will differ from this one where nothing changed on the ground" in section) == fragile
    assert "landsat5_1988_7band.tif" in section
