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
