"""A classified map records the model that made it and the trainer's estimate of its accuracy (its
``landcover_model`` tag, core/model/map_record.py); 'Assess accuracy' sets what it measures beside that estimate.

A tiny model trained on rstoolbox's polygons (its card holds the held-out estimate of the weighed and the unweighed
map) classifies the rstoolbox scene; the map is assessed against the polygons, against a raster and against a
stratified sample of points."""
import json
import shutil

import numpy as np
import onnx
import pytest
import rasterio
from osgeo import ogr, osr

from landcover_plugin.core.assess.assess import assess_accuracy
from landcover_plugin.core.assess.options import AssessOptions
from landcover_plugin.core.chips.dataset import load_spec
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY
from landcover_plugin.core.model.map_record import read_record
from landcover_plugin.core.train.options import TrainConfig
from training.finish import record_light_sensitivity
from training.loop import train


@pytest.fixture(scope="module")
def mapped(chips, shared_data, tmp_path_factory):
    """The trained model's card and its map of the rstoolbox scene (classes weighed, as by default)."""
    folder = tmp_path_factory.mktemp("map_record")
    model = folder / "model.onnx"
    trained = RecordingEvents()
    train(TrainConfig(dataset_dir=str(chips), output=str(model), epochs=3, batch_size=4, base_width=8,
                      learning_rate=3e-3, patience=0, device="cpu", cv_folds=1), trained)
    card = json.loads({p.key: p.value for p in onnx.load(str(model)).metadata_props}[CARD_KEY])
    events = RecordingEvents()
    image = shared_data / "rstoolbox" / "landsat5_1988_7band.tif"
    result = classify_raster(ClassifyOptions(image, model, folder / "map.tif"), events)
    return {"folder": folder, "model": model, "card": card, "image": image, "map": result["OUTPUT"],
            "logs": [e["message"] for e in events.of_type("log")], "training_logs": trained.of_type("log")}


def test_the_map_records_the_model_and_the_estimate_of_the_map_it_is(mapped):
    card, held = mapped["card"], mapped["card"]["heldout"]
    assert card["source"]["image"] == str(mapped["image"].absolute())  # the card names its training raster
    entry = read_record(mapped["map"])
    assert entry["model"] == "model.onnx" and entry["model_created"] == card["created"]
    assert entry["raster"] == entry["training_raster"] == "landsat5_1988_7band.tif" and entry["same_raster"] is True
    assert entry["classes_weighed"] is True and held["classes_weighed"] is True
    estimate = entry["estimate"]
    assert estimate["overall_accuracy"] == held["overall_accuracy"] and estimate["mean_iou"] == held["mean_iou"]
    assert estimate["of_this_map"] is True
    told = [m for m in mapped["logs"] if m.startswith("The trainer estimated this model's maps")]
    assert told == [f"The trainer estimated this model's maps at overall accuracy {held['overall_accuracy']:.0%}, "
                    f"mean IoU {held['mean_iou']:.0%}, on landsat5_1988_7band.tif. It rests on only "
                    f"{held['polygons']} held-out polygons: rough (about ±0.1). The map records it, and "
                    f"'Assess accuracy' sets it beside what it measures."]


def test_an_unweighed_map_records_the_unweighed_estimate_and_another_raster_is_named(mapped):
    folder, held = mapped["folder"], mapped["card"]["heldout"]
    copy = folder / "elsewhere.tif"
    shutil.copy(mapped["image"], copy)
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(copy, mapped["model"], folder / "unweighed.tif", class_shares="off"),
                             events)
    entry = read_record(result["OUTPUT"])
    assert entry["classes_weighed"] is False and entry["same_raster"] is False and entry["raster"] == "elsewhere.tif"
    assert entry["estimate"]["overall_accuracy"] == held["unweighed"]["overall_accuracy"]
    assert entry["estimate"]["mean_iou"] == held["unweighed"]["mean_iou"]
    assert entry["estimate"]["of_this_map"] is True
    told = [e["message"] for e in events.of_type("log") if e["message"].startswith("The trainer estimated")]
    assert len(told) == 1 and "It is of the training raster: this raster is another" in told[0]
    # and how far light changes this model's map, as the trainer measured it: the map records it too
    light = mapped["card"]["light_sensitivity"]
    assert entry["light_sensitivity"] == {k: light[k] for k in ("gain", "brighter", "darker")}
    assert (f"(the trainer found that 5% more light in every band changes {light['brighter']:.0%} of this model's "
            f"labels, 5% less {light['darker']:.0%}; for another date of its place, turn on 'Match to the training "
            f"raster')") in told[0]  # this model: 93 % and 41 %


def test_another_date_matched_to_the_training_raster_is_recorded_and_said(mapped):
    """A date 10 % brighter, matched by the trainer's own card (its training raster, its seven bands): the map
    records the lines and is the training raster's map; the estimate's caveat says how it was read."""
    folder = mapped["folder"]
    with rasterio.open(mapped["image"]) as src:
        data, profile = src.read(), src.profile
    brighter = folder / "brighter.tif"
    with rasterio.open(brighter, "w", **profile) as dst:
        dst.write(np.clip(np.round(data * 1.1), 0, np.iinfo(data.dtype).max).astype(data.dtype))
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(brighter, mapped["model"], folder / "matched.tif",
                                             match_training_raster=True), events)
    entry = read_record(result["OUTPUT"])
    assert entry["same_raster"] is False and entry["matched_to_training"]["raster"] == "landsat5_1988_7band.tif"
    # the thermal band (131-146 in 8 bits) times 1.1 is its value + 14 over most of its range: a shift there
    assert np.isclose(np.median(entry["matched_to_training"]["gain"]), 1 / 1.1, rtol=0.02)
    with rasterio.open(result["OUTPUT"]) as matched, rasterio.open(mapped["map"]) as original:
        assert (matched.read(1) == original.read(1)).mean() > 0.98
    told = [e["message"] for e in events.of_type("log") if e["message"].startswith("The trainer estimated")]
    assert "this raster is another, read as the training raster's values (gains 0." in told[0]


def test_assessing_against_polygons_says_they_score_clear_places(mapped, shared_data, tmp_path):
    events = RecordingEvents()
    outputs = assess_accuracy(AssessOptions(mapped["map"], reference_vector=str(shared_data / "rstoolbox" /
                                                                                "training_polygons.gpkg"),
                                            class_field="class", output_folder=str(tmp_path)), events)
    report = json.loads(open(outputs["OUTPUT_JSON"], encoding="utf-8").read())
    found = report["trainer_estimate"]
    assert found["trainer_overall_accuracy"] == mapped["card"]["heldout"]["overall_accuracy"]
    assert found["measured_overall_accuracy"] == outputs["OA"] == report["summary"]["overall_accuracy"]
    assert found["difference"] == pytest.approx(outputs["OA"] - found["trainer_overall_accuracy"], abs=1e-4)
    assert "polygons lie in clear places" in found["text"] and "within_ci95" not in found
    assert found["text"] in [e["message"] for e in events.of_type("log")]
    html = open(outputs["OUTPUT_HTML"], encoding="utf-8").read()
    assert "The trainer&#x27;s estimate" in html or "The trainer's estimate" in html


def test_against_a_raster_the_difference_is_the_map_s_and_a_map_without_a_record_says_nothing(mapped, tmp_path):
    found = _assess(mapped["map"], tmp_path / "self", reference_raster=str(mapped["map"]))
    assert found["measured_overall_accuracy"] == 1.0  # the map against itself
    assert found["difference"] == pytest.approx(1.0 - found["trainer_overall_accuracy"], abs=1e-4)
    assert f"over the reference raster's pixels the map scores 100.0% ({100 * found['difference']:+.1f} points " \
        in found["text"]
    bare = tmp_path / "bare.tif"  # the same pixels, written without the tags (a map made elsewhere)
    with rasterio.open(mapped["map"]) as src:
        profile, pixels = src.profile, src.read(1)
    with rasterio.open(bare, "w", **profile) as dst:
        dst.write(pixels, 1)
    assert read_record(bare) is None
    assert _assess(bare, tmp_path / "bare", reference_raster=str(mapped["map"])) is None


def test_a_sample_says_whether_the_estimate_lies_within_its_interval(mapped, tmp_path):
    """30 points a map class, their reference the map's class but at every third point another class: the sample
    estimates about 67 %, with an interval, and says where the trainer's figure lies."""
    points = _sample(mapped, tmp_path / "sample.gpkg", 30)
    found = _assess(mapped["map"], tmp_path / "report", reference_vector=str(points), class_field="reference_class")
    report = json.loads((tmp_path / "report" / "accuracy.json").read_text(encoding="utf-8"))
    oa, ci = report["overall_accuracy_estimate"], report["overall_ci95"]
    assert found["measured_overall_accuracy"] == pytest.approx(oa) and 0.5 < oa < 0.8 and ci > 0.02
    within = abs(oa - found["trainer_overall_accuracy"]) <= ci
    assert found["within_ci95"] is within
    assert f"this sample estimates {oa:.1%} ± {100 * ci:.1f}, and the trainer's estimate lies" in found["text"]
    assert ("lies within that interval" in found["text"]) is within


def test_a_sample_too_thin_for_an_interval_says_so_and_checks_nothing(mapped, tmp_path):
    """One point of the last map class: no area-weighted estimate, so no interval to check the trainer's figure
    against; the comparison gives the raw counts' figure as such (not as a reference raster's)."""
    points = _sample(mapped, tmp_path / "sample.gpkg", 30, last=1)
    found = _assess(mapped["map"], tmp_path / "report", reference_vector=str(points), class_field="reference_class")
    report = json.loads((tmp_path / "report" / "accuracy.json").read_text(encoding="utf-8"))
    assert report["overall_ci95"] is None and "within_ci95" not in found
    raw = report["summary"]["overall_accuracy"]
    assert found["measured_overall_accuracy"] == pytest.approx(raw)
    assert f"the sample's points score {raw:.1%} counted as they are" in found["text"]
    assert "reference raster" not in found["text"]


def _sample(mapped, path, per_class: int, last: int = None):
    """Points at pixel centres, ``per_class`` of each map class (``last`` of the last one), their reference the
    map's class but at every third point the next class."""
    with rasterio.open(mapped["map"]) as src:
        classes, transform, crs = src.read(1), src.transform, src.crs
    ids = [c["id"] for c in mapped["card"]["classes"]]
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs.to_wkt())
    layer = source.CreateLayer("sample", srs, ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("reference_class", ogr.OFTInteger))
    rng = np.random.default_rng(0)
    n = 0
    for k in ids:
        rows, cols = np.nonzero(classes == k)
        count = last if last is not None and k == ids[-1] else per_class
        for i in rng.choice(len(rows), min(count, len(rows)), replace=False):
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("reference_class", int(k if n % 3 else ids[(ids.index(k) + 1) % len(ids)]))
            point = ogr.Geometry(ogr.wkbPoint)
            point.AddPoint_2D(*(transform * (cols[i] + 0.5, rows[i] + 0.5)))
            feature.SetGeometry(point)
            layer.CreateFeature(feature)
            n += 1
    source = None
    return path


def _assess(classified, folder, **reference):
    events = RecordingEvents()
    outputs = assess_accuracy(AssessOptions(str(classified), output_folder=str(folder), **reference), events)
    report = json.loads(open(outputs["OUTPUT_JSON"], encoding="utf-8").read())
    return report["trainer_estimate"]


def _labels_changed(mapped, gain: float, events=None) -> float:
    """The share of the rstoolbox map's valid pixels whose label changes on a copy of the raster ``gain`` times as
    bright (8 bits, no data kept), both classified as by default."""
    with rasterio.open(mapped["image"]) as src:
        data, profile = src.read(), src.profile
    brighter = mapped["folder"] / f"times_{gain}.tif"
    with rasterio.open(brighter, "w", **profile) as dst:
        dst.write(np.where(data == 255, 255, np.clip(np.round(data * gain), 0, 254)).astype(data.dtype))
    result = classify_raster(ClassifyOptions(brighter, mapped["model"], mapped["folder"] / f"times_{gain}_map.tif"),
                             events or RecordingEvents())
    with rasterio.open(result["OUTPUT"]) as changed, rasterio.open(mapped["map"]) as original:
        after, before = changed.read(1), original.read(1)
    return float((after[before > 0] != before[before > 0]).mean())


def test_a_date_three_percent_brighter_is_warned_of_by_its_thermal_band(mapped):
    """The trained model on rstoolbox 3 % brighter: six bands move under a third of their training stds, the thermal
    band (137.6 +- 1.8 in 8 bits) 2.2 of its own; the map changes, and Classify says why, before any map is used."""
    events = RecordingEvents()
    same = 1.0 - _labels_changed(mapped, 1.03, events)
    told = [e["message"] for e in events.of_type("log") if e["level"] == "warning"
            and "than the model's training data in every band" in e["message"]]
    assert len(told) == 1 and "most in band 6" in told[0] and "The band that moved most, band 6" in told[0]
    assert "the trainer found that 5% more light in every band changes" in told[0]  # the trainer's measurement
    assert same < 0.8  # 0.34 with this 3-epoch model; 0.20 with the trainer's defaults (cross-validated 0.997)


def test_the_trainer_measures_how_far_light_changes_the_map(mapped):
    """The card's light sensitivity (training/light_sensitivity.py) is what a copy of the raster 5 % brighter does
    to the map, and the trainer's log says it, as a warning where the model is fragile."""
    entry = mapped["card"]["light_sensitivity"]
    assert entry["gain"] == 0.05 and entry["raster"] == "landsat5_1988_7band.tif" and len(entry["bands"]) == 7
    measured = _labels_changed(mapped, 1.05)  # the map Classify makes by default, classes weighed, as measured
    assert abs(entry["brighter"] - measured) < 0.05, (entry["brighter"], measured)  # 0.922 / 0.917 here
    assert entry["bands"][5] == max(entry["bands"])  # the thermal band, 137.6 +- 1.8
    told = [e for e in mapped["training_logs"] if e["message"].startswith("Light sensitivity, over ")]
    assert len(told) == 1 and f"every band 5% brighter changes {entry['brighter']:.0%}" in told[0]["message"]
    assert told[0]["level"] == ("warning" if max(entry["brighter"], entry["darker"]) >= 0.2 else "info")
    if told[0]["level"] == "warning":  # the thermal band: 5 % moves it by 3.9 of its standard deviations
        assert "band 6 varies little over this raster (5% moves it by 3.9 of its standard deviations" in \
            told[0]["message"]


def test_a_training_raster_that_cannot_be_read_leaves_the_model_as_it_was_and_says_so(mapped, chips, tmp_path):
    """The light sensitivity is measured on the staged model after training: a training raster replaced since the
    export by a file GDAL cannot read must not cost the run its model."""
    folder = tmp_path / "chips"
    shutil.copytree(chips, folder)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a raster")
    content = json.loads((folder / "dataset.json").read_text())
    content["source"]["image"] = str(broken)
    (folder / "dataset.json").write_text(json.dumps(content))
    model = tmp_path / "model.onnx"
    shutil.copy(mapped["model"], model)
    events = RecordingEvents()
    record_light_sensitivity(model, load_spec(folder), events)
    (warning,) = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert warning.startswith("Could not measure how far another date's light changes the labels (")
    assert model.read_bytes() == mapped["model"].read_bytes()


def test_a_card_names_each_training_raster_where_it_is_here(tmp_path):
    """Trained on a server (each raster read from a copy there, ``images_recorded`` the exports' paths), classified
    at home: each raster is the copy that is here, read or recorded; one in neither place keeps the path training
    read it from, for the messages."""
    from landcover_plugin.core.model.map_record import training_images, training_raster

    home = [tmp_path / "north.tif", tmp_path / "south.tif"]
    for path in home:
        path.write_bytes(b"")
    server = ["/server/project/north.tif", "/server/project/south.tif"]
    card = {"source": {"image": server[0], "image_recorded": str(home[0]), "images": server,
                       "images_recorded": [str(home[0]), "/nowhere/south.tif"]}}
    assert training_images(card) == [str(home[0]), server[1]]
    assert training_raster(card) == str(home[0])
    card["source"]["images_recorded"] = [str(p) for p in home]
    assert training_images(card) == [str(p) for p in home]
    read_here = {"source": {"image": str(home[1]), "image_recorded": "/elsewhere/south.tif"}}
    assert training_images(read_here) == [str(home[1])] == [training_raster(read_here)]
    assert training_images({"source": {"image": server[0]}}) == [server[0]]  # older cards: as recorded
    assert training_raster({"class_shares": {"source": server[1]}}) == server[1]
