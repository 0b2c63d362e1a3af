"""The "Assess accuracy" Processing algorithm in a real headless QGIS, on the real sample data."""
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import rasterio
from algorithm_runs import run_algorithm as run_landcover
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsRasterLayer,
    QgsVectorLayer,
)

gdal.UseExceptions()


def run_algorithm(parameters):
    return run_landcover("landcover:assess_accuracy", parameters)


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])


def test_polygons_in_another_crs_against_a_classified_map(provider, tmp_path, shared_data):
    # The classified map: rstoolbox polygons burnt by GDAL (ids 1..4), with the western 100 columns wrong.
    names = ["forest", "water", "cleared", "fallen_dry"]
    image = shared_data / "rstoolbox" / "landsat5_1988_7band.tif"
    with rasterio.open(image) as src:
        profile = src.profile
    profile.update(count=1, dtype="uint8", nodata=0)
    classified_path = tmp_path / "classified.tif"
    with rasterio.open(classified_path, "w", **profile) as dst:
        dst.write(np.zeros((profile["height"], profile["width"]), np.uint8), 1)
    polygons = shared_data / "rstoolbox" / "training_polygons.gpkg"
    target = gdal.Open(str(classified_path), gdal.GA_Update)
    for value, name in enumerate(names, 1):
        gdal.Rasterize(target, str(polygons), burnValues=[value], where=f"class = '{name}'")
    target = None
    with rasterio.open(classified_path, "r+") as dst:
        reference = dst.read(1)
        classified = np.where(reference > 0, reference, 1).astype(np.uint8)
        wrong = (reference > 0)
        wrong[:, 100:] = False
        classified[wrong] = reference[wrong] % 4 + 1
        dst.write(classified, 1)
        dst.update_tags(landcover_classes=json.dumps([{"id": i, "name": n, "colour": "#808080"}
                                                      for i, n in enumerate(names, 1)]))
    expected_oa = 1.0 - wrong.sum() / (reference > 0).sum()

    # The reference polygons as a layer in WGS 84 (the algorithm brings them into the map's CRS).
    wgs84 = tmp_path / "polygons_wgs84.gpkg"
    gdal.VectorTranslate(str(wgs84), str(polygons), dstSRS="EPSG:4326")
    layer = QgsVectorLayer(str(wgs84), "reference", "ogr")
    raster = QgsRasterLayer(str(classified_path), "classified")
    assert layer.isValid() and raster.isValid() and layer.crs().authid() == "EPSG:4326"

    html = tmp_path / "report" / "accuracy.html"
    table = tmp_path / "report" / "accuracy.csv"
    results, ok, log = run_algorithm({"CLASSIFIED": raster, "REFERENCE_VECTOR": layer, "CLASS_FIELD": "class",
                                      "OUTPUT_HTML": str(html), "OUTPUT_TABLE": str(table)})
    assert ok, log
    assert results["OA"] == pytest.approx(expected_oa, abs=0.01)
    assert -1.0 <= results["KAPPA"] < 1.0 and 0.0 < results["MIOU"] < 1.0
    assert results["OUTPUT_HTML"] == str(html) and results["OUTPUT_TABLE"] == str(table)
    assert Path(results["OUTPUT_JSON"]).is_file() and Path(results["OUTPUT_CONFUSION"]).is_file()
    parser = ImageSources()
    parser.feed(html.read_text(encoding="utf-8"))
    assert len(parser.images) == 2 and all((html.parent / src).is_file() for src in parser.images)
    assert "Overall accuracy" in log and "fallen_dry" in log  # the accuracy table is in the log
    report = json.loads(Path(results["OUTPUT_JSON"]).read_text(encoding="utf-8"))
    assert report["confusion_matrix"]["names"] == names
    # the engine read a temporary copy in the map's CRS; the report names the analyst's layer
    assert report["inputs"]["reference"].split("|")[0] == str(wgs84)
    assert str(wgs84) in html.read_text(encoding="utf-8")


def test_reference_raster_and_temporary_outputs(provider, tmp_path, shared_data):
    nlcd = shared_data / "zion" / "nlcd2011_8class.tif"
    with rasterio.open(nlcd) as src:
        reference = src.read(1)
        profile = src.profile
    labelled = reference != 255
    changed = labelled & (np.random.default_rng(3).random(reference.shape) < 0.2)
    classified = np.where(changed, reference % 8 + 1, reference)
    classified[~labelled] = 0
    profile.update(nodata=0)
    classified_path = tmp_path / "classified.tif"
    with rasterio.open(classified_path, "w", **profile) as dst:
        dst.write(classified.astype(np.uint8), 1)
    results, ok, log = run_algorithm({"CLASSIFIED": str(classified_path), "REFERENCE_RASTER": str(nlcd),
                                      "CLASSES": str(shared_data / "zion" / "classes.json"),
                                      "OUTPUT_HTML": "TEMPORARY_OUTPUT", "OUTPUT_TABLE": "TEMPORARY_OUTPUT"})
    assert ok, log
    assert results["OA"] == pytest.approx(1.0 - changed.sum() / labelled.sum(), abs=1e-9)
    assert Path(results["OUTPUT_HTML"]).suffix == ".html" and Path(results["OUTPUT_HTML"]).is_file()
    assert Path(results["OUTPUT_TABLE"]).suffix == ".csv" and "Shrubland" in Path(results["OUTPUT_TABLE"]).read_text()


def test_missing_or_double_reference_fails_with_a_clear_message(provider, tmp_path, shared_data):
    lulc = str(shared_data / "eolearn" / "lulc.tif")
    outputs = {"OUTPUT_HTML": str(tmp_path / "a.html"), "OUTPUT_TABLE": str(tmp_path / "a.csv")}
    _, ok, log = run_algorithm({"CLASSIFIED": lulc, **outputs})
    assert not ok and "exactly one reference" in log
    polygons = QgsVectorLayer(str(shared_data / "eolearn" / "lulc_polygons.gpkg"), "lulc", "ogr")
    _, ok, log = run_algorithm({"CLASSIFIED": lulc, "REFERENCE_VECTOR": polygons, **outputs})
    assert not ok and "class field" in log and "LULC_NAME" in log
    assert "fid" not in log.split("its fields are:")[1]  # a GeoPackage's feature id holds no class
    _, ok, log = run_algorithm({"CLASSIFIED": lulc, "REFERENCE_VECTOR": polygons, "CLASS_FIELD": "LULC_NAME",
                                **outputs})
    assert not ok and "grassland" in log and "class list" in log
    assert not (tmp_path / "a.html").exists() and not (tmp_path / "a.csv").exists()


def test_a_sample_without_its_class_field_is_told_to_choose_reference_class(provider, shared_data):
    """The dialog said 'Choose the class field of the reference polygons' for a layer of sample points."""
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:assess_accuracy")
    points = QgsVectorLayer("Point?crs=EPSG:32633&field=reference_class:integer", "sample", "memory")
    ok, message = algorithm.checkParameterValues(
        {"CLASSIFIED": str(shared_data / "eolearn" / "lulc.tif"), "REFERENCE_VECTOR": points},
        QgsProcessingContext())
    assert not ok and "polygons or points" in message and "reference_class" in message
