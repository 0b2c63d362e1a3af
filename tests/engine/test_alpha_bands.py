"""Alpha bands, from rstoolbox's red, green and blue (uint8): an RGBA orthomosaic-like raster (a transparent
border) is masked by its alpha band, which the model does not learn from, so its model classifies the same
scene saved as plain RGB; a 4-band RGBN raster whose NIR band GDAL tagged alpha by default keeps that band as
data, masks nothing, and says so."""
import json

import numpy as np
import pytest
import rasterio
from classify_models import tiny_model_for_chips

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents

BORDER = 40  # transparent columns on the west of the RGBA raster


def write(path, data, **profile):
    with rasterio.open(path, "w", **profile, count=len(data)) as dst:  # GDAL's defaults: 8-bit RGB(A)
        dst.write(data)
    with rasterio.open(path) as src:
        return [c.name for c in src.colorinterp]


@pytest.fixture(scope="module")
def rasters(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("alpha")
    with rasterio.open(shared_data / "rstoolbox" / "landsat5_1988_7band.tif") as src:
        rgb, nir = src.read([3, 2, 1]), src.read(4)
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "dtype": "uint8", "crs": src.crs,
                   "transform": src.transform}
    alpha = np.full(rgb.shape[1:], 255, np.uint8)
    alpha[:, :BORDER] = 0
    dark = np.where(nir <= np.percentile(nir, 10), 0, nir).astype(np.uint8)  # an 8-bit stretch clips dark water
    paths = {name: folder / f"{name}.tif" for name in ("rgba", "rgb", "rgbn")}
    assert write(paths["rgba"], np.concatenate([rgb, alpha[None]]), **profile) == ["red", "green", "blue", "alpha"]
    assert write(paths["rgb"], rgb, **profile) == ["red", "green", "blue"]
    assert write(paths["rgbn"], np.concatenate([rgb, dark[None]]), **profile) == ["red", "green", "blue", "alpha"]
    paths["dark_pixels"] = int((dark == 0).sum())
    paths["rgbn_tagged"] = folder / "rgbn_tagged.tif"  # as aerial RGBN products are: the 4th band untagged
    assert write(paths["rgbn_tagged"], np.concatenate([rgb, nir[None]]), **profile, photometric="RGB",
                 alpha="UNSPECIFIED") == ["red", "green", "blue", "undefined"]
    return paths


def chips(rasters, name, shared_data, tmp_path_factory):
    events = RecordingEvents()
    folder = tmp_path_factory.mktemp(f"alpha_{name}") / "chips"
    export_chips(ChipExportOptions(rasters[name], folder, labels_vector=shared_data / "rstoolbox" /
                                   "training_polygons.gpkg", class_field="class", chip_size=32), events)
    logs = {level: [e["message"] for e in events.of_type("log") if e["level"] == level]
            for level in ("info", "warning")}
    return json.loads((folder / "dataset.json").read_text()), logs


def labelled(dataset) -> int:
    return sum(sum(chip["class_counts"].values()) for chip in dataset["chips"])


@pytest.fixture(scope="module")
def exported(rasters, shared_data, tmp_path_factory):
    return {name: chips(rasters, name, shared_data, tmp_path_factory)
            for name in ("rgba", "rgb", "rgbn", "rgbn_tagged")}


def test_an_alpha_band_masks_the_chips_and_is_no_band_to_learn_from(exported):
    dataset, logs = exported["rgba"]
    assert dataset["bands"]["names"] == ["red", "green", "blue"] and dataset["bands"]["source_bands"] == [1, 2, 3]
    assert dataset["bands"]["source_count"] == 4 and not logs["warning"]
    assert any("Band 4 is the raster's alpha band (its transparency mask): its transparent pixels are no data, and "
               "the model learns from the other 3 bands (red, green, blue)." in m for m in logs["info"])
    rgb, _ = exported["rgb"]
    assert rgb["bands"]["names"] == ["red", "green", "blue"]
    assert 0 < labelled(dataset) < labelled(rgb)  # the polygons' pixels in the transparent border are no data
    for chip in dataset["chips"]:
        assert chip["window"]["col_off"] + 32 > BORDER or not sum(chip["class_counts"].values())


def test_an_image_band_tagged_alpha_stays_a_band_and_masks_nothing(exported, rasters):
    dataset, logs = exported["rgbn"]
    assert dataset["bands"]["source_bands"] == [1, 2, 3, 4] and dataset["bands"]["names"][3] == "band 4"
    assert rasters["dark_pixels"] > 1000  # pixels a mask read from the band would have hidden
    assert labelled(dataset) == labelled(exported["rgb"][0])  # same polygons, nothing hidden
    assert len(logs["warning"]) == 1 and "Band 4 of" in logs["warning"][0]
    assert "tagged as alpha (transparency), but its values are those of an image band" in logs["warning"][0]
    assert "'-colorinterp_4 undefined'" in logs["warning"][0]


def test_a_model_of_an_rgba_raster_classifies_it_and_the_plain_rgb_scene_alike(exported, rasters, tmp_path):
    model = tiny_model_for_chips(exported["rgba"][0], tmp_path / "m.onnx")
    maps = {}
    for name in ("rgba", "rgb"):
        events = RecordingEvents()
        result = classify_raster(ClassifyOptions(rasters[name], model, tmp_path / f"{name}_map.tif"), events)
        with rasterio.open(result["OUTPUT"]) as src:
            maps[name] = src.read(1)
        said = " ".join(e["message"] for e in events.of_type("log"))
        assert "reading raster bands 1, 2, 3 (the raster's bands named as the model's)" in said
    assert (maps["rgba"][:, :BORDER] == 0).all() and (maps["rgba"][:, BORDER:] > 0).all()
    # away from the border (the blending reaches a tile's overlap into it) the maps are the same
    assert np.array_equal(maps["rgba"][:, BORDER + 32:], maps["rgb"][:, BORDER + 32:])


def test_colour_tagged_bands_are_named_so_a_pretrained_encoder_puts_its_rgb_filters_on_them(exported):
    from training.encoder_weights import band_colours  # noqa: PLC0415

    dataset, logs = exported["rgbn_tagged"]
    assert dataset["bands"]["names"] == ["red", "green", "blue", "band 4"] and not logs["warning"]
    assert band_colours(dataset["bands"]["names"]) == {0: 0, 1: 1, 2: 2}  # before: no names, mean filters only
    assert band_colours(exported["rgbn"][0]["bands"]["names"]) == {0: 0, 1: 1, 2: 2}
