"""A raster opened for chip export, seen through a band selection (only those bands, in that order)."""
from ..band_choice import check_band_numbers
from ..band_kinds import band_names
from ..rasters import band_view, read


class BandSubset:
    """Wraps an open rasterio dataset: ``count``, ``dtypes``, ``nodata``, ``descriptions`` and ``read`` give only
    the chosen bands, in the chosen order, in one pixel type (:func:`..rasters.band_view`); everything else (grid,
    CRS, masks) is the dataset's. ``source_bands`` are the chosen 1-based band numbers; a band's name is its
    description or colour (:func:`..band_kinds.band_names`), else its source number ('band 3')."""

    def __init__(self, dataset, bands=None):
        self._dataset = dataset
        self.source_count = dataset.count
        self.source_bands = check_band_numbers(bands, dataset.count) if bands else list(range(1, dataset.count + 1))
        self.count = len(self.source_bands)
        dtype, self.nodata = band_view(dataset, self.source_bands)  # bands of mixed types: float32, NaN
        self.dtypes, self.nodatavals = (dtype,) * self.count, (self.nodata,) * self.count
        names = band_names(dataset)
        self.descriptions = tuple(names[b - 1] or f"band {b}" for b in self.source_bands)

    def read(self, indexes=None, **kwargs):
        return read(self._dataset, self.source_bands if indexes is None else indexes, **kwargs)

    def __getattr__(self, name):
        return getattr(self._dataset, name)
