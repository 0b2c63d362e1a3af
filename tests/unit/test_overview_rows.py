"""Overviews built from the rows as they arrive, against GDAL's own BuildOverviews("NEAREST") on real labels."""
import numpy as np
import pytest
import rasterio
from osgeo import gdal
from rasterio.windows import Window

from landcover_plugin.core.overview_rows import NearestLevels, level_size


def gdal_nearest(labels: np.ndarray, factors, folder) -> list:
    """GDAL's NEAREST overview levels of ``labels``, built after the fact in a GeoTIFF."""
    path = str(folder / "reference.tif")
    dataset = gdal.GetDriverByName("GTiff").Create(path, labels.shape[1], labels.shape[0], 1, gdal.GDT_Byte)
    dataset.GetRasterBand(1).WriteArray(labels)
    dataset.BuildOverviews("NEAREST", factors)
    band = dataset.GetRasterBand(1)
    levels = [band.GetOverview(i).ReadAsArray() for i in range(band.GetOverviewCount())]
    band = dataset = None  # noqa: F841 - close before the folder goes
    return levels


@pytest.mark.parametrize("rows,cols,chunk,block", [(777, 1000, 100, 64), (1000, 515, 256, 256), (130, 97, 7, 16)])
def test_levels_equal_gdal_nearest_whatever_rows_arrive_together(shared_data, tmp_path, rows, cols, chunk, block):
    with rasterio.open(shared_data / "zion" / "nlcd2011_8class.tif") as src:
        labels = src.read(1, window=Window(13, 29, cols, rows))
    factors = [2, 4, 8, 16]
    written = {}

    def write(level, part, first_row):
        assert first_row == written.get(level, 0)  # in order, no gap, no row twice
        assert part.shape[0] % block == 0 or first_row + part.shape[0] == level_size(rows, cols, factors[level])[0]
        written[level] = first_row + part.shape[0]
        got[level].append(part)

    got = [[] for _ in factors]
    levels = NearestLevels(rows, cols, factors, write, block=block)
    for start in range(0, rows, chunk):
        levels.add(labels[start:start + chunk], start)
    levels.finish()
    expected = gdal_nearest(labels, factors, tmp_path)
    assert len(expected) == len(factors)
    for level, reference in enumerate(expected):
        np.testing.assert_array_equal(np.concatenate(got[level]), reference)


def test_a_level_that_misses_rows_is_refused():
    levels = NearestLevels(100, 100, [2], lambda *args: None)
    levels.add(np.zeros((50, 100), np.uint8), 0)
    with pytest.raises(RuntimeError, match="wrote 25 of 50 rows"):
        levels.finish()
