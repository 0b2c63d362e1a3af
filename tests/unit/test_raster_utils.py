import numpy as np
import pytest

from landcover_plugin.core.rasters import valid_mask


@pytest.mark.parametrize("nodata", [65535, 65535.0, np.uint16(65535)])
def test_integer_raster_nodata_given_as_int_or_float(nodata):
    data = np.array([[[1, 65535], [3, 4]], [[1, 2], [65535, 4]]], dtype=np.uint16)
    assert valid_mask(data, nodata).tolist() == [[True, False], [False, True]]


@pytest.mark.parametrize("nodata", [-9999, 0.5, None, float("nan")])
def test_nodata_the_dtype_cannot_hold_matches_nothing(nodata):
    data = np.zeros((2, 3, 3), dtype=np.uint8)
    assert valid_mask(data, nodata).all()


def test_float_raster_nan_and_nodata():
    data = np.array([[[1.0, np.nan], [-9999.0, 4.0]]], dtype=np.float32)
    assert valid_mask(data, -9999.0).tolist() == [[True, False], [False, True]]
    assert valid_mask(data, float("nan")).tolist() == [[True, False], [True, True]]
