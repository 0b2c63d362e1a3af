""""Create reference sample" and "Assess accuracy" with its labelled points, in a real headless QGIS on the
real Zion data: the loop an analyst follows to get areas with confidence intervals.

The map is NLCD with 15 % of its pixels changed to another class; NLCD itself stands in for the
interpreter who labels the points. So the truth the estimates must find is known: NLCD's own areas.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import (
    NULL,
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsPointXY,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)

from landcover_plugin.qgis_glue.sample_layer import VALUEMAP_NULL


def run(algorithm_id, parameters):
    algorithm = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
    assert algorithm is not None, f"{algorithm_id} is not registered"
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    context.setProject(QgsProject.instance())
    results, ok = algorithm.run(parameters, context, feedback)
    return results, ok, feedback.textLog(), context


@pytest.fixture(scope="module")
def zion(shared_data, tmp_path_factory):
    classes = json.loads((shared_data / "zion" / "classes.json").read_text())["classes"]
    nlcd = shared_data / "zion" / "nlcd2011_8class.tif"
    with rasterio.open(nlcd) as src:
        reference, profile = src.read(1), src.profile
    labelled = reference != 255
    changed = labelled & (np.random.default_rng(5).random(reference.shape) < 0.15)
    classified = np.where(changed, reference % 8 + 1, reference).astype(np.uint8)
    classified[~labelled] = 0
    profile.update(nodata=0)
    path = tmp_path_factory.mktemp("zion_map") / "classified.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(classified, 1)
        dst.update_tags(landcover_classes=json.dumps(classes))
    truth_ha = np.bincount(reference[labelled], minlength=9)[1:] * 0.09
    return path, nlcd, classes, truth_ha


def test_sample_labelled_then_assessed_gives_areas_with_confidence_intervals(provider, tmp_path, zion):
    classified, nlcd, classes, truth_ha = zion
    path = tmp_path / "sample.gpkg"
    results, ok, log, context = run("landcover:create_reference_sample", {
        "INPUT": str(classified), "TARGET_SE": 0.02, "MIN_DISTANCE": 90, "SEED": 42, "OUTPUT": str(path)})
    assert ok, log
    # 0.8 anticipated user's accuracy everywhere and S(O) = 0.02: n = (0.4 / 0.02)^2 = 400 points;
    # with the recommended allocation and 8 classes, each gets the minimum of 50.
    assert results["SAMPLE_SIZE"] == 400 and results["SEED_USED"] == 42
    assert "Water 50" in log and "reference_class" in log
    assert str(path) in next(iter(context.layersToLoadOnCompletion())).split("|")[0]

    # A fresh load of the file: the form is ready for blind labelling, the style shows progress.
    layer = QgsVectorLayer(f"{path}|layername=reference_sample", "sample", "ogr")
    assert layer.isValid() and layer.featureCount() == 400 and layer.crs().authid() == "EPSG:32612"
    fields = layer.fields()
    setup = layer.editorWidgetSetup(fields.indexOf("reference_class"))
    assert setup.type() == "ValueMap"
    pairs = [(name, value) for item in setup.config()["map"] for name, value in item.items()]
    assert pairs[0][1] == VALUEMAP_NULL
    assert pairs[1:] == [(c["name"], c["id"]) for c in classes]
    assert layer.editorWidgetSetup(fields.indexOf("map_class")).type() == "Hidden"
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "reference_class"
    assert [c.label() for c in renderer.categories()][:2] == ["Water", "Developed"]
    assert all(f["reference_class"] in (None, NULL) for f in layer.getFeatures())  # not labelled yet

    # The stand-in interpreter labels every point from NLCD, through QGIS's editing.
    nlcd_layer = QgsRasterLayer(str(nlcd), "nlcd")
    provider_nlcd = nlcd_layer.dataProvider()
    reference_index = fields.indexOf("reference_class")
    assert layer.startEditing()
    for feature in layer.getFeatures():
        value, found = provider_nlcd.sample(QgsPointXY(feature.geometry().asPoint()), 1)
        assert found and 1 <= value <= 8
        assert layer.changeAttributeValue(feature.id(), reference_index, int(value))
    assert layer.commitChanges()

    html = tmp_path / "report" / "accuracy.html"
    results, ok, log, _ = run("landcover:assess_accuracy", {
        "CLASSIFIED": str(classified), "REFERENCE_VECTOR": layer, "CLASS_FIELD": "reference_class",
        "OUTPUT_HTML": str(html), "OUTPUT_TABLE": str(tmp_path / "report" / "accuracy.csv")})
    assert ok, log
    report = json.loads(Path(results["OUTPUT_JSON"]).read_text(encoding="utf-8"))
    estimates = report["area_estimates"]
    assert [e["name"] for e in estimates] == [c["name"] for c in classes]
    estimated = np.array([e["estimated_area_ha"] for e in estimates])
    ci = np.array([e["area_ci95_ha"] for e in estimates])
    # 95 % intervals: most hold the truth (here Developed's does not: none of the 50 points mapped as
    # Barren fell on the 2.8 % of that stratum that is Developed, so its omission went unseen).
    assert (np.abs(estimated - truth_ha) < ci).sum() >= 6, (estimated, ci, truth_ha)
    mapped = np.array([e["mapped_area_ha"] for e in estimates])
    assert np.abs(estimated - truth_ha).sum() < 0.5 * np.abs(mapped - truth_ha).sum()  # the sample corrects the map
    assert abs(results["OA_ESTIMATE"] - 0.85) < 1.53 * results["OA_CI95"]
    assert "Estimated overall accuracy from the sample" in log
    assert report["sample_map_class_differs"] == {"points_checked": 400, "points_differ": 0}  # drawn from this map
    assert "estimated area (ha) ± 95 % CI" in html.read_text(encoding="utf-8")
    context.project().removeAllMapLayers()


def test_no_size_and_no_target_takes_the_default_target_standard_error(provider, tmp_path, zion):
    """As documented (and as headless qgis_process calls it, without either): a target standard error of 0.01."""
    from landcover_plugin.core.sample.design import sample_size

    with rasterio.open(zion[0]) as src:
        pixels = np.bincount(src.read(1).ravel(), minlength=9)[1:]
    for parameters in ({}, {"TARGET_SE": None}):
        path = tmp_path / f"s{len(parameters)}.gpkg"
        results, ok, log, _ = run("landcover:create_reference_sample", {
            "INPUT": str(zion[0]), "SEED": 1, "OUTPUT": str(path), **parameters})
        assert ok, log
        expected = sample_size(pixels, np.full(8, 0.8), 0.01, population=float(pixels.sum()))
        assert results["SAMPLE_SIZE"] == expected and 1500 < expected <= 1600  # (0.4 / 0.01)^2 = 1600, N finite
        assert "standard error of overall accuracy of 0.01" in log


def test_engine_call_a_given_size_wins_over_the_target(provider, tmp_path, zion):
    algorithm = provider.algorithm("create_reference_sample").create()
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    argv = algorithm.engine_command({"INPUT": str(zion[0]), "SIZE": 120, "TARGET_SE": 0.01, "ALLOCATION": 2,
                                     "MIN_DISTANCE": 60, "OUTPUT": str(tmp_path / "s")}, context, feedback)
    assert argv[0] == "create-sample" and not any(a.startswith(("--target-se", "--seed")) for a in argv)
    assert "--size=120" in argv and "--allocation=equal" in argv and "--min-distance=60.0" in argv
    assert f"--output={tmp_path / 's.gpkg'}" in argv


def test_a_sample_drawn_from_another_map_is_flagged(provider, tmp_path, zion, shared_data):
    classified, nlcd, classes, _ = zion
    path = tmp_path / "nlcd_sample.gpkg"
    results, ok, log, context = run("landcover:create_reference_sample", {
        "INPUT": str(nlcd), "SIZE": 80, "SEED": 3, "CLASSES": str(shared_data / "zion" / "classes.json"),
        "OUTPUT": str(path)})
    assert ok, log
    layer = QgsVectorLayer(f"{path}|layername=reference_sample", "sample", "ogr")
    index = layer.fields().indexOf("reference_class")
    assert layer.startEditing()
    for feature in layer.getFeatures():  # labelled with the class it was drawn from (NLCD's)
        layer.changeAttributeValue(feature.id(), index, feature["map_class"])
    assert layer.commitChanges()
    # Assessed against the changed map: about 15 % of the points now sit on another map class.
    results, ok, log, _ = run("landcover:assess_accuracy", {
        "CLASSIFIED": str(classified), "REFERENCE_VECTOR": layer, "CLASS_FIELD": "reference_class",
        "OUTPUT_HTML": str(tmp_path / "r.html"), "OUTPUT_TABLE": str(tmp_path / "r.csv")})
    assert ok, log
    report = json.loads(Path(results["OUTPUT_JSON"]).read_text(encoding="utf-8"))
    mismatch = report["sample_map_class_differs"]
    assert mismatch["points_checked"] == 80 and 3 <= mismatch["points_differ"] <= 25
    raw = report["summary"]["overall_accuracy"]  # the JSON's summary counts points (DESIGN.md)
    assert mismatch["points_differ"] == round((1 - raw) * 80)  # the points the map gets wrong
    assert "drawn from another map" in log and "drawn from another map" in report["area_estimate_note"]
    context.project().removeAllMapLayers()
