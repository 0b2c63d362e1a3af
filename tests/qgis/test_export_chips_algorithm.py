""""Export label chips" in a real headless QGIS on the real data: polygon layers in any CRS and with a
selection, a classified raster, the training layer made by "Create training areas layer", bad input."""
import json

import numpy as np
import rasterio
from algorithm_runs import checked_run
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsGeometry,
    QgsProcessingContext,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from rasterio.windows import Window

gdal.UseExceptions()


def run(name, parameters):
    return checked_run(f"landcover:{name}", parameters)


def label_pixels(dataset_folder):
    """Labelled pixels per label value in the label chips, read from the chips themselves and laid on the source
    grid: each source pixel once, however many (overlapping) chips hold it."""
    dataset = json.loads((dataset_folder / "dataset.json").read_text())
    ends = [(c["window"]["row_off"] + c["window"]["height"], c["window"]["col_off"] + c["window"]["width"])
            for c in dataset["chips"]]
    canvas = np.zeros((max(r for r, _ in ends), max(c for _, c in ends)), dtype=np.uint8)
    for chip in dataset["chips"]:
        w = chip["window"]
        part = canvas[w["row_off"]:w["row_off"] + w["height"], w["col_off"]:w["col_off"] + w["width"]]
        with rasterio.open(dataset_folder / chip["label"]) as src:
            label = src.read(1)
        part[label > 0] = label[label > 0]
    return np.bincount(canvas.ravel(), minlength=256)


def test_park_polygons_in_another_crs(provider, shared_data, tmp_path):
    image = QgsRasterLayer(str(shared_data / "zion/landsat8_2015_b2345.tif"), "zion")
    park = QgsVectorLayer(str(shared_data / "zion/park_boundary.gpkg"), "park", "ogr")
    assert park.crs() != image.crs()
    results, ok, log = run("export_label_chips", {"INPUT": image, "LABELS": park, "CLASS_FIELD": "UNIT_CODE",
                                                  "CHIP_SIZE": 256, "OUTPUT": str(tmp_path / "park")})
    assert ok, log
    dataset = json.loads((tmp_path / "park" / "dataset.json").read_text())
    assert results["OUTPUT"] == str(tmp_path / "park") and results["DATASET"].endswith("dataset.json")
    assert results["CHIPS"] == len(dataset["chips"]) == results["TRAIN_CHIPS"] + results["VAL_CHIPS"]
    assert results["VAL_CHIPS"] > 0 and "chips" in log  # the summary is in the log
    assert json.loads(results["CLASS_PIXELS"]) == {"ZION": int(label_pixels(tmp_path / "park")[1])}
    # the engine read a temporary copy in the raster's CRS; dataset.json names the analyst's layer
    assert dataset["source"]["labels"].split("|")[0] == str(shared_data / "zion/park_boundary.gpkg")
    # labels are where GDAL burns the park (reprojecting it itself) on the image grid
    with rasterio.open(shared_data / "zion/landsat8_2015_b2345.tif") as src:
        memory = gdal.GetDriverByName("MEM").Create("", src.width, src.height, 1, gdal.GDT_Byte)
        memory.SetGeoTransform(src.transform.to_gdal())
        memory.SetProjection(src.crs.to_wkt())
    gdal.Rasterize(memory, str(shared_data / "zion/park_boundary.gpkg"), burnValues=[1])
    reference = memory.GetRasterBand(1).ReadAsArray()
    for chip in dataset["chips"]:
        w = chip["window"]
        with rasterio.open(tmp_path / "park" / chip["label"]) as label:
            np.testing.assert_array_equal(label.read(1), reference[w["row_off"]:w["row_off"] + 256,
                                                                   w["col_off"]:w["col_off"] + 256])


def test_selected_polygons_only_and_a_chip_against_the_source(provider, shared_data, tmp_path):
    raster_path = shared_data / "rstoolbox/landsat5_1988_7band.tif"
    image = QgsRasterLayer(str(raster_path), "landsat")
    polygons = QgsVectorLayer(str(shared_data / "rstoolbox/training_polygons.gpkg"), "polygons", "ogr")
    polygons.selectByExpression("\"class\" IN ('water', 'forest')")
    assert 0 < polygons.selectedFeatureCount() < polygons.featureCount()
    results, ok, log = run("export_label_chips", {
        "INPUT": image, "LABELS": polygons, "SELECTED_ONLY": True, "CLASS_FIELD": "class", "CHIP_SIZE": 64,
        "STRIDE": 48, "MIN_LABELLED": 0.01, "VAL_FRACTION": 0.25, "OUTPUT": str(tmp_path / "sel")})
    assert ok, log
    dataset = json.loads((tmp_path / "sel" / "dataset.json").read_text())
    assert [c["name"] for c in dataset["classes"]] == ["forest", "water"]  # only the selected classes
    assert dataset["stride"] == 48 and dataset["bands"]["count"] == 7
    chip = dataset["chips"][0]
    w = chip["window"]
    with rasterio.open(raster_path) as src, rasterio.open(tmp_path / "sel" / chip["image"]) as out:
        np.testing.assert_array_equal(out.read(), src.read(window=Window(w["col_off"], w["row_off"], 64, 64)))
        assert out.transform == src.window_transform(Window(w["col_off"], w["row_off"], 64, 64))


def test_classified_raster_labels(provider, shared_data, tmp_path):
    image = QgsRasterLayer(str(shared_data / "zion/landsat8_2015_b2345.tif"), "zion")
    nlcd = QgsRasterLayer(str(shared_data / "zion/nlcd2011_8class.tif"), "nlcd")
    results, ok, log = run("export_label_chips", {"INPUT": image, "LABELS_RASTER": nlcd, "CHIP_SIZE": 128,
                                                  "OUTPUT": str(tmp_path / "nlcd")})
    assert ok, log
    dataset = json.loads((tmp_path / "nlcd" / "dataset.json").read_text())
    sidecar = json.loads((shared_data / "zion/classes.json").read_text())["classes"]
    assert [(c["id"], c["name"], c["colour"]) for c in dataset["classes"]] == [
        (c["id"], c["name"], c["color"]) for c in sidecar]
    counts = label_pixels(tmp_path / "nlcd")
    assert json.loads(results["CLASS_PIXELS"]) == {c["name"]: int(counts[c["id"]]) for c in sidecar}
    assert set(results["RARE_CLASSES"].split(", ")) <= {c["name"] for c in sidecar}


def test_training_layer_schema_reaches_the_dataset(provider, shared_data, tmp_path):
    """Create a training layer, digitise two polygons (ids), export: names and colours come along."""
    results, ok, log = run("create_training_layer", {
        "OUTPUT": str(tmp_path / "areas.gpkg"), "CRS": "EPSG:32622",
        "CLASSES": [3, "forest", "#115511", 9, "river", "#2255ff"]})
    assert ok, log
    layer = QgsVectorLayer(results["OUTPUT"], "areas", "ogr")
    assert layer.startEditing()
    origin_x, origin_y = 619395, -410205  # the raster's top-left corner; 30 m pixels
    squares = {3: (26, 20), 9: (160, 150)}  # class id: (row, col) of a 50 x 50 pixel square on the grid
    for class_id, (row, col) in squares.items():
        x0, y0 = origin_x + 30 * col, origin_y - 30 * row
        wkt = f"POLYGON(({x0} {y0}, {x0 + 1500} {y0}, {x0 + 1500} {y0 - 1500}, {x0} {y0 - 1500}, {x0} {y0}))"
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromWkt(wkt))
        feature["class_id"] = class_id
        assert layer.addFeature(feature)
    assert layer.commitChanges()
    fresh = QgsVectorLayer(results["OUTPUT"], "areas", "ogr")  # no custom properties: the table/style carry it
    image = QgsRasterLayer(str(shared_data / "rstoolbox/landsat5_1988_7band.tif"), "landsat")
    results, ok, log = run("export_label_chips", {"INPUT": image, "LABELS": fresh, "CLASS_FIELD": "class_id",
                                                  "CHIP_SIZE": 64, "VAL_FRACTION": 0.0, "MIN_LABELLED": 0.0,
                                                  "OUTPUT": str(tmp_path / "chips")})
    assert ok, log
    dataset = json.loads((tmp_path / "chips" / "dataset.json").read_text())
    assert dataset["classes"] == [{"id": 3, "name": "forest", "colour": "#115511"},
                                  {"id": 9, "name": "river", "colour": "#2255ff"}]
    mosaic = np.zeros((310, 287), dtype=np.uint8)  # the label chips put back in place
    for chip in dataset["chips"]:
        w = chip["window"]
        with rasterio.open(tmp_path / "chips" / chip["label"]) as label:
            mosaic[w["row_off"]:w["row_off"] + 64, w["col_off"]:w["col_off"] + 64] = label.read(1)
    for class_id, (row, col) in squares.items():
        assert (mosaic == class_id).sum() == 50 * 50
        assert (mosaic[row:row + 50, col:col + 50] == class_id).all()
    assert results["VAL_CHIPS"] == 0


def test_numeric_class_ids_keep_the_names_of_the_layers_name_field(provider, shared_data, tmp_path):
    """The Zion polygons' ``class_id`` with its ``class`` names beside it: the copy handed to the engine keeps
    the text fields, so the dataset (and the legend, the advice in the log) names the classes."""
    polygons = QgsVectorLayer(str(shared_data / "zion/training_polygons_sparse.gpkg"), "sparse", "ogr")
    names = {int(f["class_id"]): f["class"] for f in polygons.getFeatures()}
    image = QgsRasterLayer(str(shared_data / "zion/landsat8_2015_b2345.tif"), "zion")
    results, ok, log = run("export_label_chips", {"INPUT": image, "LABELS": polygons, "CLASS_FIELD": "class_id",
                                                  "CHIP_SIZE": 64, "STRIDE": 32, "OUTPUT": str(tmp_path / "c")})
    assert ok, log
    dataset = json.loads((tmp_path / "c" / "dataset.json").read_text())
    assert {c["id"]: c["name"] for c in dataset["classes"]} == names
    assert set(json.loads(results["CLASS_PIXELS"])) == set(names.values())
    assert "named by the field 'class'" in log


def test_bad_input_gives_a_clear_message_and_no_output(provider, shared_data, tmp_path):
    zion = QgsRasterLayer(str(shared_data / "zion/landsat8_2015_b2345.tif"), "zion")
    polygons = QgsVectorLayer(str(shared_data / "rstoolbox/training_polygons.gpkg"), "polygons", "ogr")
    _, ok, log = run("export_label_chips", {"INPUT": zion, "LABELS": polygons, "CLASS_FIELD": "class",
                                            "OUTPUT": str(tmp_path / "out")})
    assert not ok and "None of the 36 label polygons overlaps the raster" in log
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    nlcd = QgsRasterLayer(str(shared_data / "zion/nlcd2011_8class.tif"), "nlcd")
    _, ok, message = run("export_label_chips", {"INPUT": zion, "LABELS": polygons, "CLASS_FIELD": "class",
                                                "LABELS_RASTER": nlcd, "OUTPUT": str(tmp_path / "out")})
    assert not ok and "one of the two" in message


def test_a_class_field_the_layer_lacks_or_its_feature_id_names_the_usable_fields(provider, shared_data, tmp_path):
    """The probe: CLASS_FIELD=klass listed 'fid, class'; CLASS_FIELD=fid then failed in the engine on the temporary
    copy ("layer 'labels' has no field 'fid'"). The feature id is not offered, and is refused as such, naming the
    analyst's layer."""
    image = QgsRasterLayer(str(shared_data / "rstoolbox/landsat5_1988_7band.tif"), "landsat")
    polygons = QgsVectorLayer(str(shared_data / "rstoolbox/training_polygons.gpkg"), "my polygons", "ogr")
    assert "fid" in polygons.fields().names()  # QGIS shows a GeoPackage's feature id as a field
    _, ok, log = run("export_label_chips", {"INPUT": image, "LABELS": polygons, "CLASS_FIELD": "klass",
                                            "OUTPUT": str(tmp_path / "a")})
    assert not ok and "The layer 'my polygons' has no field 'klass'. Its fields are: class." in log
    _, ok, log = run("export_label_chips", {"INPUT": image, "LABELS": polygons, "CLASS_FIELD": "fid",
                                            "OUTPUT": str(tmp_path / "b")})
    assert not ok and "'fid' is the feature id of 'my polygons' (one number per feature), not a class" in log
    assert "Its fields are: class." in log and "'labels'" not in log
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_polygons_without_a_crs_are_refused_naming_it(provider, shared_data, tmp_path):
    """Polygons in a GeoPackage written without a CRS (it reads as "Undefined geographic SRS"): said as such (it
    read "do not transform to valid coordinates" with an empty CRS in brackets), before anything is written."""
    from osgeo import ogr
    image = QgsRasterLayer(str(shared_data / "zion/landsat8_2015_b2345.tif"), "zion")
    source = ogr.Open(str(shared_data / "zion/training_polygons_sparse.gpkg"))
    path = tmp_path / "nocrs.gpkg"
    target = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    out = target.CreateLayer("nocrs", None, ogr.wkbPolygon)  # no spatial reference
    out.CreateField(ogr.FieldDefn("class_id", ogr.OFTInteger))
    for feature in source.GetLayer(0):
        copy = ogr.Feature(out.GetLayerDefn())
        copy.SetGeometry(feature.GetGeometryRef().Clone())
        copy.SetField("class_id", feature.GetField("class_id"))
        out.CreateFeature(copy)
    target = source = None
    layer = QgsVectorLayer(str(path), "nocrs", "ogr")
    assert layer.isValid() and layer.crs().authid() == ""
    results, ok, log = run("export_label_chips", {"INPUT": image, "LABELS": layer, "CLASS_FIELD": "class_id",
                                                  "CHIP_SIZE": 64, "OUTPUT": str(tmp_path / "chips")})
    assert not ok and "'nocrs' has no coordinate reference system" in log
    assert "Assigned Coordinate Reference System" in log
    assert not (tmp_path / "chips").exists()


def test_a_stride_over_the_chip_size_is_refused_before_the_run(provider, shared_data, tmp_path):
    """The dialog took a stride up to 4096 px whatever the chip size; the engine then refused it after the run
    had started. Now the dialog refuses it, with both numbers, and a stride equal to the chip size still runs."""
    image = QgsRasterLayer(str(shared_data / "zion/landsat8_2015_b2345.tif"), "zion")
    nlcd = QgsRasterLayer(str(shared_data / "zion/nlcd2011_8class.tif"), "nlcd")
    parameters = {"INPUT": image, "LABELS_RASTER": nlcd, "CHIP_SIZE": 64, "STRIDE": 65,
                  "OUTPUT": str(tmp_path / "chips")}
    _, ok, message = run("export_label_chips", parameters)
    assert not ok and "65 px" in message and "64 px" in message and not (tmp_path / "chips").exists()
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:export_label_chips")
    ok, message = algorithm.checkParameterValues(dict(parameters, STRIDE=64), QgsProcessingContext())
    assert ok, message


def test_a_class_list_to_keep_that_cannot_be_read_is_refused_before_the_run(provider, shared_data, tmp_path):
    """In the dialog, not after the raster was copied and the engine started."""
    rstoolbox = shared_data / "rstoolbox"
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:export_label_chips")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    ok, message = algorithm.checkParameterValues({
        "INPUT": str(rstoolbox / "landsat5_1988_7band.tif"), "LABELS": str(rstoolbox / "training_polygons.gpkg"),
        "CLASS_FIELD": "class", "CHIP_SIZE": 32, "KEEP_CLASSES": str(shared_data / "eolearn" / "LICENSE"),
        "OUTPUT": str(tmp_path / "chips")}, context)
    assert not ok and "neither a model (.onnx) nor a JSON file" in message, message
