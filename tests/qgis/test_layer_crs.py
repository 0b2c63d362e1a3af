"""A raster file without a CRS that QGIS places in one (the project's, or the one set under Source > Assigned CRS),
in a real headless QGIS: rstoolbox's image with its CRS removed, the layer set to EPSG:32622. The engine reads
files, so it saw no CRS: chips, model and map had none, and the model no resolution. Now it reads the layer's."""
import json
import shutil

import pytest
import rasterio
from algorithm_runs import checked_run
from classify_models import tiny_model_for_chips
from osgeo import gdal
from qgis.core import QgsCoordinateReferenceSystem, QgsRasterLayer


@pytest.fixture(scope="module")
def placed(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("layer_crs")
    path = folder / "no_crs.tif"
    shutil.copy2(shared_data / "rstoolbox" / "landsat5_1988_7band.tif", path)
    dataset = gdal.Open(str(path), gdal.GA_Update)
    dataset.SetProjection("")
    dataset = None
    with rasterio.open(path) as src:
        assert src.crs is None
    layer = QgsRasterLayer(str(path), "no_crs")
    layer.setCrs(QgsCoordinateReferenceSystem("EPSG:32622"))
    assert layer.isValid() and layer.crs().authid() == "EPSG:32622"
    return {"layer": layer, "folder": folder}


@pytest.fixture(scope="module")
def exported(provider, placed, shared_data):
    chips = placed["folder"] / "chips"
    results, ok, log = checked_run("landcover:export_label_chips", {
        "INPUT": placed["layer"], "LABELS": str(shared_data / "rstoolbox" / "training_polygons.gpkg"),
        "CLASS_FIELD": "class", "CHIP_SIZE": 32, "OUTPUT": str(chips)})
    assert ok, log
    return json.loads((chips / "dataset.json").read_text()), log


def test_chips_of_a_file_without_a_crs_take_the_crs_qgis_places_it_in(exported):
    dataset, log = exported
    assert "The file of 'no_crs' has no CRS; QGIS places the layer in EPSG:32622, so the engine reads it" in log
    assert rasterio.crs.CRS.from_wkt(dataset["crs"]).to_epsg() == 32622
    assert dataset["ground_resolution"] == pytest.approx([30.0, 30.0])  # the model will know its resolution


def test_its_map_is_in_that_crs(provider, placed, exported, tmp_path):
    model = tiny_model_for_chips(exported[0], tmp_path / "m.onnx")
    results, ok, log = checked_run("landcover:classify_raster", {"INPUT": placed["layer"], "MODEL": model,
                                                                 "DEVICE": 1, "OUTPUT": str(tmp_path / "map.tif")})
    assert ok and "has no CRS" in log and "classified raster will have none" not in log, log
    with rasterio.open(results["OUTPUT"]) as src:
        assert src.crs.to_epsg() == 32622


def test_a_file_in_the_layers_crs_is_read_as_it_is(provider, shared_data, tmp_path):
    layer = QgsRasterLayer(str(shared_data / "rstoolbox" / "landsat5_1988_7band.tif"), "rstoolbox")
    results, ok, log = checked_run("landcover:export_label_chips", {
        "INPUT": layer, "LABELS": str(shared_data / "rstoolbox" / "training_polygons.gpkg"), "CLASS_FIELD": "class",
        "CHIP_SIZE": 32, "OUTPUT": str(tmp_path / "chips")})
    assert ok and "QGIS places the layer in" not in log
    assert f"--image={shared_data / 'rstoolbox' / 'landsat5_1988_7band.tif'}" in log


def test_a_crs_assigned_over_the_files_is_the_one_read(provider, shared_data, tmp_path):
    """Zion's file says UTM 12N; the analyst assigns UTM 13N (as for a file whose CRS is wrong) and digitises over the
    layer where QGIS shows it: the sparse polygons, same coordinates, in 13N. The engine read the file's 12N, so the
    polygons lay 700 km away, over no pixel; now it reads the layer's, and the chips are those of the file's own."""
    image = str(shared_data / "zion" / "landsat8_2015_b2345.tif")
    polygons = tmp_path / "drawn_in_13n.gpkg"
    gdal.VectorTranslate(str(polygons), str(shared_data / "zion" / "training_polygons_sparse.gpkg"),
                         dstSRS="EPSG:32613", reproject=False)  # the same numbers, now in 13N
    layer = QgsRasterLayer(image, "zion")
    layer.setCrs(QgsCoordinateReferenceSystem("EPSG:32613"))
    assert layer.dataProvider().crs().authid() == "EPSG:32612"
    results, ok, log = checked_run("landcover:export_label_chips", {
        "INPUT": layer, "LABELS": str(polygons), "CLASS_FIELD": "class", "CHIP_SIZE": 32,
        "OUTPUT": str(tmp_path / "assigned")})
    assert ok, log
    assert "'zion' is assigned EPSG:32613 in QGIS (Source > Assigned CRS), its file says EPSG:32612" in log
    plain, ok, log = checked_run("landcover:export_label_chips", {
        "INPUT": QgsRasterLayer(image, "zion"), "LABELS": str(shared_data / "zion" / "training_polygons_sparse.gpkg"),
        "CLASS_FIELD": "class", "CHIP_SIZE": 32, "OUTPUT": str(tmp_path / "plain")})
    assert ok and "Assigned CRS" not in log, log
    assert results["CLASS_PIXELS"] == plain["CLASS_PIXELS"] and results["CHIPS"] == plain["CHIPS"]
    assert rasterio.crs.CRS.from_wkt(json.loads((tmp_path / "assigned" / "dataset.json").read_text())["crs"]
                                     ).to_epsg() == 32613
