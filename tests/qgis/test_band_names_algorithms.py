"""Band names in the Processing dialogs, in a real headless QGIS: chips cut from the red and NIR bands of a Zion
crop whose bands are described (blue, green, red, nir) record those names; 'Classify raster with model' then finds
them on a raster stacked in another order (nir, green, red), where the band numbers alone would be refused, and
warns when the bands chosen by hand carry other names than the model's."""
import json

import numpy as np
import pytest
import rasterio
from algorithm_runs import checked_run
from classify_models import tiny_model_for_chips
from qgis.core import QgsRasterLayer
from rasterio.windows import Window

from landcover_plugin.qgis_glue.layers import raster_band_names

NAMES = ("blue", "green", "red", "nir")  # Zion's Landsat 8 bands 2-5
RESTACKED = (4, 2, 3)  # nir, green, red: three bands, none where the model's source had it


def write_copy(source, path, bands, names):
    """Zion's bands ``bands`` (1-based, in that order) over a 400 x 400 px crop holding polygons, described as
    ``names`` (None: no descriptions)."""
    with rasterio.open(source) as src:
        window = Window(100, 300, 400, 400)
        profile = dict(src.profile, width=400, height=400, count=len(bands), transform=src.window_transform(window),
                       tiled=False)
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        data = src.read(list(bands), window=window)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if names:
            dst.descriptions = tuple(names)
    return QgsRasterLayer(str(path), path.stem)


@pytest.fixture(scope="module")
def rasters(shared_data, tmp_path_factory):
    folder, source = tmp_path_factory.mktemp("band_names"), shared_data / "zion" / "landsat8_2015_b2345.tif"
    return {"named": write_copy(source, folder / "named.tif", (1, 2, 3, 4), NAMES),
            "restacked": write_copy(source, folder / "restacked.tif", RESTACKED, [NAMES[b - 1] for b in RESTACKED]),
            "unnamed": write_copy(source, folder / "unnamed.tif", RESTACKED, None),
            "photo": photo(source, folder / "photo.tif")}


def photo(source, path):
    """Zion's red, green, blue and NIR as 8-bit, tagged as an RGB photo with an extra band (aerial RGBN)."""
    with rasterio.open(source) as src:
        data = (src.read([3, 2, 1, 4], window=Window(0, 0, 64, 64)) // 256).astype("uint8")
        profile = {"driver": "GTiff", "width": 64, "height": 64, "count": 4, "dtype": "uint8", "crs": src.crs,
                   "transform": src.transform, "photometric": "RGB", "alpha": "UNSPECIFIED"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return QgsRasterLayer(str(path), path.stem)


@pytest.fixture(scope="module")
def model(provider, rasters, shared_data, tmp_path_factory):
    """A tiny net with the card training writes for red and NIR chips of the named crop."""
    chips = tmp_path_factory.mktemp("band_names_chips") / "chips"
    polygons = str(shared_data / "zion" / "training_polygons_sparse.gpkg")
    results, ok, log = checked_run("landcover:export_label_chips", {
        "INPUT": rasters["named"], "BANDS": [3, 4], "LABELS": polygons, "CLASS_FIELD": "class_id", "CHIP_SIZE": 32,
        "MIN_LABELLED": 0.0, "OUTPUT": str(chips)})
    assert ok, log
    dataset = json.loads((chips / "dataset.json").read_text())
    path = tiny_model_for_chips(dataset, tmp_path_factory.mktemp("band_names_model") / "m.onnx")
    return {"path": path, "bands": dataset["bands"]}


def classify(rasters, name, model, tmp_path, **more):
    return checked_run("landcover:classify_raster", {"INPUT": rasters[name], "MODEL": model["path"], "DEVICE": 1,
                                                     "OUTPUT": str(tmp_path / f"{name}.tif"), **more})


def read(results):
    with rasterio.open(results["OUTPUT"]) as src:
        return src.read(1)


def test_the_layers_band_descriptions_become_the_models_band_names(rasters, model):
    assert raster_band_names(rasters["named"]) == list(NAMES)
    assert raster_band_names(rasters["unnamed"]) == ["", "", ""]
    assert raster_band_names(rasters["photo"]) == ["red", "green", "blue", ""]  # colours name a photo's bands
    assert model["bands"]["names"] == ["red", "nir"] and model["bands"]["source_bands"] == [3, 4]


def test_a_raster_stacked_in_another_order_is_read_by_band_name(rasters, model, tmp_path):
    named, ok, log = classify(rasters, "named", model, tmp_path)
    assert ok and "reading raster bands 3, 4 (the raster's bands named as the model's)" in log
    restacked, ok, log = classify(rasters, "restacked", model, tmp_path)
    assert ok, log
    assert "The model takes 2 bands, in this order: 1 'red' (source band 3), 2 'nir' (source band 4)" in log
    assert "reading raster bands 3, 1 (the raster's bands named as the model's)" in log
    assert np.array_equal(read(named), read(restacked))
    # without the names, bands 3 and 4 of a 3-band raster cannot be read: refused before the run, naming them
    results, ok, message = classify(rasters, "unnamed", model, tmp_path)
    assert not ok and "'unnamed': The raster has 3 bands but the model takes 2 bands" in message
    assert "the model learnt from bands 3, 4 of a 4-band raster" in message


def test_bands_chosen_by_hand_under_other_names_are_run_with_a_warning(rasters, model, tmp_path):
    results, ok, log = classify(rasters, "restacked", model, tmp_path, BANDS=[1, 3])
    assert ok and "reading raster bands 1, 3 (as given)" in log
    assert ("The raster's band names do not match the model's bands they are fed to: raster band 1 'nir' is fed "
            "to the model's band 1 'red'; the raster's band 3 is named 'red'; raster band 3 'red' is fed to the "
            "model's band 2 'nir'; the raster's band 1 is named 'nir'.") in log
    assert "Choose Bands 3 1 (the bands named as the model's), or leave Bands empty." in log
    results, ok, log = classify(rasters, "restacked", model, tmp_path, BANDS=[3, 1])
    assert ok and "do not match" not in log
