"""Bands of mixed pixel types and nodata values: Zion's red and NIR (uint16, nodata 65535) stacked in a virtual
raster with their NDVI (float32, nodata -9999 over a cloud-like block), as QGIS's 'Build virtual raster' with
'Place each input file into a separate band' makes it. Export stopped with a traceback ("more than one 'dtype'
found"); now chips and models take the bands as float32, each band's own nodata no data."""
import json

import numpy as np
import pytest
import rasterio
from classify_models import tiny_model_for_chips
from raster_stacks import zion_ndvi_stack

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.rasters import band_view, read

CLOUD = (slice(600, 700), slice(300, 400))  # rows, cols where only the NDVI band has no data


@pytest.fixture(scope="module")
def stack(shared_data, tmp_path_factory):
    return zion_ndvi_stack(shared_data, tmp_path_factory.mktemp("mixed"), CLOUD)


def test_mixed_bands_read_as_float32_with_each_bands_nodata_as_nan(stack):
    with rasterio.open(stack["path"]) as src:
        assert band_view(src) == ("float32", pytest.approx(float("nan"), nan_ok=True))
        assert band_view(src, [1, 2]) == ("uint16", 65535)  # bands alike: read as they are
        data = read(src)
        assert read(src, [1, 2]).dtype == np.uint16
    assert data.dtype == np.float32 and np.array_equal(np.isfinite(data).all(axis=0), stack["valid"])
    assert np.array_equal(data[0][stack["valid"]], stack["red"][stack["valid"]])  # uint16 values kept exactly
    assert np.isnan(data[2][CLOUD]).all() and np.isfinite(data[0][CLOUD]).all()  # one band's nodata, not all


@pytest.fixture(scope="module")
def dataset(stack, shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed_chips") / "chips"
    export_chips(ChipExportOptions(stack["path"], folder, labels_vector=shared_data / "zion" /
                                   "training_polygons_sparse.gpkg", class_field="class_id", chip_size=32))
    return json.loads((folder / "dataset.json").read_text()), folder


def test_chips_of_mixed_bands_are_float32_with_nan_for_no_data(dataset, stack):
    spec, folder = dataset
    assert spec["bands"]["dtype"] == "float32" and spec["nodata"] == "nan"
    valid = stack["valid"]
    assert spec["mean"][2] == pytest.approx(float(stack["ndvi"][valid].mean()), rel=1e-4)  # no -9999 in it
    with rasterio.open(folder / spec["chips"][0]["image"]) as chip:
        assert chip.dtypes == ("float32",) * 3 and np.isnan(chip.nodata)


def test_a_model_of_mixed_bands_classifies_them_without_a_pixel_type_warning(dataset, stack, tmp_path):
    spec, _ = dataset
    model = tiny_model_for_chips(spec, tmp_path / "m.onnx")
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(stack["path"], model, tmp_path / "map.tif"), events)
    with rasterio.open(result["OUTPUT"]) as src:
        mapped = src.read(1)
    assert np.array_equal(mapped > 0, stack["valid"])  # no data where any band has its own nodata, only there
    assert not [e for e in events.of_type("log") if "pixels are" in e["message"]]
