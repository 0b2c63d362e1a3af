"""Where label chips come from, and the polygon source: polygons rasterised per window (:class:`VectorLabels`).

Both sources, this one and a classified raster read per window (:class:`.raster_labels.RasterLabels`), give,
for a window of the image grid, a uint8 array of class ids (0 = unlabelled), and both settle the class schema
first (given, stored with the data, or derived from the values by :func:`schema_from_values`), so that values
outside the schema are refused before anything is written. Also here, for the polygons and the chip scan:
the box a window covers on the grid and the pixels a box reaches (:func:`window_envelope`,
:func:`box_pixel_span`).
"""
import math

import numpy as np
from affine import Affine
from rasterio import windows as rio_windows
from rasterio.features import rasterize

from ..class_files import find_sidecar, read_classes_json
from ..errors import BadInputError
from ..kept_classes import keep_class_values
from ..schema import MAX_CLASS_ID, MIN_CLASS_ID, ClassSchema, spelled_once
from ..vectors import (
    class_names_field,
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


def schema_from_values(values, what: str, names: dict = None, fix: str = "", events=None) -> ClassSchema:
    """A schema for label values without one: text names sorted (ids 1..n; spellings that differ only in case are
    one class, named by its most used spelling among ``values``, which may repeat, with a warning to ``events``),
    or integer ids kept, named by ``names`` ({value as text: name}) where given, else 'class <id>'. ``fix``: what
    to do with ids outside 1..254."""
    given = list(values)
    values = sorted({str(v).strip() for v in given})
    named = {int(float(k)): v for k, v in (names or {}).items() if _is_integer_like(k)}
    if values and all(_is_integer_like(v) for v in values):
        ids = sorted({int(float(v)) for v in values})
        bad = [i for i in ids if not MIN_CLASS_ID <= i <= MAX_CLASS_ID]
        if bad:
            raise BadInputError(f"{what} holds class values {bad}; class ids must be 1..254 (0 = unlabelled). "
                                f"{fix}")
        return ClassSchema.from_list([{"id": i, "name": named.get(i, f"class {i}")} for i in ids])
    values, variants = spelled_once(given)
    if len(values) > MAX_CLASS_ID:
        raise BadInputError(f"{what} holds {len(values)} different values; at most 254 classes are possible. "
                            f"Choose the field that holds the class.")
    if variants and events is not None:
        events.warning(f"{what} spells {len(variants)} class(es) in more than one way, differing only in case: "
                       + "; ".join(f"{' / '.join(repr(s) for s in spellings)} are taken as one class, {name!r}"
                                   for name, spellings in variants.items())
                       + " (the spelling most of its features use). Give each class one spelling (e.g. with the "
                         "field calculator) to silence this.")
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
                schema = schema_from_values([v for _, v, _, _ in parts], f"The field {class_field!r}", names,
                                            "Recode those features' classes into 1..254 (e.g. with the field "
                                            "calculator), or choose the field that holds the class.", events)
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
