""""Suggest training areas" in a real headless QGIS: from classify's uncertainty raster to squares ready to
label, in the training-areas schema, and from a model and a raster directly."""
import re

import processing
from classify_models import card_for, export, tiny_net
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsVectorLayer

from landcover_plugin.core.model.card import metadata_props
from landcover_plugin.qgis_glue.training_layer import schema_for_layer

NAMES = ["Water", "Forest", "Shrubland"]


def test_suggestions_from_the_uncertainty_raster_are_ready_to_label(provider, shared_data, tmp_path):
    QgsProject.instance().removeAllMapLayers()
    card = card_for(NAMES, mean=[9000, 8000, 7500, 15000], std=[1000, 1200, 1500, 2500], tile=64,
                    input_dtype="uint16", resolution=[30.0, 30.0], crs="EPSG:32612")
    model = export(tiny_net(4, 3), tmp_path / "zion.onnx", 4, 64, metadata_props(card))
    image = str(shared_data / "zion" / "landsat8_2015_b2345.tif")
    classified = processing.run("landcover:classify_raster", {
        "INPUT": image, "MODEL": model, "UNCERTAINTY": str(tmp_path / "u.tif"),
        "CONFIDENCE": str(tmp_path / "c.tif"), "OUTPUT": str(tmp_path / "classes.tif")})
    output = tmp_path / "suggested.gpkg"
    results = processing.runAndLoadResults("landcover:suggest_training_areas", {
        "UNCERTAINTY": classified["UNCERTAINTY"], "CLASSIFIED": classified["OUTPUT"],
        "CONFIDENCE": classified["CONFIDENCE"], "COUNT": 12, "OUTPUT": str(output)})
    assert results["SUGGESTED"] == 12 and results["OUTPUT"] == str(output)
    layer = QgsVectorLayer(f"{output}|layername=suggested_areas", "suggested", "ogr")  # a fresh load
    assert layer.isValid() and layer.featureCount() == 12 and layer.crs().authid() == "EPSG:32612"
    assert layer.editorWidgetSetup(layer.fields().indexOf("class_id")).type() == "ValueMap"
    assert [c.name for c in schema_for_layer(layer)] == NAMES
    labels = [c.label() for c in layer.renderer().categories()]
    assert labels == NAMES + ["to label"]
    features = list(layer.getFeatures())
    assert all(f["predicted_name"] in NAMES and 0 < f["probability"] <= 100 for f in features)
    assert [f["rank"] for f in features] == list(range(1, 13))
    assert len(QgsProject.instance().mapLayersByName("suggested_areas")) == 1
    QgsProject.instance().removeAllMapLayers()


def test_neither_uncertainty_nor_model_fails_with_a_clear_message(provider, tmp_path):
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:suggest_training_areas")
    feedback = QgsProcessingFeedback()
    _, ok = algorithm.run({"OUTPUT": str(tmp_path / "x.gpkg")}, QgsProcessingContext(), feedback)
    assert not ok and "uncertainty raster, or the raster and the model" in feedback.textLog()


def test_squares_labelled_in_qgis_are_never_overwritten_by_a_new_run(provider, shared_data, tmp_path):
    import numpy as np
    import rasterio

    with rasterio.open(shared_data / "zion" / "landsat8_2015_b2345.tif") as src:  # a stand-in uncertainty, 0..100 %
        band, profile = src.read(1).astype(np.float64), src.profile
    profile.update(count=1, dtype="uint8", nodata=255)
    uncertainty = tmp_path / "u.tif"
    with rasterio.open(uncertainty, "w", **profile) as dst:
        dst.write((100 * (band - band.min()) / np.ptp(band)).astype(np.uint8), 1)
    output = tmp_path / "suggested.gpkg"
    parameters = {"UNCERTAINTY": str(uncertainty), "COUNT": 5, "OUTPUT": str(output)}
    assert processing.run("landcover:suggest_training_areas", parameters)["SUGGESTED"] == 5
    feedback = QgsProcessingFeedback()
    assert processing.run("landcover:suggest_training_areas", parameters,  # untouched: replaced
                          feedback=feedback)["SUGGESTED"] == 5
    assert re.search(r"5 places suggested, at least [\d,]+ m apart", feedback.textLog())  # in the CRS's unit
    layer = QgsVectorLayer(f"{output}|layername=suggested_areas", "suggested", "ogr")
    assert layer.startEditing()
    first = next(layer.getFeatures())
    assert layer.changeAttributeValue(first.id(), layer.fields().indexOf("class_id"), 2) and layer.commitChanges()
    del layer
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:suggest_training_areas")
    feedback = QgsProcessingFeedback()
    _, ok = algorithm.run({**parameters, "COUNT": 9}, QgsProcessingContext(), feedback)
    log = feedback.textLog()
    assert not ok and "1 of its squares already have a class" in log and "Choose another file name" in log
    assert "--overwrite" not in log
    layer = QgsVectorLayer(f"{output}|layername=suggested_areas", "suggested", "ogr")
    assert layer.featureCount() == 5 and [f["class_id"] for f in layer.getFeatures()].count(2) == 1
