"""Chip export from classified-raster labels, nodata/NaN handling and dtypes, on the real data."""
import json

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from test_chip_export_polygons import (
    assert_no_train_val_overlap,
    check_chips_against_source,
    distinct_pixels,
    valid_mask,
)

from landcover_plugin.core.chips.dataset import load_dataset
from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.events import RecordingEvents


def copy_raster(source, target, edit=None, dtype=None):
    """Copy a raster (all bands) to ``target``, optionally changing its pixels or dtype."""
    with rasterio.open(source) as src:
        data = src.read()
        profile = src.profile
    if dtype is not None:
        data = data.astype(dtype)
        profile.update(dtype=dtype)
    if edit is not None:
        edit(data)
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
    return target


def test_zion_nlcd_labels_with_nodata_pixels(shared_data, tmp_path):
    zion = shared_data / "zion"

    def punch_nodata(data):  # a nodata block in one band, crossing chip borders
        data[2, 200:420, 300:700] = 65535

    image = copy_raster(zion / "landsat8_2015_b2345.tif", tmp_path / "zion.tif", punch_nodata)
    summary = export_chips(ChipExportOptions(image, tmp_path / "chips", labels_raster=zion / "nlcd2011_8class.tif",
                                             chip_size=256, stride=192, min_labelled=0.05, val_fraction=0.2, seed=1))
    dataset = load_dataset(tmp_path / "chips")

    sidecar = json.loads((zion / "classes.json").read_text())
    assert [(c.id, c.name, c.colour) for c in dataset["schema"]] == [
        (c["id"], c["name"], c["color"]) for c in sidecar["classes"]]
    assert dataset["nodata"] == 65535 and dataset["bands"]["dtype"] == "uint16" and dataset["stride"] == 192
    with rasterio.open(zion / "nlcd2011_8class.tif") as nlcd:
        reference = nlcd.read(1)
    reference[reference == 255] = 0
    check_chips_against_source(dataset, image, reference)  # includes: nodata pixels are labelled 0
    with rasterio.open(image) as src:
        whole = src.read()
    valid = valid_mask(whole, 65535)
    assert (~valid).sum() == 220 * 400
    np.testing.assert_allclose(dataset["mean"], whole[:, valid].mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(dataset["std"], whole[:, valid].std(axis=1), rtol=1e-9)
    assert dataset["valid_pixels"] == valid.sum()
    assert_no_train_val_overlap(dataset)
    train = sum(c["split"] == "train" for c in dataset["chips"])
    val = sum(c["split"] == "val" for c in dataset["chips"])
    assert (train, val) == (summary["train_chips"], summary["val_chips"]) and train > val > 0
    # summary: each labelled pixel once, though 256 px chips every 192 px overlap
    assert summary["train_class_pixels"] == distinct_pixels(dataset, "train", reference, valid)
    assert summary["val_class_pixels"] == distinct_pixels(dataset, "val", reference, valid)
    # summary: every class has pixels; the scarce ones are flagged as very few
    assert set(summary["class_pixels"]) == {c["name"] for c in sidecar["classes"]}
    labelled_train = sum(summary["train_class_pixels"].values())
    assert summary["rare_classes"] == [n for n, v in summary["train_class_pixels"].items()
                                       if 0 < v < 0.01 * labelled_train]
    assert summary["chips_per_second"] > 0


def test_labels_raster_on_another_grid_are_aligned(shared_data, tmp_path):
    """A crop of the NLCD map (other origin and size) lands on the right image pixels; outside it is 0."""
    zion = shared_data / "zion"
    with rasterio.open(zion / "nlcd2011_8class.tif") as nlcd:
        window = Window(150, 100, 700, 900)
        crop = nlcd.read(1, window=window)
        profile = dict(nlcd.profile, width=700, height=900, transform=nlcd.window_transform(window))
        full = nlcd.read(1)
    with rasterio.open(tmp_path / "crop.tif", "w", **profile) as dst:
        dst.write(crop, 1)
    export_chips(ChipExportOptions(zion / "landsat8_2015_b2345.tif", tmp_path / "chips",
                                   labels_raster=tmp_path / "crop.tif",
                                   schema=json.loads((zion / "classes.json").read_text())["classes"], chip_size=128,
                                   min_labelled=0.0, val_fraction=0.2))
    dataset = load_dataset(tmp_path / "chips")
    expected = np.zeros_like(full)
    expected[100:1000, 150:850] = full[100:1000, 150:850]
    expected[expected == 255] = 0
    check_chips_against_source(dataset, zion / "landsat8_2015_b2345.tif", expected)
    assert all(c["window"]["row_off"] + 128 > 100 and c["window"]["col_off"] < 850 for c in dataset["chips"])


def test_float32_with_nan_and_numeric_raster_labels(shared_data, tmp_path):
    eolearn = shared_data / "eolearn"
    image = eolearn / "sentinel2_13band_composite.tif"
    export_chips(ChipExportOptions(image, tmp_path / "chips", labels_raster=eolearn / "lulc.tif", chip_size=32,
                                   stride=24, min_labelled=0.05, val_fraction=0.2))
    dataset = load_dataset(tmp_path / "chips")
    assert dataset["schema"].ids == [1, 2, 3, 4, 8]  # the raster's values, 0 (its nodata) is unlabelled
    assert np.isnan(dataset["nodata"]) and dataset["bands"] == {"count": 13, "dtype": "float32",
                                                               "names": dataset["bands"]["names"],
                                                               "source_bands": list(range(1, 14)), "source_count": 13}
    with rasterio.open(eolearn / "lulc.tif") as lulc, rasterio.open(image) as src:
        reference = lulc.read(1)
        whole = src.read()
    valid = np.isfinite(whole).all(axis=0)
    assert 0 < (~valid).sum() < valid.sum()
    np.testing.assert_allclose(dataset["mean"], whole[:, valid].astype(np.float64).mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(dataset["std"], whole[:, valid].astype(np.float64).std(axis=1), rtol=1e-7)
    nan_pixels = 0
    for chip in dataset["chips"]:
        with rasterio.open(chip["image_path"]) as ci, rasterio.open(chip["label_path"]) as cl:
            data, labels = ci.read(), cl.read(1)
        expected = src_window = whole[:, chip["window"]["row_off"]:chip["window"]["row_off"] + 32,
                                      chip["window"]["col_off"]:chip["window"]["col_off"] + 32]
        np.testing.assert_array_equal(data, expected)  # NaN equal NaN here
        nan = ~np.isfinite(src_window).all(axis=0)
        assert (labels[nan] == 0).all()
        nan_pixels += nan.sum()
    assert nan_pixels > 0
    check_chips_against_source(dataset, image, reference)


@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_dtypes_are_kept(shared_data, tmp_path, dtype):
    def shift(data):
        data -= 100  # negative values in int16

    image = copy_raster(shared_data / "rstoolbox/landsat5_1988_7band.tif", tmp_path / f"{dtype}.tif", shift, dtype)
    export_chips(ChipExportOptions(image, tmp_path / "chips",
                                   labels_vector=shared_data / "rstoolbox/training_polygons.gpkg", class_field="class",
                                   chip_size=96, stride=64, min_labelled=0.01))
    dataset = load_dataset(tmp_path / "chips")
    assert dataset["bands"]["dtype"] == dtype
    with rasterio.open(dataset["chips"][0]["image_path"]) as chip, rasterio.open(image) as src:
        assert chip.dtypes[0] == dtype
        w = dataset["chips"][0]["window"]
        np.testing.assert_array_equal(chip.read(), src.read(window=Window(w["col_off"], w["row_off"], 96, 96)))


def test_labels_raster_in_another_crs(shared_data, tmp_path):
    """The NLCD map warped to Albers (EPSG:5070) comes back onto the UTM image grid by nearest neighbour."""
    from osgeo import gdal

    gdal.UseExceptions()
    zion = shared_data / "zion"
    albers = tmp_path / "nlcd_albers.tif"
    gdal.Warp(str(albers), str(zion / "nlcd2011_8class.tif"), dstSRS="EPSG:5070", xRes=30, yRes=30,
              resampleAlg="near", errorThreshold=0)
    export_chips(ChipExportOptions(zion / "landsat8_2015_b2345.tif", tmp_path / "chips", labels_raster=albers,
                                   chip_size=128, schema=json.loads((zion / "classes.json").read_text())["classes"],
                                   min_labelled=0.0))
    dataset = load_dataset(tmp_path / "chips")
    with rasterio.open(zion / "landsat8_2015_b2345.tif") as src, rasterio.open(zion / "nlcd2011_8class.tif") as nl:
        back = gdal.Warp("", str(albers), format="MEM", dstSRS=src.crs.to_wkt(), outputBounds=src.bounds,
                         width=src.width, height=src.height, resampleAlg="near", errorThreshold=0)
        expected = back.GetRasterBand(1).ReadAsArray()
        original = nl.read(1)
    expected[expected == 255] = 0
    mismatched = checked = 0
    for chip in dataset["chips"]:
        w = chip["window"]
        with rasterio.open(chip["label_path"]) as label:
            got = label.read(1)
        mismatched += (got != expected[w["row_off"]:w["row_off"] + 128, w["col_off"]:w["col_off"] + 128]).sum()
        checked += got.size
    # GDAL's exact warp vs the engine's warped VRT (1/1000-pixel approximation): a rare nearest tie differs
    assert checked > 1_000_000 and mismatched / checked < 1e-4
    # and twice-resampled labels still agree with the original map almost everywhere
    inside = (expected > 0) & (original != 255)
    assert inside.mean() > 0.95 and (expected[inside] == original[inside]).mean() > 0.85


def test_classified_raster_labels_keep_their_embedded_names_and_colours(shared_data, tmp_path):
    """A land-cover map as labels: class names and colours come from the map itself (GDAL category names
    and colour table, as our classifier and QGIS write them), not 'class 1'.. from its values."""
    from osgeo import gdal

    image = shared_data / "rstoolbox" / "landsat5_1988_7band.tif"
    labels = tmp_path / "map.tif"
    with rasterio.open(image) as src:
        profile = dict(src.profile, count=1, dtype="uint8", nodata=0)
        values = np.ones((src.height, src.width), dtype=np.uint8)
        values[:, src.width // 2:] = 2
    with rasterio.open(labels, "w", **profile) as dst:
        dst.write(values, 1)
    gdal.UseExceptions()
    dataset = gdal.Open(str(labels), gdal.GA_Update)
    table = gdal.ColorTable()
    table.SetColorEntry(1, (10, 20, 30, 255))
    table.SetColorEntry(2, (200, 100, 50, 255))
    dataset.GetRasterBand(1).SetColorTable(table)
    dataset = None
    dataset = gdal.Open(str(labels))  # read-only, as the classifier does: names go to the .aux.xml
    dataset.GetRasterBand(1).SetCategoryNames(["", "wetland", "pasture"])
    dataset = None

    export_chips(ChipExportOptions(image, tmp_path / "chips", labels_raster=labels, chip_size=64))
    classes = json.loads((tmp_path / "chips" / "dataset.json").read_text())["classes"]
    assert [(c["id"], c["name"], c["colour"]) for c in classes] == [(1, "wetland", "#0a141e"),
                                                                      (2, "pasture", "#c86432")]


@pytest.mark.parametrize("nodata", [None, 0])
def test_a_border_of_zeros_without_a_nodata_value_is_named(shared_data, tmp_path, nodata):
    """Zeros around the image with no nodata value count in the statistics and get labels: say so, and how to fix
    it; with 0 as the nodata value they are no data and nothing is said."""
    folder = shared_data / "rstoolbox"
    with rasterio.open(folder / "landsat5_1988_7band.tif") as src:
        data, profile = src.read(), src.profile
    framed = np.zeros((data.shape[0], data.shape[1] + 60, data.shape[2] + 60), dtype=data.dtype)
    framed[:, 30:-30, 30:-30] = np.where(data == 0, 1, data)
    profile.update(nodata=nodata, width=framed.shape[2], height=framed.shape[1],
                   transform=profile["transform"] * rasterio.Affine.translation(-30, -30))
    with rasterio.open(tmp_path / "framed.tif", "w", **profile) as dst:
        dst.write(framed)
    events = RecordingEvents()
    export_chips(ChipExportOptions(tmp_path / "framed.tif", tmp_path / "chips",
                                   labels_vector=folder / "training_polygons.gpkg", class_field="class",
                                   chip_size=32), events)
    zeros = [e["message"] for e in events.of_type("log") if "0 in every band" in e["message"]]
    if nodata is None:
        assert len(zeros) == 1 and "of the pixels of" in zeros[0] and "the raster has no nodata value" in zeros[0]
        assert "set to 0; or gdal_edit -a_nodata 0) and run again" in zeros[0]
    else:
        assert not zeros


def test_a_9999_fill_without_a_nodata_value_is_named(shared_data, tmp_path):
    """The eo-learn composite's NaN gaps saved as -9999 with no nodata value: they went into the band statistics
    (every band's mean -1174 instead of about 0.1) and were labelled, and nothing was said (only 0 was looked for)."""
    folder = shared_data / "eolearn"
    with rasterio.open(folder / "sentinel2_13band_composite.tif") as src:
        data, profile = src.read(), dict(src.profile, nodata=None)
    with rasterio.open(tmp_path / "filled.tif", "w", **profile) as dst:
        dst.write(np.where(np.isnan(data), -9999, data).astype(np.float32))
    events = RecordingEvents()
    export_chips(ChipExportOptions(tmp_path / "filled.tif", tmp_path / "chips", labels_raster=folder / "lulc.tif",
                                   chip_size=32, stride=16), events)
    fills = [e["message"] for e in events.of_type("log") if "in every band" in e["message"]]
    assert len(fills) == 1 and "12% of the pixels of" in fills[0] and "are -9999 in every band" in fills[0]
    assert "counted in the band statistics" in fills[0] and "gdal_edit -a_nodata -9999) and run again" in fills[0]


@pytest.mark.parametrize("chip_size,stride,fix", [
    (64, 0, "Use a smaller chip size: the raster holds few 64 px windows, and the last of each row and column is "
            "shifted to end at the raster's edge"),
    (96, 4, "Use a smaller chip size, or a stride of at least the chip size.")])
def test_chips_too_overlapping_to_split_get_the_fix_that_helps(shared_data, tmp_path, chip_size, stride, fix):
    """64 px chips of the 100 x 101 px eo-learn composite at a stride of 64: windows at 0 and 36 on each axis, all
    four overlapping. The warning advised 'a larger stride', which changes nothing there."""
    folder = shared_data / "eolearn"
    events = RecordingEvents()
    export_chips(ChipExportOptions(folder / "sentinel2_13band_composite.tif", tmp_path / "chips",
                                   labels_raster=folder / "lulc.tif", chip_size=chip_size, stride=stride), events)
    (warning,) = [e["message"] for e in events.of_type("log") if "overlap too much" in e["message"]]
    assert fix in warning and "larger stride" not in warning, warning


def test_a_class_labelled_only_where_the_image_is_nan_is_not_told_to_be_labelled(shared_data, tmp_path):
    """lulc.tif with its forest pixels under the composite's NaN gaps (874 px) made class 9: the export warned
    'Classes with no training pixels: class 9. Label some of each', though they are labelled, only where the
    image has no value. It now says so, with their count and what helps."""
    folder = shared_data / "eolearn"
    with rasterio.open(folder / "sentinel2_13band_composite.tif") as src:
        gaps = np.isnan(src.read()).any(axis=0)
    with rasterio.open(folder / "lulc.tif") as src:
        labels, profile = src.read(), src.profile
    labels[0][gaps & (labels[0] == 2)] = 9
    with rasterio.open(tmp_path / "lulc.tif", "w", **profile) as dst:
        dst.write(labels)
    events = RecordingEvents()
    summary = export_chips(ChipExportOptions(folder / "sentinel2_13band_composite.tif", tmp_path / "chips",
                                             labels_raster=tmp_path / "lulc.tif", chip_size=32, stride=16), events)
    warnings = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert not [m for m in warnings if m.startswith("Classes with no training pixels:")], warnings
    (message,) = [m for m in warnings if "all their labelled pixels lie where the raster has no data" in m]
    assert "class 9 (874 px)" in message and "Label them where the raster has values" in message
    assert summary["missing_classes"] == ["class 9"] and summary["labelled_on_nodata"]["class 9"] == 874


def test_coarser_labels_are_said_to_be_coarser(shared_data, tmp_path):
    """eo-learn's land-cover map at 20 m for the 10 m composite: the log names the pixel sizes and warns that the
    chips' class edges follow the 20 m grid; in another CRS at the same size, only the CRS is named."""
    from osgeo import gdal

    gdal.UseExceptions()
    eo = shared_data / "eolearn"
    coarse, utm34 = tmp_path / "lulc_20m.tif", tmp_path / "lulc_utm34.tif"
    gdal.Warp(str(coarse), str(eo / "lulc.tif"), xRes=20, yRes=20, resampleAlg="mode")
    gdal.Warp(str(utm34), str(eo / "lulc.tif"), dstSRS="EPSG:32634", xRes=10, yRes=10, resampleAlg="near")
    logs = {}
    for labels in (coarse, utm34):
        events = RecordingEvents()
        export_chips(ChipExportOptions(eo / "sentinel2_13band_composite.tif", tmp_path / labels.stem,
                                       labels_raster=labels, chip_size=32), events)
        logs[labels] = [(e["level"], e["message"]) for e in events.of_type("log") if "labels raster" in e["message"]]
    assert ("info", "The labels raster differs from the image in pixel size (20 m against 10 m): read on the "
            "image's grid by nearest neighbour.") in logs[coarse]
    assert any(level == "warning" and message.startswith("The labels raster's pixels are 2.0x the image's (20 m "
                                                         "against 10 m)") for level, message in logs[coarse])
    assert [level for level, message in logs[utm34]] == ["info"]
    assert "in CRS (WGS 84 / UTM zone 34N (EPSG:32634); the image's: WGS 84 / UTM zone 33N" in logs[utm34][0][1]
