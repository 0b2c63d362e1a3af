"""The analyst's flow in a real headless QGIS on real rstoolbox data (issue 16): nothing kept goes to a temporary
file, each step opens with the last one's output, either/or inputs and band counts are checked before the run,
and Train writes an HTML training report."""
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingUtils,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

TINY = {"EPOCHS": 2, "BATCH_SIZE": 4, "BASE_WIDTH": 8, "PATIENCE": 0, "DEVICE": 1}


def algorithm(name):
    found = QgsApplication.processingRegistry().createAlgorithmById(f"landcover:{name}")
    assert found is not None
    return found


def context_of(project_dir=None):
    context = QgsProcessingContext()
    project = QgsProject.instance()
    if project_dir is not None:
        project.setFileName(str(project_dir / "analysis.qgz"))
    context.setProject(project)
    return context


def run(name, parameters, context=None):
    feedback = QgsProcessingFeedback()
    results, ok = algorithm(name).run(parameters, context or context_of(), feedback)
    return results, ok, feedback.textLog()


def check(name, parameters):
    return algorithm(name).checkParameterValues(parameters, context_of())


def test_temporary_outputs_are_kept_beside_the_input_and_the_next_step_opens_with_them(provider, shared_data,
                                                                                       tmp_path):
    scene = tmp_path / "rstoolbox"  # a folder of its own: outputs will appear beside the raster
    shutil.copytree(shared_data / "rstoolbox", scene)
    results, ok, log = run("export_label_chips", {
        "INPUT": str(scene / "landsat5_1988_7band.tif"), "LABELS": str(scene / "training_polygons.gpkg"),
        "CLASS_FIELD": "class", "CHIP_SIZE": 32, "OUTPUT": QgsProcessing.TEMPORARY_OUTPUT})
    assert ok, log
    chips = Path(results["OUTPUT"])
    assert chips.parent == scene and chips.name.startswith("landsat5_1988_7band_chips")
    assert (chips / "dataset.json").is_file() and "not to a temporary file" in log
    # expectations before the run: 287x310 px in 32 px windows (9 x 10), 7 uint8 bands + labels = 8 KB a chip
    assert "Expect up to 90 windows of 32x32 px" in log and "8.0 KB a chip" in log
    # Train opens with that folder; its model goes beside the chips, its report beside the model
    assert algorithm("train_segmentation_model").parameterDefinition("DATASET").defaultValue() == str(chips)
    results, ok, log = run("train_segmentation_model", dict(TINY, DATASET=str(chips),
                                                            OUTPUT=QgsProcessing.TEMPORARY_OUTPUT))
    assert ok, log
    model = Path(results["OUTPUT"])
    assert model.parent == scene and model.name.startswith(chips.name + "_model") and model.suffix == ".onnx"
    report = Path(results["OUTPUT_REPORT"])
    assert report == model.with_name(model.stem + "_report.html") and report.is_file()
    assert not str(report).startswith(QgsProcessingUtils.tempFolder())
    assert algorithm("classify_raster").parameterDefinition("MODEL").defaultValue() == str(model)


def test_the_training_report_shows_the_run(provider, chips, tmp_path):
    out = tmp_path / "model.onnx"
    results, ok, log = run("train_segmentation_model", dict(TINY, DATASET=str(chips), OUTPUT=str(out),
                                                            OUTPUT_REPORT=str(tmp_path / "report.html")))
    assert ok, log
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    HTMLParser().feed(page)
    assert f'<img src="{Path(results["CURVES_PNG"]).name}"' in page  # beside the report: by name
    assert f"{100 * results['HELDOUT_OA']:.1f} %" in page and "held-out polygons" in page
    assert f"epoch {results['BEST_EPOCH']})" in page and 'class="best"' in page
    for name in ("cleared", "fallen_dry", "forest", "water"):
        assert f"{name}</td>" in page
    summary = json.loads((chips / "dataset.json").read_text())["summary"]
    assert "batch size" in page and f"{summary['train_chips']} training, {summary['val_chips']} validation" in page
    assert "Training report: " + str(tmp_path / "report.html") in log


def test_a_batch_as_large_as_the_training_set_is_reduced_and_few_validation_chips_warned(provider, chips,
                                                                                         tmp_path):
    train_chips = json.loads((chips / "dataset.json").read_text())["summary"]["train_chips"]
    fitted = train_chips // 4  # four batches of different chips an epoch (core/train/preflight.py)
    assert 2 <= fitted < train_chips
    results, ok, log = run("train_segmentation_model", dict(TINY, EPOCHS=1, BATCH_SIZE=train_chips,
                                                            DATASET=str(chips), OUTPUT=str(tmp_path / "m.onnx")))
    assert ok, log
    assert f"Batch size {train_chips} is too large for {train_chips} training chips" in log
    assert f"batches of {fitted} instead" in log
    assert f"batch size {fitted}" in log  # what the engine then trained with
    assert f"Expect {max(train_chips // fitted, 16)} steps of {fitted} chips per epoch" in log


def test_either_or_inputs_are_checked_before_the_run(provider, shared_data, tmp_path):
    scene = shared_data / "rstoolbox"
    image = QgsRasterLayer(str(scene / "landsat5_1988_7band.tif"), "image")
    polygons = QgsVectorLayer(str(scene / "training_polygons.gpkg"), "polygons", "ogr")
    base = {"CLASSIFIED": image, "OUTPUT_HTML": str(tmp_path / "a.html"), "OUTPUT_TABLE": str(tmp_path / "a.csv")}
    ok, message = check("assess_accuracy", base)
    assert not ok and "one of the two" in message
    ok, message = check("assess_accuracy", dict(base, REFERENCE_VECTOR=polygons, REFERENCE_RASTER=image,
                                                CLASS_FIELD="class"))
    assert not ok and "one of the two" in message
    ok, message = check("assess_accuracy", dict(base, REFERENCE_VECTOR=polygons))
    assert not ok and "class field" in message
    ok, message = check("assess_accuracy", dict(base, REFERENCE_VECTOR=polygons, CLASS_FIELD="class",
                                                CLASSES_TABLE=[1, "cleared", ""], CLASSES_FROM_LAYER=polygons))
    assert not ok and "one way only" in message
    assert check("assess_accuracy", dict(base, REFERENCE_VECTOR=polygons, CLASS_FIELD="class"))[0]
    ok, message = check("export_label_chips", {"INPUT": image, "OUTPUT": str(tmp_path / "c")})
    assert not ok and "one of the two" in message


def test_the_class_list_of_assess_can_be_a_table(provider, shared_data, tmp_path):
    # a classified raster without class names: ids 1..4 as rstoolbox's classes, named by the table
    import numpy as np
    import rasterio

    scene = shared_data / "rstoolbox"
    with rasterio.open(scene / "landsat5_1988_7band.tif") as src:
        profile = dict(src.profile, count=1, dtype="uint8", nodata=0)
        classes = (np.arange(src.height * src.width).reshape(src.height, src.width) % 4 + 1).astype("uint8")
    with rasterio.open(tmp_path / "map.tif", "w", **profile) as dst:
        dst.write(classes, 1)
    table = [1, "cleared", "", 2, "fallen_dry", "", 3, "forest", "", 4, "water", ""]
    results, ok, log = run("assess_accuracy", {
        "CLASSIFIED": str(tmp_path / "map.tif"), "REFERENCE_VECTOR": str(scene / "training_polygons.gpkg"),
        "CLASS_FIELD": "class", "CLASSES_TABLE": table, "OUTPUT_HTML": str(tmp_path / "a.html"),
        "OUTPUT_TABLE": str(tmp_path / "a.csv")})
    assert ok, log
    names = [c["name"] for c in json.loads((tmp_path / "a.json").read_text())["classes"]]
    assert names == ["cleared", "fallen_dry", "forest", "water"]
    assert log.count("Overall accuracy") == 1  # the summary is said once


def test_classify_refuses_a_raster_with_the_wrong_band_count_before_the_run(provider, shared_data, tmp_path):
    from classify_models import card_for, export, tiny_net

    from landcover_plugin.core.model.card import metadata_props

    card = card_for(["water", "forest", "shrubland"], mean=[0.0] * 4, std=[1.0] * 4, tile=32, input_dtype="uint16")
    model = export(tiny_net(4, 3), tmp_path / "m.onnx", 4, 32, metadata_props(card))
    image = QgsRasterLayer(str(shared_data / "rstoolbox" / "landsat5_1988_7band.tif"), "rstoolbox")
    ok, message = check("classify_raster", {"INPUT": image, "MODEL": model, "OUTPUT": str(tmp_path / "c.tif")})
    assert not ok and "'rstoolbox': The raster has 7 bands but the model takes 4 bands, in this order" in message
    zion = QgsRasterLayer(str(shared_data / "zion" / "landsat8_2015_b2345.tif"), "zion")
    assert check("classify_raster", {"INPUT": zion, "MODEL": model, "OUTPUT": str(tmp_path / "c.tif")})[0]


def test_a_temporary_training_areas_file_goes_beside_the_project(provider, tmp_path):
    results, ok, log = run("create_training_layer", {"OUTPUT": QgsProcessing.TEMPORARY_OUTPUT,
                                                           "CRS": "EPSG:32622"}, context_of(tmp_path))
    assert ok, log
    assert Path(results["OUTPUT"].split("|")[0]).parent == tmp_path
    QgsProject.instance().setFileName("")


def test_assess_sets_the_trainer_s_estimate_beside_its_own_and_tells_the_training_polygons(provider, chips,
                                                                                           shared_data, tmp_path):
    """Train -> classify -> assess against the training polygons, in QGIS: the map carries the trainer's estimate
    to Assess, which says the reference is the model's own training data (the layer reaches the engine as a
    temporary copy: the check goes by the chips' pixels, not by file names)."""
    trained, ok, log = run("train_segmentation_model", dict(TINY, DATASET=str(chips),
                                                            OUTPUT=str(tmp_path / "model.onnx")))
    assert ok, log
    image = str(shared_data / "rstoolbox" / "landsat5_1988_7band.tif")
    classified, ok, log = run("classify_raster", {"INPUT": image, "MODEL": trained["OUTPUT"],
                                                  "OUTPUT": str(tmp_path / "map.tif")})
    assert ok, log
    assert f"The trainer estimated this model's maps at overall accuracy {trained['HELDOUT_OA']:.0%}" in log
    polygons = QgsVectorLayer(str(shared_data / "rstoolbox" / "training_polygons.gpkg"), "training areas", "ogr")
    results, ok, log = run("assess_accuracy", {"CLASSIFIED": classified["OUTPUT"], "REFERENCE_VECTOR": polygons,
                                               "CLASS_FIELD": "class", "OUTPUT_HTML": str(tmp_path / "report.html"),
                                               "OUTPUT_TABLE": str(tmp_path / "table.csv")})
    assert ok, log
    assert results["TRAINER_OA"] == trained["HELDOUT_OA"] and results["TRAINING_PIXEL_SHARE"] == 1.0
    assert "are pixels the model that made this map was trained on" in log
    assert "trainer estimated overall accuracy" in (tmp_path / "report.html").read_text(encoding="utf-8")
