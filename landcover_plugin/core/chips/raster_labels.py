"""Labels from a classified raster (e.g. a land-cover map), read per window on the image grid.

:class:`RasterLabels` gives, for a window of the image grid, a uint8 array of class ids (0 = unlabelled), as
:class:`.label_sources.VectorLabels` does for polygons. Its schema is settled first (given, a sidecar, the
raster's category names, or derived from the values) and values outside it are refused before anything is
written. A raster on another grid is read through a warped VRT by nearest neighbour.
"""
import math

import numpy as np
import rasterio
from rasterio import windows as rio_windows
from rasterio._err import CPLE_BaseError  # GDAL errors (e.g. no CRS transformation); not re-exported
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from ..class_files import find_sidecar, read_classes_json
from ..errors import BadInputError
from ..ground import ground_resolution
from ..kept_classes import keep_class_values
from ..map_units import distance_unit
from ..raster_classes import embedded_classes
from ..rasters import open_raster, read
from ..vectors import crs_name
from .label_sources import schema_from_values

COARSE_LABELS = 1.5  # labels pixels this many times the image's (side) or more: their blocky edges are warned of


def _tell_grid_difference(src, image, events) -> None:
    """Say how the labels raster's grid differs from the image's (CRS, pixel size, or only extent/alignment), and
    warn when its pixels are much coarser: the chips' class edges then follow the coarse grid."""
    parts, sides = [], None  # sides: the labels' and the image's pixel side, and their unit
    if src.crs != image.crs:
        parts.append(f"CRS ({crs_name(src.crs.to_wkt())}; the image's: {crs_name(image.crs.to_wkt())})")
        labels_m, image_m = ground_resolution(src), ground_resolution(image)
        if labels_m and image_m:
            sides = math.sqrt(labels_m[0] * labels_m[1]), math.sqrt(image_m[0] * image_m[1]), "m"
    else:
        sides = (math.sqrt(abs(src.res[0] * src.res[1])), math.sqrt(abs(image.res[0] * image.res[1])),
                 distance_unit(image.crs))
    ratio = sides[0] / sides[1] if sides else None
    sizes = f"{sides[0]:.3g} {sides[2]} against {sides[1]:.3g} {sides[2]}" if sides else ""
    if ratio is not None and abs(ratio - 1) > 0.01:
        parts.append(f"pixel size ({sizes})")
    if not parts:
        parts.append("extent or pixel alignment")
    events.info(f"The labels raster differs from the image in {' and '.join(parts)}: read on the image's grid by "
                f"nearest neighbour.")
    if ratio is not None and ratio >= COARSE_LABELS:
        events.warning(f"The labels raster's pixels are {ratio:.1f}x the image's ({sizes}): each label pixel covers "
                       f"about {ratio:.0f}x{ratio:.0f} image pixels, so the class edges in the chips follow its "
                       f"coarser grid and the model learns them so. Labels at the image's resolution, or polygons "
                       f"drawn on the image, give the map sharper edges.")


class RasterLabels:
    """A classified raster (e.g. a land-cover map) read on the image grid; resampled by nearest
    neighbour through a warped VRT when its grid differs. Its nodata (and NaN) become 0."""

    kind = "raster"

    def __init__(self, path, image, schema=None, events=None, kept=None):
        self._src = open_raster(path, "labels raster")
        self._reader = self._src
        self.kept = None  # the report of a class list to keep (kept_classes.py), when one is given
        try:
            self._open_on_image_grid(image, events)
            values = self._settle_schema(path, schema)
            if kept is not None:  # a raster holds the ids themselves: the list names them, never renumbers them
                self.schema, _, self.kept = keep_class_values(kept.schema, self.schema, True,
                                                              self.schema_origin != "values", set(values), kept.source)
        except BaseException:
            self.close()
            raise

    def _open_on_image_grid(self, image, events):
        src = self._src
        if src.count > 1 and events is not None:
            events.warning(f"The labels raster has {src.count} bands: only band 1 is used.")
        self.nodata = src.nodata
        if src.crs == image.crs and src.transform.almost_equals(image.transform) and src.shape == image.shape:
            return
        if (src.crs is None) != (image.crs is None):
            raise BadInputError("One of the image and the labels raster has no CRS, so they cannot be "
                                "aligned. Assign the right CRS to both.")
        try:
            self._reader = WarpedVRT(src, crs=image.crs, transform=image.transform, width=image.width,
                                     height=image.height, resampling=Resampling.nearest, tolerance=0.001,
                                     nodata=self.nodata if self.nodata is not None else 0)
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            raise BadInputError(f"The labels raster's CRS '{crs_name(src.crs.to_wkt())}' cannot be transformed into "
                                f"the image's CRS '{crs_name(image.crs.to_wkt())}'. Reproject one of them, or fix "
                                f"its CRS.") from exc
        if events is not None:
            _tell_grid_difference(src, image, events)

    def _settle_schema(self, path, schema):
        """Find the values on the image grid, the schema (given, sidecar, embedded or from the values),
        and refuse values outside it."""
        values = self._values_on_image_grid()
        self.schema_origin = "given"
        if schema is None:
            sidecar = find_sidecar(path, folder_level=True)
            embedded = embedded_classes(path)[0]
            if sidecar:
                schema, self.schema_origin = read_classes_json(sidecar), str(sidecar)
            elif embedded is not None:
                schema, self.schema_origin = embedded, "category names of the raster"
            elif values:
                schema, self.schema_origin = schema_from_values(values, "The labels raster", fix=(
                    "Reclassify those pixels into 1..254 (e.g. with 'Reclassify by table'), or set them to "
                    "nodata.")), "values"
        if not values:
            raise BadInputError(f"The labels raster {path} has no class pixel (all 0 or nodata) where it overlaps "
                                f"the image: it misses the raster. Choose labels that cover the image.")
        self.schema = schema
        unknown = sorted(set(values) - set(schema.ids))
        if unknown:
            origin = "" if self.schema_origin in ("given", "values") else f" (from {self.schema_origin})"
            raise BadInputError(f"The labels raster holds values {unknown[:20]} that are not classes of the "
                                f"schema{origin}: {', '.join(f'{c.id}={c.name}' for c in schema)}. Give a schema "
                                f"that lists every class, or set those pixels to nodata.")
        return values

    def _values_on_image_grid(self) -> list:
        """Class values present on the image grid (not 0, nodata or NaN), read in row strips."""
        reader, found = self._reader, set()
        rows = max(1, 4_000_000 // max(1, reader.width))
        for row in range(0, reader.height, rows):
            window = rio_windows.Window(0, row, reader.width, min(rows, reader.height - row))
            raw = self._raw(window)
            if raw.dtype.kind == "u" and raw.dtype.itemsize <= 2:
                values = np.flatnonzero(np.bincount(raw.ravel()))  # O(n), no sort
            else:
                values = np.unique(raw)
            found.update(values[values != 0].tolist())
        bad = [v for v in found if not float(v).is_integer()]
        if bad:
            raise BadInputError(f"The labels raster holds non-integer values (e.g. {bad[:5]}); class labels must "
                                f"be whole numbers 1..254.")
        return sorted(int(v) for v in found)

    def _raw(self, window) -> np.ndarray:
        data = read(self._reader, 1, window=window)
        invalid = np.zeros(data.shape, dtype=bool)
        if np.issubdtype(data.dtype, np.floating):
            invalid |= ~np.isfinite(data)
        if self.nodata is not None and not np.isnan(self.nodata):
            invalid |= data == self.nodata
        return np.where(invalid, 0, data)

    def has_labels(self, bounds) -> bool:
        return True

    def read(self, window, transform, bounds) -> np.ndarray:
        return self._raw(window).astype(np.uint8)

    def close(self):
        if self._reader is not self._src:
            self._reader.close()
        self._src.close()
