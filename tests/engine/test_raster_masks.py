"""A raster's own mask (an internal GDAL mask, as ``gdal_translate -mask`` writes, instead of a nodata value) hides
pixels as no data in classify, in chip export (statistics and labels) and in the band pre-flight: the same raster
with those pixels set to its nodata value gives the same map, statistics and chips."""
import json

import numpy as np
import pytest
import rasterio
from classify_models import card_for, export, tiny_net, untrained_model

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import metadata_props
from landcover_plugin.core.rasters import own_mask

FILL = 65535


@pytest.fixture(scope="module")
def rasters(shared_data, tmp_path_factory):
    """Zion twice with the same pixels hidden: by the nodata value 65535, and (no nodata value) by an internal
    per-dataset mask over the same pixels, which hold 65535 there too (as the probe's file)."""
    folder = tmp_path_factory.mktemp("masks")
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    with rasterio.open(image) as src:
        profile, data = src.profile, src.read()
    hidden = np.zeros(data.shape[1:], dtype=bool)
    hidden[100:300, 200:500] = True  # a block over several tiles
    rng = np.random.default_rng(4)
    hidden[rng.integers(0, hidden.shape[0], 400), rng.integers(0, hidden.shape[1], 400)] = True  # and scattered
    data[:, hidden] = FILL
    nodata, masked = folder / "nodata.tif", folder / "masked.tif"
    with rasterio.open(nodata, "w", **profile) as dst:
        dst.write(data)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "w", **dict(profile, nodata=None)) as dst:
        dst.write(data)
        dst.write_mask(np.where(hidden, 0, 255).astype(np.uint8))
    with rasterio.open(masked) as src:
        assert src.nodata is None and all(flags == [rasterio.enums.MaskFlags.per_dataset]
                                          for flags in src.mask_flag_enums)
    return {"folder": folder, "nodata": nodata, "masked": masked, "hidden": hidden, "image": image,
            "nlcd": shared_data / "zion" / "nlcd2011_8class.tif"}


def classify(path, model, output, **options):
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(path, model, output, **options), events)
    with rasterio.open(result["OUTPUT"]) as dst:
        return dst.read(1), events


def test_masked_pixels_are_no_data_in_the_map(rasters, model):
    folder = rasters["folder"]
    by_nodata, _ = classify(rasters["nodata"], model, folder / "nodata_map.tif")
    by_mask, _ = classify(rasters["masked"], model, folder / "masked_map.tif")
    np.testing.assert_array_equal(by_mask == 0, rasters["hidden"])
    np.testing.assert_array_equal(by_mask, by_nodata)


def test_masked_pixels_are_no_data_when_resampled(rasters, tmp_path):
    """Resampled to the model's resolution (a warped raster), the mask is warped with the bands."""
    card = card_for(["water", "forest", "shrubland"], mean=[9000, 8000, 7500, 15000], std=[1000, 1200, 1500, 2500],
                    tile=64, input_dtype="uint16", resolution=[60.0, 60.0])
    model = export(tiny_net(4, 3), tmp_path / "m60.onnx", 4, 64, metadata_props(card))
    by_nodata, _ = classify(rasters["nodata"], model, tmp_path / "nodata_60.tif", resample=True)
    by_mask, _ = classify(rasters["masked"], model, tmp_path / "masked_60.tif", resample=True)
    assert by_mask.shape == (714, 564)
    assert (by_mask[55:145, 105:245] == 0).all()  # inside the hidden block, on the 60 m grid
    np.testing.assert_array_equal(by_mask, by_nodata)


def test_the_preflight_leaves_masked_pixels_out(rasters, tmp_path):
    """Masked pixels holding other values (here 65535, 40 % of the raster) must not pull the band statistics: the
    same raster without its mask is warned about (as 65535 in every band with no nodata value: a fill)."""
    model = untrained_model(rasters["image"], tmp_path / "m.onnx", ["water", "forest", "shrubland"],
                            tile=64, input_dtype="uint16")
    with rasterio.open(rasters["image"]) as src:
        profile, data = dict(src.profile, nodata=None), src.read()
    hidden = np.zeros(data.shape[1:], dtype=bool)
    hidden[:, :450] = True
    data[:, hidden] = FILL
    plain, masked = tmp_path / "plain.tif", tmp_path / "masked.tif"
    for path in (plain, masked):
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            if path == masked:
                dst.write_mask(np.where(hidden, 0, 255).astype(np.uint8))

    def warnings(path):
        events = classify(path, model, tmp_path / f"{path.stem}_map.tif")[1]
        return [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert any("are 65535 in every band, and the raster has no nodata value" in m for m in warnings(plain))
    assert not [m for m in warnings(masked) if "training data" in m or "in every band" in m]


def test_chip_export_leaves_masked_pixels_out_of_statistics_and_labels(rasters):
    folder = rasters["folder"]
    contents = {}
    for name in ("nodata", "masked"):
        export_chips(ChipExportOptions(rasters[name], folder / f"chips_{name}", labels_raster=rasters["nlcd"],
                                       chip_size=64, val_fraction=0.0), RecordingEvents())
        contents[name] = json.loads((folder / f"chips_{name}" / "dataset.json").read_text())
    by_nodata, by_mask = contents["nodata"], contents["masked"]
    assert by_mask["valid_pixels"] == by_nodata["valid_pixels"] == rasters["hidden"].size - rasters["hidden"].sum()
    np.testing.assert_allclose(by_mask["mean"], by_nodata["mean"], rtol=1e-9)
    np.testing.assert_allclose(by_mask["std"], by_nodata["std"], rtol=1e-9)
    assert by_mask["distinct_class_pixels"] == by_nodata["distinct_class_pixels"]
    labelled_hidden = 0
    for chip in by_mask["chips"]:
        window = chip["window"]
        with rasterio.open(folder / "chips_masked" / chip["label"]) as src:
            label = src.read(1)
        hidden = rasters["hidden"][window["row_off"]:window["row_off"] + 64, window["col_off"]:window["col_off"] + 64]
        labelled_hidden += int((label[hidden] > 0).sum())
    assert labelled_hidden == 0 and len(by_mask["chips"]) == len(by_nodata["chips"])


def test_an_ordinary_raster_reads_no_mask(rasters):
    with rasterio.open(rasters["nodata"]) as src:
        assert own_mask(src) is None
    with rasterio.open(rasters["masked"]) as src:
        mask = own_mask(src, [2, 3])
        assert mask.bands == [2]  # one per-dataset mask: read once
        window = rasterio.windows.Window(150, 50, 400, 300)
        np.testing.assert_array_equal(mask.valid(window), ~rasters["hidden"][50:350, 150:550])
