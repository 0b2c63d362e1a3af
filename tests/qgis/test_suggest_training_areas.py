""""Suggest training areas" in a real headless QGIS: from classify's uncertainty raster to squares ready to
label, in the training-areas schema, and from a model and a raster directly."""
import re

import processing
from algorithm_runs import run_algorithm
from classify_models import card_for, export, tiny_net, untrained_model
from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsFeatureRequest,
    QgsGeometry,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRenderContext,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant

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


RSTOOLBOX_CLASSES = ["cleared", "fallen_dry", "forest", "water"]  # its text field 'class', sorted


def _symbols(layer, values) -> list:
    """What the layer's style draws for a square whose class field holds each of ``values``: a category's label."""
    renderer, context = layer.renderer(), QgsRenderContext()
    dumps = {c.symbol().dump(): c.label() for c in renderer.categories()}
    field = layer.fields().indexOf(renderer.classAttribute())
    renderer.startRender(context, layer.fields())
    try:
        drawn = []
        for value in values:
            feature = QgsFeature(layer.fields())
            feature.setAttribute(field, value)
            drawn.append(dumps.get(renderer.symbolForFeature(feature, context).dump()))
        return drawn
    finally:
        renderer.stopRender(context)


def test_squares_for_a_text_class_training_layer_paste_with_their_names(provider, shared_data, tmp_path):
    """The training areas layer the squares will be pasted into (rstoolbox's polygons, text field 'class') gives
    the suggestions their class field: named 'class', a text field whose drop-down writes the class names, styled
    by name, empty squares (NULL or '') drawn 'to label'. Squares had an integer 'class_id' that pasted as no class."""
    QgsProject.instance().removeAllMapLayers()
    image = str(shared_data / "rstoolbox" / "landsat5_1988_7band.tif")
    training = QgsVectorLayer(str(shared_data / "rstoolbox" / "training_polygons.gpkg"), "training", "ogr")
    assert training.isValid()
    model = untrained_model(image, tmp_path / "m.onnx", RSTOOLBOX_CLASSES, tile=32, input_dtype="uint8")
    classified = processing.run("landcover:classify_raster", {
        "INPUT": image, "MODEL": model, "UNCERTAINTY": str(tmp_path / "u.tif"), "OUTPUT": str(tmp_path / "c.tif")})
    output = tmp_path / "suggested.gpkg"
    results = processing.runAndLoadResults("landcover:suggest_training_areas", {
        "UNCERTAINTY": classified["UNCERTAINTY"], "CLASSIFIED": classified["OUTPUT"], "COUNT": 6,
        "TRAINING_AREAS": training, "TRAINING_CLASS_FIELD": "class", "OUTPUT": str(output)})
    assert results["SUGGESTED"] == 6
    for layer in (QgsVectorLayer(f"{output}|layername=suggested_areas", "suggested", "ogr"),  # a fresh load
                  QgsProject.instance().mapLayersByName("suggested_areas")[0]):  # as the run loaded it
        fields = layer.fields()
        assert "class_id" not in fields.names() and fields.at(fields.indexOf("class")).type() == QVariant.String
        setup = layer.editorWidgetSetup(fields.indexOf("class"))
        assert setup.type() == "ValueMap"
        assert setup.config()["map"] == [{name: name} for name in RSTOOLBOX_CLASSES]  # name -> name
        assert layer.renderer().classAttribute() == "class"
        assert _symbols(layer, ["forest", "water", "", None]) == ["forest", "water", "to label", "to label"]
    QgsProject.instance().removeAllMapLayers()

    # no classified raster, so no classes from the model: the drop-down offers the training layer's names
    results = processing.run("landcover:suggest_training_areas", {
        "UNCERTAINTY": classified["UNCERTAINTY"], "COUNT": 4, "TRAINING_AREAS": training,
        "TRAINING_CLASS_FIELD": "class", "OUTPUT": str(tmp_path / "from_layer.gpkg")})
    layer = QgsVectorLayer(results["OUTPUT_LAYER"], "suggested", "ogr")
    setup = layer.editorWidgetSetup(layer.fields().indexOf("class"))
    assert setup.type() == "ValueMap" and setup.config()["map"] == [{name: name} for name in RSTOOLBOX_CLASSES]

    # an integer class field: ids in a field of that name; the advanced choice alone: names in 'class_id'
    ids = QgsVectorLayer("Polygon?crs=EPSG:32622&field=klasse:integer&field=area:double", "ids", "memory")
    results = processing.run("landcover:suggest_training_areas", {
        "UNCERTAINTY": classified["UNCERTAINTY"], "COUNT": 4, "TRAINING_AREAS": ids, "TRAINING_CLASS_FIELD": "klasse",
        "CLASS_VALUES": 1, "OUTPUT": str(tmp_path / "ids.gpkg")})  # the layer's field wins over the choice
    fields = QgsVectorLayer(results["OUTPUT_LAYER"], "ids", "ogr").fields()
    assert fields.at(fields.indexOf("klasse")).type() == QVariant.Int and "class_id" not in fields.names()
    results = processing.run("landcover:suggest_training_areas", {
        "UNCERTAINTY": classified["UNCERTAINTY"], "COUNT": 4, "CLASS_VALUES": 1, "OUTPUT": str(tmp_path / "n.gpkg")})
    fields = QgsVectorLayer(results["OUTPUT_LAYER"], "names", "ogr").fields()
    assert fields.at(fields.indexOf("class_id")).type() == QVariant.String


def test_the_drop_down_spells_the_classes_as_the_training_layer_does(provider, shared_data, tmp_path):
    """A model naming its classes 'Forest', 'Water', ... for a training layer spelling them 'forest', 'water': the
    squares' drop-down writes the layer's spelling (else pasted squares would make a second class, 'Forest'), and
    the log says so. A layer spelling one class two ways offers it once, as most of its polygons spell it."""
    image = str(shared_data / "rstoolbox" / "landsat5_1988_7band.tif")
    training = QgsVectorLayer(str(shared_data / "rstoolbox" / "training_polygons.gpkg"), "training", "ogr")
    model = untrained_model(image, tmp_path / "m.onnx", [n.capitalize() for n in RSTOOLBOX_CLASSES] + ["Urban"],
                            tile=32, input_dtype="uint8")
    classified = processing.run("landcover:classify_raster", {
        "INPUT": image, "MODEL": model, "UNCERTAINTY": str(tmp_path / "u.tif"), "OUTPUT": str(tmp_path / "c.tif")})
    results, ok, log = run_algorithm("landcover:suggest_training_areas", {
        "UNCERTAINTY": classified["UNCERTAINTY"], "CLASSIFIED": classified["OUTPUT"], "COUNT": 4,
        "TRAINING_AREAS": training, "TRAINING_CLASS_FIELD": "class", "OUTPUT": str(tmp_path / "s.gpkg")})
    assert ok, log
    layer = QgsVectorLayer(results["OUTPUT_LAYER"], "suggested", "ogr")
    setup = layer.editorWidgetSetup(layer.fields().indexOf("class"))
    assert setup.config()["map"] == [{name: name} for name in RSTOOLBOX_CLASSES + ["Urban"]]  # a new class as it is
    assert "writes 'Cleared' as 'cleared', 'Fallen_dry' as 'fallen_dry', 'Forest' as 'forest'" in log

    mixed = QgsVectorLayer(str(shared_data / "rstoolbox" / "training_polygons.gpkg"), "mixed", "ogr").materialize(
        QgsFeatureRequest())
    forests = [f.id() for f in mixed.getFeatures() if f["class"] == "forest"]
    assert len(forests) > 2 and mixed.startEditing()
    mixed.changeAttributeValue(forests[0], mixed.fields().indexOf("class"), "Forest")  # one pasted square, say
    assert mixed.commitChanges()
    results = processing.run("landcover:suggest_training_areas", {
        "UNCERTAINTY": classified["UNCERTAINTY"], "COUNT": 4, "TRAINING_AREAS": mixed,
        "TRAINING_CLASS_FIELD": "class", "OUTPUT": str(tmp_path / "mixed.gpkg")})
    layer = QgsVectorLayer(results["OUTPUT_LAYER"], "suggested", "ogr")
    setup = layer.editorWidgetSetup(layer.fields().indexOf("class"))
    assert setup.config()["map"] == [{name: name} for name in RSTOOLBOX_CLASSES]


def test_a_training_layer_choice_that_cannot_work_is_refused_before_the_run(provider, shared_data, tmp_path):
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:suggest_training_areas")
    context = QgsProcessingContext()
    training = QgsVectorLayer(str(shared_data / "rstoolbox" / "training_polygons.gpkg"), "training", "ogr")
    real = QgsVectorLayer("Polygon?crs=EPSG:32622&field=share:double", "shares", "memory")
    feature = QgsFeature(real.fields())
    feature.setAttributes([0.5])
    feature.setGeometry(QgsGeometry.fromWkt("POLYGON((0 0, 30 0, 30 30, 0 0))"))
    real.dataProvider().addFeatures([feature])
    base = {"UNCERTAINTY": str(shared_data / "rstoolbox" / "landsat5_1988_7band.tif"),
            "OUTPUT": str(tmp_path / "x.gpkg")}
    for extra, message in (({"TRAINING_CLASS_FIELD": "class"}, "'class' was given without its training areas layer"),
                           ({"TRAINING_AREAS": training}, "Choose the class field of 'training'"),
                           ({"TRAINING_AREAS": training, "TRAINING_CLASS_FIELD": "klasse"}, "has no field 'klasse'"),
                           ({"TRAINING_AREAS": real, "TRAINING_CLASS_FIELD": "share"},
                            "'share' of 'shares' holds double values: the class field must hold the class as text")):
        ok, text = algorithm.checkParameterValues({**base, **extra}, context)
        assert not ok and message in text, text
        _, ok, log = run_algorithm("landcover:suggest_training_areas", {**base, **extra})  # headless: the same
        assert not ok and message in log
    assert not (tmp_path / "x.gpkg").exists()
