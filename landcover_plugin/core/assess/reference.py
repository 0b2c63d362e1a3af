"""Reference data on the classified raster's grid, window by window (QGIS-free).

Accuracy is counted on the classified raster's pixel grid *extended* to cover the reference data
(same pixel size and alignment, offsets may be negative), so that reference pixels outside the
classified raster can be counted too. Two sources give reference class ids per window (0 = no
reference there):

- :class:`PolygonReference`: labelled geometries (already in the classified raster's CRS, with
  class ids) burnt with ``rasterio.features.rasterize`` per window; pixels where overlapping
  polygons of different classes meet are left out and counted.
- :class:`PointReference`: sample points (a probability sample, e.g. from "Create reference sample"):
  each point counts once, in the classified pixel it falls in, even when two points share a pixel.
- :class:`RasterReference`: a reference raster read directly when it shares the grid, otherwise
  resampled by nearest neighbour through a ``rasterio.vrt.WarpedVRT`` on the extended grid, read per
  window (GDAL warps only the blocks asked for).
"""
import math

import numpy as np
from affine import Affine
from rasterio.enums import MergeAlg, Resampling
from rasterio.features import rasterize
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from ..errors import BadInputError
from ..rasters import open_raster, read
from ..vectors import field_names, geometry_bounds, open_layer, read_labelled_features


def pixel_range(transform, bounds) -> tuple:
    """(col0, row0, col1, row1) of the pixels of ``transform``'s grid that cover ``bounds``."""
    inverse = ~transform
    xmin, ymin, xmax, ymax = bounds
    corners = [inverse * (x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
    cols = [c for c, _ in corners]
    rows = [r for _, r in corners]
    eps = 1e-6  # bounds that fall on pixel edges up to rounding must not add a pixel
    return (math.floor(min(cols) + eps), math.floor(min(rows) + eps),
            math.ceil(max(cols) - eps), math.ceil(max(rows) - eps))


def window_bounds(transform, window: Window) -> tuple:
    """(xmin, ymin, xmax, ymax) of a window (offsets may be negative)."""
    xs, ys = [], []
    for col in (window.col_off, window.col_off + window.width):
        for row in (window.row_off, window.row_off + window.height):
            x, y = transform * (col, row)
            xs.append(x)
            ys.append(y)
    return min(xs), min(ys), max(xs), max(ys)


def _extent(bounds) -> str:
    return ", ".join(f"{round(float(v), 4):.10g}" for v in bounds[:2]) + " to " + \
        ", ".join(f"{round(float(v), 4):.10g}" for v in bounds[2:])


def boxes_intersect(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class ExtendedGrid:
    """The classified raster's grid extended to the union with the reference footprint."""

    def __init__(self, transform, width: int, height: int, reference_bounds=None, max_pixels: int = 2 ** 34):
        if abs(transform.b) > 1e-12 or abs(transform.d) > 1e-12:
            raise BadInputError("The classified raster is rotated (its geotransform has rotation terms). "
                                "Warp it to a north-up grid first (Raster > Projections > Warp).")
        self.transform, self.width, self.height = transform, int(width), int(height)
        col0, row0, col1, row1 = 0, 0, self.width, self.height
        if reference_bounds is not None:
            rc0, rr0, rc1, rr1 = pixel_range(transform, reference_bounds)
            if not (rc0 < self.width and rc1 > 0 and rr0 < self.height and rr1 > 0):
                xmin, ymin, xmax, ymax = window_bounds(transform, Window(0, 0, self.width, self.height))
                raise BadInputError(
                    "The reference data does not overlap the classified raster at all (reference extent "
                    f"{_extent(reference_bounds)}, classified raster {_extent((xmin, ymin, xmax, ymax))}, in the "
                    "classified raster's CRS). Check the CRSs: a layer with a wrong CRS assigned lies elsewhere "
                    "(set the right one in Layer Properties > Source, or Raster > Projections > Assign "
                    "Projection), and choose reference data of the same area.")
            col0, row0, col1, row1 = min(col0, rc0), min(row0, rr0), max(col1, rc1), max(row1, rr1)
        if (col1 - col0) * (row1 - row0) > max_pixels:
            raise BadInputError("The reference data reaches far beyond the classified raster (more than "
                                f"{max_pixels:,} pixels at its resolution). Clip the reference data to the "
                                "classified raster's extent first.")
        self.col0, self.row0, self.col1, self.row1 = col0, row0, col1, row1

    def windows(self, block: int):
        """Windows of at most ``block`` x ``block`` pixels over the extended grid, row by row."""
        for row in range(self.row0, self.row1, block):
            for col in range(self.col0, self.col1, block):
                yield Window(col, row, min(block, self.col1 - col), min(block, self.row1 - row))

    def inside_part(self, window: Window):
        """``(raster_window, (row_slice, col_slice))``: the part of ``window`` inside the classified raster
        (as a window of it, and as slices of the window's array), or None when it lies wholly outside."""
        c0, r0 = max(window.col_off, 0), max(window.row_off, 0)
        c1 = min(window.col_off + window.width, self.width)
        r1 = min(window.row_off + window.height, self.height)
        if c0 >= c1 or r0 >= r1:
            return None
        slices = (slice(r0 - window.row_off, r1 - window.row_off), slice(c0 - window.col_off, c1 - window.col_off))
        return Window(c0, r0, c1 - c0, r1 - r0), slices


class PolygonReference:
    """Labelled geometries ``[(geojson_geometry, class_id), ...]`` in the classified raster's CRS."""

    kind = "polygons"

    def __init__(self, labelled):
        labelled = [(g, int(v)) for g, v in labelled]
        if not labelled:
            raise BadInputError("The reference layer has no feature with a geometry and a class value. "
                                "Choose a layer with labelled polygons.")
        self.shapes = labelled
        self.boxes = np.array([geometry_bounds(g) for g, _ in labelled], dtype=np.float64)
        self.bounds = (self.boxes[:, 0].min(), self.boxes[:, 1].min(), self.boxes[:, 2].max(), self.boxes[:, 3].max())
        self.conflicts = 0

    def intersects(self, box) -> bool:
        return bool(self._select(box).size)

    def _select(self, box) -> np.ndarray:
        b = self.boxes
        return np.flatnonzero((b[:, 0] < box[2]) & (box[0] < b[:, 2]) & (b[:, 1] < box[3]) & (box[1] < b[:, 3]))

    def read(self, window_transform, box, shape, window: Window = None) -> np.ndarray:  # noqa: ARG002
        """Class ids (uint8, 0 = no reference) on the window; overlaps of different classes become 0."""
        chosen = [self.shapes[i] for i in self._select(box)]
        if not chosen:
            return np.zeros(shape, dtype=np.uint8)
        ids = rasterize(chosen, out_shape=shape, transform=window_transform, fill=0, dtype=np.uint8)
        if len(chosen) > 1:
            count = rasterize(((g, 1) for g, _ in chosen), out_shape=shape, transform=window_transform,
                              fill=0, dtype=np.int32, merge_alg=MergeAlg.add)
            total = rasterize(chosen, out_shape=shape, transform=window_transform, fill=0, dtype=np.int32,
                              merge_alg=MergeAlg.add)
            conflict = (count > 1) & (total != count * ids.astype(np.int32))
            self.conflicts += int(conflict.sum())
            ids[conflict] = 0
        return ids

    def prepare(self, grid) -> None:
        pass

    def close(self):
        pass


def all_points(labelled) -> bool:
    """Whether every labelled geometry is a point or multipoint (a sample rather than polygons)."""
    return bool(labelled) and all(g.get("type") in ("Point", "MultiPoint") for g, _ in labelled)


class PointReference:
    """Labelled sample points ``[(Point or MultiPoint geometry, class_id), ...]`` in the classified
    raster's CRS; each point is one sample unit."""

    kind = "points"

    def __init__(self, labelled):
        xs, ys, ids = [], [], []
        for geometry, value in labelled:
            coords = [geometry["coordinates"]] if geometry["type"] == "Point" else geometry["coordinates"]
            for x, y, *_ in coords:
                xs.append(x)
                ys.append(y)
                ids.append(int(value))
        if not ids:
            raise BadInputError("The reference layer has no labelled point. Label the sample points first.")
        self.x, self.y = np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64)
        self.ids = np.array(ids, dtype=np.int64)
        self.bounds = (self.x.min(), self.y.min(), self.x.max(), self.y.max())
        self.conflicts = 0
        self.rows = self.cols = None

    def prepare(self, grid) -> None:
        cols, rows = ~grid.transform * (self.x, self.y)
        self.cols, self.rows = np.floor(cols).astype(np.int64), np.floor(rows).astype(np.int64)

    def intersects(self, box) -> bool:
        return bool(((self.x >= box[0]) & (self.x <= box[2]) & (self.y >= box[1]) & (self.y <= box[3])).any())

    def pairs(self, window: Window, classes: np.ndarray, within: np.ndarray) -> tuple:
        """``(reference ids, classified ids, outside, on_nodata)`` of the points in ``window``, given the
        window's classified ids (0 = no data) and where it lies inside the classified raster."""
        r = self.rows - int(window.row_off)
        c = self.cols - int(window.col_off)
        here = (r >= 0) & (r < classes.shape[0]) & (c >= 0) & (c < classes.shape[1])
        r, c, ids = r[here], c[here], self.ids[here]
        inside = within[r, c]
        mapped = classes[r, c]
        good = inside & (mapped > 0)
        return ids[good], mapped[good], int((~inside).sum()), int((inside & (mapped == 0)).sum())

    def close(self):
        pass


SAMPLE_MAP_FIELD = "map_class"  # what "Create reference sample" records: the stratum each point was drawn in
SAMPLE_REFERENCE_FIELD = "reference_class"  # ... and the field it leaves for the analyst to label


def point_layer(path, layer=None) -> bool:
    """Whether the vector layer holds points (a sample) rather than polygons."""
    from osgeo import ogr  # noqa: PLC0415 - GDAL's bindings only where needed, as in ..vectors

    source, lyr = open_layer(path, layer)
    kind = ogr.GT_Flatten(lyr.GetGeomType())
    del source
    return kind in (ogr.wkbPoint, ogr.wkbMultiPoint)


def map_class_mismatches(path, layer, crs_wkt, src) -> tuple:
    """``(checked, differ)``: sample points that carry a ``map_class`` (the stratum they were drawn in),
    and how many of them fall on a pixel of another class of the classified raster ``src`` (open
    rasterio dataset). (0, 0) when the layer has no such field."""
    source, lyr = open_layer(path, layer)
    has_field = SAMPLE_MAP_FIELD in field_names(lyr)
    del source
    if not has_field:
        return 0, 0
    points = [(g["coordinates"][:2], v) for g, v, _ in read_labelled_features(path, SAMPLE_MAP_FIELD, crs_wkt, layer)
              if g.get("type") == "Point"]
    if not points:
        return 0, 0
    values = [int(v[0]) for v in src.sample([xy for xy, _ in points], indexes=1)]
    differ = sum(1 for (_, stratum), value in zip(points, values) if int(float(stratum)) != value)
    return len(points), differ


class RasterReference:
    """A reference raster of class ids (1..254); 0, its nodata and NaN mean "no reference"."""

    kind = "raster"

    def __init__(self, path, dst_crs, dst_transform, dst_width, dst_height, events=None):
        self.src = src = open_raster(path, "reference raster")
        if not (np.issubdtype(np.dtype(src.dtypes[0]), np.integer) or
                np.issubdtype(np.dtype(src.dtypes[0]), np.floating)):
            raise BadInputError(f"The reference raster {path} has pixel type {src.dtypes[0]}; class ids must "
                                "be integers 1..254.")
        if src.crs is None and dst_crs is not None:
            raise BadInputError(f"The reference raster {path} has no CRS. Assign its CRS (Raster > Projections "
                                "> Assign Projection) and run again.")
        self.events, self.nodata = events, src.nodata
        self.same_grid = (src.crs == dst_crs and src.transform.almost_equals(dst_transform)
                          and (src.width, src.height) == (dst_width, dst_height))
        self.dst_crs = dst_crs
        self.is_float = np.issubdtype(np.dtype(src.dtypes[0]), np.floating)
        try:
            self.bounds = (tuple(src.bounds) if src.crs == dst_crs or dst_crs is None
                           else transform_bounds(src.crs, dst_crs, *src.bounds, densify_pts=21))
        except Exception as exc:  # noqa: BLE001 - PROJ errors have several types
            raise BadInputError(f"The reference raster's CRS ({src.crs}) cannot be transformed into the "
                                f"classified raster's CRS ({dst_crs}): {exc}. Reproject one of them.") from exc
        self.conflicts = 0
        self._warned_255 = False
        self.vrt = None

    def intersects(self, box) -> bool:
        return boxes_intersect(self.bounds, box)

    def prepare(self, grid: "ExtendedGrid") -> None:
        """Resample onto ``grid`` through a WarpedVRT (nearest neighbour) unless the grids are the same.

        The VRT's transformer error is 1/1000 of a pixel, so each classified pixel takes the reference
        pixel under its centre whatever the window size (GDAL's default 1/8 pixel moves about 0.5 % of
        boundary pixels, differently for different window sizes).
        """
        if self.same_grid:
            return
        src = self.src
        fill = src.nodata if src.nodata is not None else (np.nan if self.is_float else 0)
        self._offset = (grid.col0, grid.row0)
        self.vrt = WarpedVRT(src, crs=self.dst_crs or src.crs, resampling=Resampling.nearest, tolerance=0.001,
                             transform=grid.transform * Affine.translation(grid.col0, grid.row0),
                             width=grid.col1 - grid.col0, height=grid.row1 - grid.row0,
                             src_nodata=src.nodata, nodata=fill)

    def read(self, window_transform, box, shape, window: Window = None) -> np.ndarray:  # noqa: ARG002
        """Class ids (uint8, 0 = no reference) on ``window`` of the (extended) classified grid."""
        if self.vrt is None:
            data = read(self.src, 1, window=window)
        else:
            col0, row0 = self._offset
            data = read(self.vrt, 1, window=Window(window.col_off - col0, window.row_off - row0,
                                                  window.width, window.height))
        return self._to_ids(data)

    def _to_ids(self, data: np.ndarray) -> np.ndarray:
        # Compared by value: rasterio gives an integer raster's nodata as a float (255.0).
        valid = data != 0
        if self.is_float:
            valid &= np.isfinite(data)
        if self.nodata is not None and not np.isnan(self.nodata):
            valid &= data != self.nodata
        values = data[valid]
        if self.is_float and values.size and not np.all(values == np.round(values)):
            raise BadInputError("The reference raster holds fractional values; class ids must be whole "
                                "numbers 1..254. Reclassify it to integer class ids.")
        bad = values[(values < 1) | (values > 255)]
        if bad.size:
            raise BadInputError(f"The reference raster holds value {bad[0]!r}, which is not a class id "
                                "(1..254, 0 = no reference). Reclassify it to the classified raster's class "
                                "ids, or set its nodata value.")
        ids = np.zeros(data.shape, dtype=np.uint8)
        ids[valid] = values.astype(np.uint8)
        if not self._warned_255 and (ids == 255).any():
            self._warned_255 = True
            if self.events is not None:
                self.events.warning("The reference raster holds value 255, which is never a class: treated "
                                    "as no data. Set the raster's nodata value to silence this.")
        ids[ids == 255] = 0
        return ids

    def close(self):
        if self.vrt is not None:
            self.vrt.close()
        self.src.close()
