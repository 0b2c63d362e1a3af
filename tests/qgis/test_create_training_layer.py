""""Create training areas layer" in a real headless QGIS: the GeoPackage, its drop-down, its style,
and the class schema travelling with it."""
import json
import sqlite3

import processing
from qgis.core import (
    QgsApplication,
    QgsCategorizedSymbolRenderer,
    QgsFeature,
    QgsFillSymbol,
    QgsGeometry,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from landcover_plugin.core.schema import ClassSchema
from landcover_plugin.qgis_glue.training_layer import schema_for_layer, schema_table_of


def run_create(parameters):
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:create_training_layer")
    assert algorithm is not None
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    context.setProject(QgsProject.instance())
    results, ok = algorithm.run(parameters, context, feedback)
    return results, ok, feedback.textLog(), context


def assert_styled_like(layer, schema, field):
    """Drop-down of names -> ids on the field; categorised renderer in the class colours and names."""
    setup = layer.editorWidgetSetup(layer.fields().indexOf(field))
    assert setup.type() == "ValueMap"
    pairs = [(name, int(value)) for item in setup.config()["map"] for name, value in item.items()]
    assert pairs == [(c.name, c.id) for c in schema]
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == field
    got = [(int(c.value()), c.label(), c.symbol().color().name()) for c in renderer.categories()]
    assert got == [(c.id, c.name, c.colour) for c in schema]


def test_layer_from_a_class_table(provider, tmp_path):
    path = tmp_path / "areas.gpkg"
    table = [1, "water", "", 2, "forest", "#00aa00", 5, "urban area", ""]
    results, ok, log, context = run_create({"OUTPUT": str(path), "CRS": "EPSG:32622", "CLASSES": table,
                                            "CLASS_FIELD": "class_id", "LAYER_NAME": "areas"})
    assert ok, log
    schema = ClassSchema.from_json(results["CLASS_SCHEMA"])
    # given colours kept; empty ones get the schema's sensible defaults (water blue, urban red)
    assert [(c.id, c.name) for c in schema] == [(1, "water"), (2, "forest"), (5, "urban area")]
    assert schema.by_id(2).colour == "#00aa00"
    assert schema.by_id(1).colour == "#1f78b4" and schema.by_id(5).colour == "#d73027"

    # a fresh load of the file (no help from the algorithm) has the drop-down and the style
    layer = QgsVectorLayer(f"{path}|layername=areas", "areas", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32622"
    assert layer.geometryType() == 2 and layer.fields().names()[-1] == "class_id"  # polygons
    assert_styled_like(layer, schema, "class_id")
    assert schema_for_layer(layer) == schema
    # the schema table, read with sqlite3 (independently of QGIS)
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT id, name, colour FROM landcover_classes ORDER BY id").fetchall()
    assert rows == [(c.id, c.name, c.colour) for c in schema]
    assert schema_table_of(str(path)) == schema

    # it is loaded into the project on completion, styled
    assert str(path) in next(iter(context.layersToLoadOnCompletion())).split("|")[0]
    context.project().removeAllMapLayers()


def test_added_to_the_project_ready_to_digitise(provider, tmp_path):
    path = tmp_path / "loaded.gpkg"
    results = processing.runAndLoadResults("landcover:create_training_layer",
                                           {"OUTPUT": str(path), "CRS": "EPSG:32612"})
    layers = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source().startswith(str(path))]
    assert len(layers) == 1
    layer = layers[0]
    schema = ClassSchema.from_json(results["CLASS_SCHEMA"])
    assert schema.names == ["water", "forest", "grassland", "cropland", "built-up", "bare soil"]
    assert_styled_like(layer, schema, "class_id")
    assert layer.startEditing()  # digitise a polygon with a class from the drop-down
    feature = QgsFeature(layer.fields())
    feature.setGeometry(QgsGeometry.fromWkt("POLYGON((320000 4130000, 320300 4130000, 320300 4130300, "
                                            "320000 4130000))"))
    feature["class_id"] = schema.by_id(2).id
    assert layer.addFeature(feature) and layer.commitChanges()
    assert QgsVectorLayer(f"{path}|layername=training_areas", "t", "ogr").featureCount() == 1
    QgsProject.instance().removeAllMapLayers()


def test_classes_from_a_classified_raster_and_a_styled_layer(provider, tmp_path, shared_data):
    # the Zion NLCD map: no palette in QGIS, but a classes.json beside it
    nlcd = QgsRasterLayer(str(shared_data / "zion/nlcd2011_8class.tif"), "nlcd")
    results, ok, log, _ = run_create({"OUTPUT": str(tmp_path / "nlcd.gpkg"), "CRS": "EPSG:32612",
                                      "CLASSES_FROM_LAYER": nlcd})
    assert ok, log
    sidecar = json.loads((shared_data / "zion/classes.json").read_text())["classes"]
    assert json.loads(results["CLASS_SCHEMA"]) == [{"id": c["id"], "name": c["name"], "colour": c["color"]}
                                                   for c in sidecar]

    # a paletted style with labels wins
    classes = [QgsPalettedRasterRenderer.Class(3, QColor("#abcdef"), "rock"),
               QgsPalettedRasterRenderer.Class(4, QColor("#123456"), "pine")]
    nlcd.setRenderer(QgsPalettedRasterRenderer(nlcd.dataProvider(), 1, classes))
    assert [(c.id, c.name, c.colour) for c in schema_for_layer(nlcd)] == [(3, "rock", "#abcdef"),
                                                                         (4, "pine", "#123456")]

    # a vector layer with a categorised style on a text field: names in style order, their colours
    polygons = QgsVectorLayer(str(shared_data / "rstoolbox/training_polygons.gpkg"), "polygons", "ogr")
    categories = [QgsRendererCategory(value, QgsFillSymbol.createSimple({"color": colour}), value)
                  for value, colour in (("water", "#0000ff"), ("forest", "#00ff00"))]
    polygons.setRenderer(QgsCategorizedSymbolRenderer("class", categories))
    results, ok, log, _ = run_create({"OUTPUT": str(tmp_path / "styled.gpkg"), "CRS": "EPSG:32622",
                                      "CLASSES_FROM_LAYER": polygons})
    assert ok, log
    assert json.loads(results["CLASS_SCHEMA"]) == [{"id": 1, "name": "water", "colour": "#0000ff"},
                                                   {"id": 2, "name": "forest", "colour": "#00ff00"}]


def test_bad_parameters_are_refused_and_existing_file_kept(provider, tmp_path, shared_data):
    existing = tmp_path / "mine.gpkg"
    existing.write_bytes(b"my digitised polygons")
    _, ok, log, _ = run_create({"OUTPUT": str(existing), "CRS": "EPSG:32622"})
    assert not ok and "already exists" in log and existing.read_bytes() == b"my digitised polygons"

    _, ok, log, _ = run_create({"OUTPUT": str(tmp_path / "a.gpkg"), "CRS": "EPSG:32622",
                                "CLASSES": [1, "water", "", 1, "forest", ""]})
    assert not ok and "appears twice" in log and not (tmp_path / "a.gpkg").exists()

    _, ok, log, _ = run_create({"OUTPUT": str(tmp_path / "b.gpkg"), "CRS": "EPSG:32622",
                                "CLASSES": [300, "water", "not a colour"]})
    assert not ok and "1..254" in log and not (tmp_path / "b.gpkg").exists()

    image = QgsRasterLayer(str(shared_data / "rstoolbox/landsat5_1988_7band.tif"), "image")
    _, ok, log, _ = run_create({"OUTPUT": str(tmp_path / "c.gpkg"), "CRS": "EPSG:32622",
                                "CLASSES_FROM_LAYER": image})
    assert not ok and "carries no classes" in log and not (tmp_path / "c.gpkg").exists()


def test_classes_from_a_classified_raster_without_its_style_are_only_the_declared_ones(provider, tmp_path):
    """QGIS styles a colour table of 256 entries when no .qml is beside the raster: no phantom classes."""
    import numpy as np  # noqa: PLC0415

    from landcover_plugin.core.classified_raster import ClassifiedRasterWriter  # noqa: PLC0415

    classes = [{"id": 1, "name": "water", "colour": "#0000ff"}, {"id": 2, "name": "forest", "colour": "#00ff00"},
               {"id": 5, "name": "rock", "colour": "#888888"}]
    path = tmp_path / "map.tif"
    with ClassifiedRasterWriter(str(path), width=40, height=30, crs_wkt="", geotransform=(0, 1, 0, 0, 0, -1),
                                classes=classes) as writer:
        writer.write_rows(np.tile(np.array([1, 2], np.uint8), (30, 20)))
        writer.finish()
    (tmp_path / "map.qml").unlink()
    raster = QgsRasterLayer(str(path), "map")
    assert len(raster.renderer().classes()) > 200  # what QGIS makes of the colour table
    results, ok, log, _ = run_create({"OUTPUT": str(tmp_path / "from_map.gpkg"), "CRS": "EPSG:32612",
                                      "CLASSES_FROM_LAYER": raster})
    assert ok, log
    assert json.loads(results["CLASS_SCHEMA"]) == classes


def test_a_reserved_class_field_name_is_refused(provider, tmp_path):
    for name in ("fid", "FID", "geom"):
        _, ok, log, _ = run_create({"OUTPUT": str(tmp_path / f"{name}.gpkg"), "CRS": "EPSG:32622",
                                    "CLASS_FIELD": name})
        assert not ok and f"'{name}' cannot be the class field" in log
        assert not (tmp_path / f"{name}.gpkg").exists()


def test_a_missing_output_folder_is_created(provider, tmp_path):
    target = tmp_path / "new" / "folder" / "areas.gpkg"
    results, ok, log, _ = run_create({"OUTPUT": str(target), "CRS": "EPSG:32622"})
    assert ok, log
    assert target.is_file() and "Choose a folder you can write to" not in log


def test_a_relative_output_comes_back_absolute(provider, tmp_path, monkeypatch):
    """A relative OUTPUT (qgis_process in a data folder) came back relative: a wrong layer source from another
    folder."""
    monkeypatch.chdir(tmp_path)
    results, ok, log, _ = run_create({"OUTPUT": "areas.gpkg", "CRS": "EPSG:32622"})
    assert ok, log
    assert results["OUTPUT"] == f"{tmp_path / 'areas.gpkg'}|layername=training_areas"
