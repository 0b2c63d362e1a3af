"""Where label chips come from: polygons rasterised per window, or a classified raster read per window.

Both sources give, for a window of the image grid, a uint8 array of class ids (0 = unlabelled), and
both settle the class schema first (given, stored with the data, or derived from the values), so that
values outside the schema are refused before anything is written.
"""
import math

import numpy as np
import rasterio
from affine import Affine
from rasterio import windows as rio_windows
from rasterio._err import CPLE_BaseError  # GDAL errors (e.g. no CRS transformation); not re-exported
from rasterio.enums import Resampling
from rasterio.features import rasterize
from rasterio.vrt import WarpedVRT

from ..class_files import find_sidecar, read_classes_json
from ..classified_raster import embedded_classes
from ..errors import BadInputError
from ..ground import ground_resolution
from ..kept_classes import keep_class_values
from ..map_units import distance_unit
from ..rasters import open_raster, read
from ..schema import MAX_CLASS_ID, MIN_CLASS_ID, ClassSchema
from ..vectors import (
    class_names_field,
    crs_name,
    geometry_bounds,
    geometry_parts,
    read_labelled_features,
    read_schema_table,
)


def _is_integer_like(value) -> bool:
    try:
        return float(str(value).strip()).is_integer()
    except ValueError:
        return False


def schema_from_values(values, what: str, names: dict = None, fix: str = "") -> ClassSchema:
    """A schema for label values without one: text names sorted (ids 1..n), or integer ids kept, named by
    ``names`` ({value as text: name}) where given, else 'class <id>'. ``fix``: what to do with ids outside
    1..254."""
    values = sorted({str(v).strip() for v in values})
    named = {int(float(k)): v for k, v in (names or {}).items() if _is_integer_like(k)}
    if values and all(_is_integer_like(v) for v in values):
        ids = sorted({int(float(v)) for v in values})
        bad = [i for i in ids if not MIN_CLASS_ID <= i <= MAX_CLASS_ID]
        if bad:
            raise BadInputError(f"{what} holds class values {bad}; class ids must be 1..254 (0 = unlabelled). "
                                f"{fix}")
        return ClassSchema.from_list([{"id": i, "name": named.get(i, f"class {i}")} for i in ids])
    if len(values) > MAX_CLASS_ID:
        raise BadInputError(f"{what} holds {len(values)} different values; at most 254 classes are possible. "
                            f"Choose the field that holds the class.")
    return ClassSchema.from_names(values)


def _without_class_zero(features: list, class_field: str, events) -> list:
    """The features whose class is not 0. Class 0 means "unlabelled" in every label chip and map, so no schema
    can name it: such features (often "none" in a land-cover layer) are skipped with a warning, as those with
    an empty class value are."""
    kept = [f for f in features if not (_is_integer_like(f[1]) and float(str(f[1]).strip()) == 0)]
    if len(kept) < len(features) and events is not None:
        events.warning(f"Skipped {len(features) - len(kept)} feature(s) whose {class_field!r} is 0: 0 means "
                       f"unlabelled, so they label nothing. Give them a class id of 1 to 254 if they are a class.")
    return kept


def _polygon_parts(features: list, path, events) -> list:
    """``(geometry, value, fid, part)`` for each polygon (or point) of the features: a multi-part feature gives
    one item per part (``part`` its number, else None), so chips are placed for every part, not for the first
    that a chip happens to hold. Lines label only the pixels along them, not the area they outline: a layer of
    lines is refused, and lines beside polygons are skipped with a warning. A point labels the one pixel it
    falls in (training points, e.g. a checked sample), which the log says."""
    parts, lines, kinds, points = [], 0, set(), 0
    for geometry, value, fid in features:
        areas, spots, others = geometry_parts(geometry)
        lines += bool(others)
        kinds.update(others)
        found = areas + spots
        points += bool(spots)
        parts += [(part, value, fid, number if len(found) > 1 else None) for number, part in enumerate(found)]
    kinds = "/".join(sorted(kinds))
    if lines and not parts:
        raise BadInputError(f"The labels layer {path} holds lines ({lines} feature(s) of type {kinds}), not polygons: "
                            f"a line labels only the pixels along it, not the area it outlines. Digitise training "
                            f"polygons, or turn closed outlines into polygons (Processing 'Lines to polygons') and "
                            f"choose that layer.")
    if lines and events is not None:
        events.warning(f"Skipped the lines of {lines} feature(s) ({kinds}): a line labels only the pixels along it, "
                       f"not an area, so only the polygons (and points) of the layer label pixels. Turn closed "
                       f"outlines into polygons (Processing 'Lines to polygons') if they are training areas.")
    if points and events is not None:
        events.info(f"{points} feature(s) are points: each labels only the one pixel it falls in. Digitise "
                    f"polygons (or buffer the points) to label the area around them.")
    return parts


SUBPIXEL_CHECK_PIXELS = 256  # polygons whose bounding box holds at most this many pixel centres are checked


def _on_the_raster(parts, image, events) -> list:
    """The polygon parts whose bounding box overlaps the raster: those off it label nothing, and counted they
    made classes, splits and advice about polygons that are not there (a validation share held out off the raster
    left no validation chip). A :class:`BadInputError` when none overlaps."""
    extent = window_envelope(rio_windows.Window(0, 0, image.width, image.height), image.transform)
    left, bottom, right, top = extent
    boxes = np.array([geometry_bounds(geometry) for geometry, _, _, _ in parts], dtype=np.float64)
    hits = (boxes[:, 0] < right) & (boxes[:, 2] > left) & (boxes[:, 1] < top) & (boxes[:, 3] > bottom)
    if not hits.any():
        box = boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()
        raise BadInputError(f"None of the {len(parts)} label polygons overlaps the raster: polygons span "
                            f"{_fmt_box(box)}, the raster {_fmt_box(extent)} (in the raster's CRS). "
                            f"Choose the polygons drawn on this raster, or check the layers' CRS.")
    if not hits.all() and events is not None:
        events.info(f"{int((~hits).sum())} of {len(parts)} label polygons lie off the raster: left out (their classes, "
                    f"the validation split and the advice below count only the polygons on the raster).")
    return [part for part, hit in zip(parts, hits) if hit]


class VectorLabels:
    """Polygons (any geometries) burnt into each window; later features win where they overlap.

    A pixel is labelled by the polygon that covers its centre. A polygon that covers no pixel centre (smaller
    than a pixel, or a sliver between centres) would label nothing and its class could vanish from training:
    it is burnt on every pixel it touches instead, over other polygons' labels (it is the analyst's detail).
    """

    kind = "vector"

    def __init__(self, path, class_field, image, schema=None, layer=None, fids=None, events=None, kept=None):
        if not class_field:
            raise BadInputError("Polygon labels need a class field: name the attribute that holds the class.")
        crs_wkt = image.crs.to_wkt() if image.crs else None
        features = read_labelled_features(path, class_field, crs_wkt, layer=layer, fids=fids, events=events)
        features = _without_class_zero(features, class_field, events)
        parts = _polygon_parts(features, path, events)
        if not parts:
            raise BadInputError(f"The labels layer {path} has no feature with a geometry and a value in "
                                f"{class_field!r}. Digitise some training polygons first.")
        parts = _on_the_raster(parts, image, events)
        values = {v for _, v, _, _ in parts}
        self.schema_origin = "given"
        if schema is None:
            stored = read_schema_table(path)
            sidecar = find_sidecar(path, folder_level=False)
            if stored:
                schema, self.schema_origin = ClassSchema.from_list(stored), "landcover_classes table"
            elif sidecar:
                schema, self.schema_origin = read_classes_json(sidecar), str(sidecar)
            else:
                field, names = class_names_field(path, class_field, layer) \
                    if all(_is_integer_like(v) for v in values) else (None, {})
                schema = schema_from_values(values, f"The field {class_field!r}", names,
                                            "Recode those features' classes into 1..254 (e.g. with the field "
                                            "calculator), or choose the field that holds the class.")
                self.schema_origin = f"values, named by the field {field!r}" if field else "values"
        self.schema = schema
        mapping, unknown = {}, []
        for value in sorted(values, key=str):
            try:
                mapping[value] = schema.id_for_value(value)
            except BadInputError:
                unknown.append(value)
        if unknown:
            raise BadInputError(f"The field {class_field!r} holds values that are not classes of the schema: "
                                f"{', '.join(repr(v) for v in unknown[:20])}. The schema has "
                                f"{', '.join(f'{c.id}={c.name}' for c in schema)}. Fix those features' values or "
                                f"add the classes to the schema.")
        self.kept = None  # the report of a class list to keep (kept_classes.py), when one is given
        if kept is not None:
            self.schema, ids, self.kept = keep_class_values(
                kept.schema, schema, all(_is_integer_like(v) for v in values),
                self.schema_origin != "values", set(mapping.values()), kept.source)
            mapping = {value: ids[class_id] for value, class_id in mapping.items()}
        # one shape per part of a multi-part feature, so that chip placement and the hold-out see each part
        self.shapes = [(geometry, mapping[value]) for geometry, value, _, _ in parts]
        self.fids = [fid for _, _, fid, _ in parts]
        self.parts = [part for _, _, _, part in parts]  # the part's number in its feature; None: single-part
        self.classes = np.array([class_id for _, class_id in self.shapes], dtype=np.uint8)
        self.boxes = np.array([geometry_bounds(g) for g, _ in self.shapes], dtype=np.float64)
        # The shapes in pixel coordinates of the whole grid, burnt into a window through a shift by whole pixels:
        # overlapping windows then agree on every pixel, also on a rotated grid, where each window's own
        # transform (rounded differently) flipped a pixel centre that lies on a polygon's edge.
        self.pixel_shapes = [_to_pixels(geometry, image.transform) for geometry, _ in self.shapes]
        self.touching = self._without_pixel_centres(image)
        if self.touching.any() and events is not None:
            events.info(f"{int(self.touching.sum())} polygon(s) cover no pixel centre (smaller than a pixel of "
                        f"{abs(image.res[0]):g} x {abs(image.res[1]):g}): each labels the pixels it touches, so "
                        f"none is dropped.")

    def _without_pixel_centres(self, image) -> np.ndarray:
        """Which polygons cover no pixel centre of the image grid (small ones checked: a polygon whose bounding
        box holds more than :data:`SUBPIXEL_CHECK_PIXELS` centres is taken to cover one)."""
        touching = np.zeros(len(self.shapes), dtype=bool)
        for i, box in enumerate(self.boxes):
            (row0, row1), (col0, col1) = box_pixel_span(box, image.transform, image.height, image.width)
            if row1 <= row0 or col1 <= col0 or (row1 - row0) * (col1 - col0) > SUBPIXEL_CHECK_PIXELS:
                continue  # outside the raster, or big enough to be taken to cover a pixel centre
            burnt = rasterize([(self.pixel_shapes[i], 1)], out_shape=(row1 - row0, col1 - col0), fill=0,
                              dtype=np.uint8, transform=Affine.translation(col0, row0))
            touching[i] = not burnt.any()
        return touching

    def has_labels(self, bounds) -> bool:
        left, bottom, right, top = bounds
        b = self.boxes
        return bool(((b[:, 0] < right) & (b[:, 2] > left) & (b[:, 1] < top) & (b[:, 3] > bottom)).any())

    def read(self, window, transform, bounds) -> np.ndarray:
        """Class ids of the window (0 = unlabelled)."""
        lut = np.concatenate([[0], self.classes]).astype(np.uint8)
        return lut[self.read_index(window, transform, bounds)]

    def read_index(self, window, transform, bounds) -> np.ndarray:
        """Which polygon labels each pixel of the window: its position in ``shapes`` + 1 (0 = none)."""
        left, bottom, right, top = bounds
        b = self.boxes
        hits = np.flatnonzero((b[:, 0] < right) & (b[:, 2] > left) & (b[:, 1] < top) & (b[:, 3] > bottom))
        shape = (int(window.height), int(window.width))
        if hits.size == 0:
            return np.zeros(shape, dtype=np.int32)
        shift = Affine.translation(int(window.col_off), int(window.row_off))  # the window in whole-grid pixels
        index = rasterize([(self.pixel_shapes[i], int(i) + 1) for i in hits], out_shape=shape, transform=shift,
                          fill=0, dtype=np.int32)
        small = hits[self.touching[hits]]
        if small.size:
            touched = rasterize([(self.pixel_shapes[i], int(i) + 1) for i in small], out_shape=shape,
                                transform=shift, fill=0, dtype=np.int32, all_touched=True)
            index = np.where(touched > 0, touched, index)
        return index

    def close(self):
        pass


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


def _to_pixels(geometry: dict, image_transform) -> dict:
    """A GeoJSON-like (single-part) geometry in pixel coordinates of the grid, computed as GDAL's rasteriser does
    (its inverse geotransform, its order of operations), so that burning it equals burning the geometry on the
    whole grid, to the last pixel whose centre lies on an edge."""
    from osgeo import gdal  # noqa: PLC0415 - lazy, as in vectors.py

    g0, g1, g2, g3, g4, g5 = gdal.InvGeoTransform(image_transform.to_gdal())

    def walk(coords):
        if coords and isinstance(coords[0], (int, float)):
            x, y = coords[0], coords[1]
            return (g0 + x * g1 + y * g2, g3 + x * g4 + y * g5)
        return [walk(item) for item in coords]

    return {"type": geometry["type"], "coordinates": walk(geometry["coordinates"])}


def window_envelope(window, transform) -> tuple:
    """``(minx, miny, maxx, maxy)`` of a window of a grid: the box around its four corners, so that it holds for
    north-up, bottom-up (positive y pixel size) and rotated grids alike. (rasterio's ``windows.bounds`` maps two
    corners only: on a bottom-up grid its "bottom" lies above its "top".)"""
    row0, col0 = window.row_off, window.col_off
    row1, col1 = row0 + window.height, col0 + window.width
    xs, ys = zip(*(transform * (col, row) for col, row in ((col0, row0), (col1, row0), (col1, row1), (col0, row1))))
    return min(xs), min(ys), max(xs), max(ys)


def box_pixel_span(box, transform, height: int, width: int) -> tuple:
    """``((row0, row1), (col0, col1))``: the rows and columns of a ``height`` x ``width`` grid that a box
    ``(minx, miny, maxx, maxy)`` reaches, clipped to the grid (empty when it misses it). The box's four corners
    go through the inverse transform, so this holds for north-up, bottom-up and rotated grids alike (rasterio's
    ``windows.from_bounds`` refuses a bottom-up grid)."""
    left, bottom, right, top = box
    inverse = ~transform
    cols, rows = zip(*(inverse * (x, y) for x, y in ((left, top), (right, top), (right, bottom), (left, bottom))))
    row0, row1 = max(0, math.floor(min(rows))), min(height, math.ceil(max(rows)))
    col0, col1 = max(0, math.floor(min(cols))), min(width, math.ceil(max(cols)))
    return (row0, max(row0, row1)), (col0, max(col0, col1))


def _fmt_box(box) -> str:
    return f"x {box[0]:.1f}..{box[2]:.1f}, y {box[1]:.1f}..{box[3]:.1f}"
