"""'Assess accuracy' tells the reference pixels the map's model was trained on (core/assess/training_pixels.py):
against the training polygons it warns and scores them and the rest apart; against polygons held out of training it
does not. Two tiny models on rstoolbox's polygons: one trained again on all of them (the default refit), one not."""
import json

import numpy as np
import onnx
import pytest
import rasterio
from osgeo import gdal

from landcover_plugin.core.assess.assess import assess_accuracy
from landcover_plugin.core.assess.options import AssessOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY
from landcover_plugin.core.train.options import TrainConfig
from training.loop import train


def _model_and_map(chips, image, folder, refit: bool) -> dict:
    model = folder / "model.onnx"
    train(TrainConfig(dataset_dir=str(chips), output=str(model), epochs=2, batch_size=4, base_width=8,
                      learning_rate=3e-3, patience=0, device="cpu", cv_folds=1, refit=refit), RecordingEvents())
    card = json.loads({p.key: p.value for p in onnx.load(str(model)).metadata_props}[CARD_KEY])
    return {"card": card, "map": classify_raster(ClassifyOptions(image, model, folder / "map.tif"),
                                                 RecordingEvents())["OUTPUT"]}


@pytest.fixture(scope="module")
def maps(chips, shared_data, tmp_path_factory):
    image = shared_data / "rstoolbox" / "landsat5_1988_7band.tif"
    return {name: _model_and_map(chips, image, tmp_path_factory.mktemp(name), refit)
            for name, refit in (("refit", True), ("held_out", False))}


def _taught(chips, height, width, splits) -> np.ndarray:
    """The labelled pixels of the chips of ``splits``, placed by their windows on the source grid."""
    data = json.loads((chips / "dataset.json").read_text(encoding="utf-8"))
    taught = np.zeros((height, width), dtype=bool)
    for chip in data["chips"]:
        if chip["split"] in splits:
            w = chip["window"]
            with rasterio.open(chips / chip["label"]) as src:
                taught[w["row_off"]:w["row_off"] + w["height"], w["col_off"]:w["col_off"] + w["width"]] |= \
                    src.read(1) > 0
    return taught


def _assess(classified, folder, **reference):
    events = RecordingEvents()
    outputs = assess_accuracy(AssessOptions(str(classified), output_folder=str(folder), **reference), events)
    report = json.loads(open(outputs["OUTPUT_JSON"], encoding="utf-8").read())
    assert outputs["TRAINING_PIXEL_SHARE"] == (report.get("reference_on_training_pixels") or {}).get("share")
    assert outputs["TRAINER_OA"] == (report["trainer_estimate"] or {}).get("trainer_overall_accuracy")
    return report, [e["message"] for e in events.of_type("log") if e.get("level") == "warning"], \
        open(outputs["OUTPUT_HTML"], encoding="utf-8").read()


def test_the_cards_say_which_chips_the_model_learned_from(maps, chips):
    for name, trained in (("refit", "all"), ("held_out", "train")):
        source = maps[name]["card"]["source"]
        assert source["chips"] == str(chips.absolute()) and source["chips_trained"] == trained
        assert source["labels_kind"] == "vector" and source["image"].endswith("landsat5_1988_7band.tif")


def test_against_the_training_polygons_the_report_warns(maps, shared_data, tmp_path):
    report, warnings, html = _assess(maps["refit"]["map"], tmp_path, class_field="class",
                                     reference_vector=str(shared_data / "rstoolbox" / "training_polygons.gpkg"))
    entry = report["reference_on_training_pixels"]
    assert entry["share"] > 0.9 and entry["pixels"] <= report["summary"]["pixels_assessed"]
    assert entry["warning"] in warnings and "the map is scored on what it was taught" in entry["warning"]
    assert entry["pixels"] == report["summary"]["pixels_assessed"] and entry["pixels_elsewhere"] == 0
    assert entry["overall_accuracy_on_them"] == pytest.approx(report["summary"]["overall_accuracy"], abs=1e-4)
    assert "no other reference pixel is left to check it" in entry["warning"]
    assert "the map is scored on what it was taught" in html


def test_the_pixels_counted_are_the_chips_labelled_pixels(maps, chips, tmp_path):
    """The map as its own reference raster: every valid pixel is assessed, and those on training pixels are
    exactly the chips' labelled pixels (placed by their windows, independently of the warp the count uses)."""
    for name, splits in (("refit", ("train", "val")), ("held_out", ("train",))):
        with rasterio.open(maps[name]["map"]) as src:
            classes = src.read(1)
        report, _warnings, _html = _assess(maps[name]["map"], tmp_path / name, reference_raster=str(maps[name]["map"]))
        taught = _taught(chips, *classes.shape, splits)
        assert report["reference_on_training_pixels"]["pixels"] == int((taught & (classes > 0)).sum()) > 0
        assert report["summary"]["pixels_assessed"] == int((classes > 0).sum())


def test_polygons_held_out_of_training_raise_no_warning(maps, chips, shared_data, tmp_path):
    val_fids = json.loads((chips / "dataset.json").read_text(encoding="utf-8"))["split"]["val_fids"]
    held_out = tmp_path / "held_out.gpkg"
    gdal.VectorTranslate(str(held_out), str(shared_data / "rstoolbox" / "training_polygons.gpkg"),
                         where=f"fid IN ({', '.join(map(str, val_fids))})")
    report, warnings, _html = _assess(maps["held_out"]["map"], tmp_path / "held_out", class_field="class",
                                      reference_vector=str(held_out))
    entry = report["reference_on_training_pixels"]
    assert entry["share"] < 0.01 and entry["warning"] is None and not warnings
    # against every polygon the same map is scored apart on those it learned and on the held-out ones: the latter
    # as they score alone
    everything, warnings, _html = _assess(maps["held_out"]["map"], tmp_path / "all", class_field="class",
                                          reference_vector=str(shared_data / "rstoolbox" / "training_polygons.gpkg"))
    both = everything["reference_on_training_pixels"]
    assert both["pixels_elsewhere"] == report["summary"]["pixels_assessed"] - entry["pixels"]
    assert both["overall_accuracy_elsewhere"] == pytest.approx(report["summary"]["overall_accuracy"], abs=1e-4)
    assert both["share"] > 0.5 and both["warning"] in warnings
    assert f"on the other {both['pixels_elsewhere']:,}" in both["warning"]
    # the model trained again on every polygon did learn them
    report, warnings, _html = _assess(maps["refit"]["map"], tmp_path / "refit", class_field="class",
                                      reference_vector=str(held_out))
    assert report["reference_on_training_pixels"]["share"] > 0.9 and warnings


def test_a_map_whose_chip_dataset_is_gone_is_assessed_without_the_check(maps, tmp_path):
    with rasterio.open(maps["refit"]["map"]) as src:
        profile, pixels = src.profile, src.read(1)
        tags = src.tags()
    record = json.loads(tags["landcover_model"])
    record["chips"] = str(tmp_path / "no_such_dataset")
    moved = tmp_path / "moved.tif"
    with rasterio.open(moved, "w", **profile) as dst:
        dst.write(pixels, 1)
        dst.update_tags(landcover_model=json.dumps(record))
    report, _warnings, _html = _assess(moved, tmp_path / "moved", reference_raster=str(moved))
    assert "reference_on_training_pixels" not in report
    assert report["trainer_estimate"] is not None  # the rest of the record still speaks


def test_a_map_warped_to_another_crs_is_checked_on_its_own_grid(maps, tmp_path):
    """The map warped to Web Mercator (GDAL keeps its tags): the chips are warped onto that grid, so about as large a
    share of its pixels is found to be training pixels as on the map's own grid."""
    own, _warnings, _html = _assess(maps["refit"]["map"], tmp_path / "own", reference_raster=str(maps["refit"]["map"]))
    warped = tmp_path / "warped.tif"
    gdal.Warp(str(warped), str(maps["refit"]["map"]), dstSRS="EPSG:3857", resampleAlg="near")
    report, _warnings, _html = _assess(warped, tmp_path / "warped", reference_raster=str(warped))
    share, expected = report["reference_on_training_pixels"]["share"], own["reference_on_training_pixels"]["share"]
    assert expected > 0.02 and share == pytest.approx(expected, rel=0.1)
    assert report["reference_on_training_pixels"]["overall_accuracy_on_them"] == 1.0  # the map against itself
