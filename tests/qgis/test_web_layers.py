"""Web map layers in a real headless QGIS: an XYZ layer of tiles cut from rstoolbox's red, green and blue (local
files, as a tile server would serve them). Its provider gives rendered colours, one 'band' of ARGB32, over the
whole world: 'Classify raster with model' refused every 3-band model ("too few bands, 1 of 3") and would have
fetched the world; 'Export label chips' asked for a pixel size it has no parameter for."""
import json

import pytest
import rasterio
from algorithm_runs import checked_run
from classify_models import card_for, export, tiny_model_for_chips, tiny_net
from osgeo import gdal
from osgeo_utils import gdal2tiles
from qgis.core import QgsRasterLayer, QgsVectorLayer

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.model.card import metadata_props
from landcover_plugin.qgis_glue.layers import engine_bands


@pytest.fixture(scope="module")
def web(shared_data, tmp_path_factory):
    """The XYZ layer, its area in EPSG:3857 (xmin, xmax, ymin, ymax) and the RGB GeoTIFF the tiles come from."""
    folder = tmp_path_factory.mktemp("web")
    with rasterio.open(shared_data / "rstoolbox" / "landsat5_1988_7band.tif") as src:
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 3, "dtype": "uint8",
                   "crs": src.crs, "transform": src.transform}
        rgb = src.read([3, 2, 1])
    with rasterio.open(folder / "rgb.tif", "w", **profile) as dst:  # tagged red, green, blue: GDAL's default
        dst.write(rgb)
    mercator = folder / "rgb_3857.tif"
    gdal.Warp(str(mercator), str(folder / "rgb.tif"), dstSRS="EPSG:3857", resampleAlg="bilinear").FlushCache()
    gdal2tiles.main(["gdal2tiles.py", "-q", "-z", "11-13", "-w", "none", "--xyz", str(mercator), str(folder / "t")])
    url = f"file://{folder / 't'}/%7Bz%7D/%7Bx%7D/%7By%7D.png"
    layer = QgsRasterLayer(f"type=xyz&url={url}&zmax=13&zmin=11", "tiles", "wms")
    assert layer.isValid() and layer.bandCount() == 1
    with rasterio.open(mercator) as src:
        left, bottom, right, top = src.bounds
    return {"layer": layer, "extent": f"{left},{right},{bottom},{top} [EPSG:3857]", "rgb": folder / "rgb.tif"}


@pytest.fixture(scope="module")
def named_model(web, shared_data, tmp_path_factory):
    """A tiny net with the card training writes for chips of the RGB GeoTIFF (bands named red, green, blue)."""
    folder = tmp_path_factory.mktemp("web_model")
    export_chips(ChipExportOptions(web["rgb"], folder / "chips", labels_vector=shared_data / "rstoolbox" /
                                   "training_polygons.gpkg", class_field="class", chip_size=32))
    dataset = json.loads((folder / "chips" / "dataset.json").read_text())
    assert dataset["bands"]["names"] == ["red", "green", "blue"]
    return tiny_model_for_chips(dataset, folder / "m.onnx")


def classify(web, model, tmp_path, **more):
    return checked_run("landcover:classify_raster", {"INPUT": web["layer"], "MODEL": model, "DEVICE": 1,
                                                     "OUTPUT": str(tmp_path / "map.tif"), **more})


def test_the_engine_sees_a_web_layer_as_red_green_blue_and_alpha(web):
    assert engine_bands(web["layer"]) == (4, ["red", "green", "blue", ""], 4)


def test_a_web_layer_is_classified_over_the_extent_given_at_the_models_resolution(provider, web, named_model,
                                                                                    tmp_path):
    results, ok, log = classify(web, named_model, tmp_path, EXTENT=web["extent"])
    assert ok, log
    assert "reading raster bands 1, 2, 3 (the raster's bands named as the model's)" in log
    with rasterio.open(results["OUTPUT"]) as src:
        mapped = src.read(1)
        assert src.crs.to_epsg() == 3857 and 28 < src.res[0] < 32  # 30 m on the ground, near the equator
    assert (mapped > 0).mean() > 0.9  # the tiles cover the extent: classified, not no data


def test_a_web_layer_without_an_extent_is_refused_before_fetching_the_world(provider, web, named_model, tmp_path):
    results, ok, message = classify(web, named_model, tmp_path)
    assert not ok and "'tiles' is a web map layer, which covers the whole world: set Extent" in message


def test_a_model_of_three_unnamed_bands_reads_a_web_layer_without_its_alpha(provider, web, tmp_path):
    """As a Deepness model of an RGB orthophoto would: its bands have no names and no recorded source."""
    card = card_for(["a", "b"], mean=[60, 60, 60], std=[30, 30, 30], tile=32, input_dtype="uint8",
                    resolution=[30.0, 30.0])
    model = export(tiny_net(3, 2), tmp_path / "rgb.onnx", 3, 32, metadata_props(card))
    results, ok, log = classify(web, model, tmp_path, EXTENT=web["extent"])
    assert ok and "reading raster bands 1, 2, 3 (the raster's bands but its alpha band)" in log, log


def test_export_from_a_web_layer_asks_for_the_resolution_to_fetch_it_at(provider, web, shared_data, tmp_path):
    results, ok, message = checked_run("landcover:export_label_chips", {
        "INPUT": web["layer"], "LABELS": str(shared_data / "rstoolbox" / "training_polygons.gpkg"),
        "CLASS_FIELD": "class", "CHIP_SIZE": 32, "OUTPUT": str(tmp_path / "chips")})
    assert not ok and "'tiles' is a web map layer" in message
    assert "Set 'Web map layer: resolution to fetch it at'" in message and "'Rendered image'" in message
    assert not (tmp_path / "chips").exists()


def test_chips_of_a_web_layer_are_fetched_over_the_polygons_and_its_model_classifies_it(provider, web, shared_data,
                                                                                         tmp_path):
    """The whole loop on a basemap: polygons digitised over it, chips fetched at 30 m, a model of their card run
    on the web layer itself."""
    results, ok, log = checked_run("landcover:export_label_chips", {
        "INPUT": web["layer"], "LABELS": str(shared_data / "rstoolbox" / "training_polygons.gpkg"),
        "CLASS_FIELD": "class", "CHIP_SIZE": 32, "WEB_RESOLUTION": 30, "OUTPUT": str(tmp_path / "chips")})
    assert ok, log
    dataset = json.loads((tmp_path / "chips" / "dataset.json").read_text())
    assert dataset["bands"]["names"] == ["red", "green", "blue"] and dataset["bands"]["source_count"] == 4
    assert rasterio.crs.CRS.from_wkt(dataset["crs"]).to_epsg() == 3857
    assert dataset["ground_resolution"] == pytest.approx([30.0, 30.0], rel=0.01)
    assert len(dataset["chips"]) > 20 and sum(json.loads(results["CLASS_PIXELS"]).values()) > 3000
    model = tiny_model_for_chips(dataset, tmp_path / "m.onnx")
    results, ok, log = classify(web, model, tmp_path, EXTENT=web["extent"])
    assert ok and "reading raster bands 1, 2, 3 (the raster's bands named as the model's)" in log, log


def test_other_steps_given_a_web_layer_say_to_save_it_as_a_geotiff(provider, web, named_model, tmp_path):
    results, ok, log = checked_run("landcover:suggest_training_areas", {
        "INPUT": web["layer"], "MODEL": named_model, "OUTPUT": str(tmp_path / "suggest.gpkg")})
    assert not ok and "'tiles' is a web map layer" in log and "'Rendered image'" in log, log
    card = card_for(["a", "b"], mean=[60, 60, 60], std=[30, 30, 30], tile=32, input_dtype="uint8")  # no resolution
    model = export(tiny_net(3, 2), tmp_path / "any.onnx", 3, 32, metadata_props(card))
    results, ok, log = classify(web, model, tmp_path, EXTENT=web["extent"])
    assert not ok and "The model does not say its resolution, so the web map layer 'tiles' cannot be fetched" in log


def test_polygons_far_apart_are_fetched_around_each_not_over_the_land_between(provider, web, shared_data,
                                                                                 tmp_path):
    """Four polygons in the four corners of the scene: four small areas are fetched and mosaicked, not the scene."""
    corners = QgsVectorLayer(str(shared_data / "rstoolbox" / "training_polygons.gpkg"), "corners", "ogr")
    assert corners.setSubsetString("fid IN (7, 20, 22, 24)") and corners.featureCount() == 4
    results, ok, log = checked_run("landcover:export_label_chips", {
        "INPUT": web["layer"], "LABELS": corners, "CLASS_FIELD": "class", "CHIP_SIZE": 16, "VAL_FRACTION": 0,
        "WEB_RESOLUTION": 30, "OUTPUT": str(tmp_path / "chips")})
    assert ok, log
    assert "Fetching 'tiles' in 4 areas around the labels" in log
    dataset = json.loads((tmp_path / "chips" / "dataset.json").read_text())
    assert dataset["source"]["image"].endswith(".vrt")
    with rasterio.open(dataset["source"]["image"]) as mosaic:
        scene = mosaic.width * mosaic.height  # the box of the four polygons: the whole scene, nearly
    assert 4 * 30 * 30 < dataset["valid_pixels"] < 0.2 * scene  # four chips' margins around each, no more
    counted = json.loads(results["CLASS_PIXELS"])
    assert counted["forest"] > 0 and counted["cleared"] > 0
