"""The ``suggest-areas`` engine command: N places to digitise next, where the model is least sure, spread
over the map. Python API: ``suggest_areas(SuggestOptions(...), events)``.

    python -m landcover_plugin.core.engine suggest-areas --uncertainty u.tif --classified map.tif \\
        [--confidence c.tif] --output suggestions.gpkg [--count 20] [--min-distance 1500]
    python -m landcover_plugin.core.engine suggest-areas --raster image.tif --model model.onnx --output s.gpkg

Two passes over the uncertainty raster keep memory bounded: a histogram of its values, then the pixels at
or above the value that leaves at least ``CANDIDATES_PER_PLACE`` candidates a place (at most
``MAX_CANDIDATES``: the most uncertain values are all kept, the least uncertain value kept is thinned at
random). Candidates are taken most uncertain first (ties in random order) when at least the minimum distance
from every place taken. A minimum distance the analyst gives is kept: as many places as fit, with a warning
naming the numbers and the fix. Only the automatic distance (none given) is halved while too few are found
(up to 4 times, never below a square's diagonal), and the log says so.

The output is a training-areas layer (DESIGN.md, the "Create training areas layer" schema): squares of
``size`` pixels in the raster's CRS with an empty class field for the analyst to fill (integer class ids, or
with ``class_values="names"`` text class names, for a training layer whose class field is text: squares pasted
into it keep their class), and hints:
``predicted_class`` and ``predicted_name`` (the map's class there), ``probability`` (percent, when a
confidence raster is given), ``uncertainty`` (percent) and ``rank`` (1 = most uncertain); plus the
``landcover_classes`` table. Edit the classes, then merge them into the training areas and retrain.
"""
import math
import os
import tempfile

import numpy as np
from osgeo import ogr
from rasterio.windows import Window

from ..errors import BadInputError, Cancelled
from ..map_units import distance_text, distance_unit
from ..options import check_bounds
from ..output_folder import file_in_place
from ..raster_classes import embedded_classes
from ..rasters import check_classified, check_written_as, open_raster, read
from ..sample.draw import SCHEMA_TABLE, new_layer, write_table
from .options import SuggestOptions

CANDIDATES_PER_PLACE = 50
MAX_CANDIDATES = 200_000
NODATA = 255
HINT_FIELDS = ("predicted_class", "predicted_name", "probability", "uncertainty", "rank")
RESERVED_FIELDS = ("fid", "geom")  # the GeoPackage's own columns


def suggest_areas(options: SuggestOptions, events) -> dict:
    """Write the suggestions; returns OUTPUT (``path|layername=...``), COUNT, MIN_DISTANCE, CLASS_FIELD, CLASS_VALUES
    (ids or names: what the class field holds) and CLASSES."""
    o = options
    _check_class_field(o.class_field, o.class_values)
    output = _output_path(o.output, o.overwrite, o.replace_unlabelled, o.layer_name, o.class_field)
    if o.count < 1 or o.size < 1:
        raise BadInputError("The number of places and the square size must be at least 1.")
    if o.min_distance is not None and o.min_distance < 0:
        raise BadInputError(f"The minimum distance cannot be negative, got {o.min_distance:g}: give 0 or more, or "
                            "leave it out for the automatic distance.")
    check_bounds(o)
    with tempfile.TemporaryDirectory(prefix="landcover_suggest_") as work:
        uncertainty, classified, confidence = _inputs(o, work, events)
        with open_raster(uncertainty, "uncertainty raster") as src:
            check_written_as(src, "uncertainty", uncertainty)
            if src.dtypes[0] != "uint8":
                raise BadInputError(f"The uncertainty raster {uncertainty} holds {src.dtypes[0]} values; give the "
                                    "uint8 uncertainty raster that 'Classify raster with model' writes.")
            others = [open_raster(p, what) for p, what in ((classified, "classified raster"),
                                                           (confidence, "confidence raster")) if p]
            try:
                if classified:
                    check_classified(others[0], classified)
                if confidence:
                    check_written_as(others[-1], "confidence", confidence)
                for other in others:
                    if (other.width, other.height) != (src.width, src.height) or \
                            not other.transform.almost_equals(src.transform):
                        raise BadInputError(f"{other.name} is not on the uncertainty raster's grid. Give the rasters "
                                            "written together by one 'Classify raster with model' run.")
                windows = [Window(c, r, min(o.block_size, src.width - c), min(o.block_size, src.height - r))
                           for r in range(0, src.height, o.block_size) for c in range(0, src.width, o.block_size)]
                histogram = _histogram(src, windows, events)
                valid = int(histogram.sum())
                if valid == 0:
                    raise BadInputError("The uncertainty raster is all no data: nothing to suggest.")
                threshold = _threshold(histogram, o.count * CANDIDATES_PER_PLACE)
                rng = np.random.default_rng(o.seed)
                keep = _keep_shares(histogram, threshold)
                candidates = _candidates(src, others, windows, threshold, keep, rng, bool(confidence), events)
                pixel = abs(src.transform.a)
                apart = o.size * max(pixel, abs(src.transform.e)) * math.sqrt(2)  # squares that never overlap
                unit = distance_unit(src.crs)
                given = _given_distance(o, apart, unit, events)
                distance = given
                if distance is None:  # automatic: may shrink (down to a square's diagonal) when too few fit
                    distance = max(0.5 * math.sqrt(valid * pixel * abs(src.transform.e) / o.count), apart)
                centres = [np.vectorize(_inside, otypes=[float])(candidates[axis] + 0.5, o.size / 2.0, extent)
                           for axis, extent in (("col", src.width), ("row", src.height))]  # as the squares lie
                # the analyst's distance is kept: as many places as fit, never closer
                places, used = _spread(candidates, o.count, float(distance), src.transform, rng,
                                       floor=apart if given is None else float(distance), centres=centres)
                crs_wkt = src.crs.to_wkt() if src.crs else None
                transform, shape = src.transform, (src.height, src.width)
            finally:
                for other in others:
                    other.close()
        schema, _colours = embedded_classes(classified) if classified else (None, {})
    names = {c.id: c.name for c in schema} if schema else {}
    _write(output, o, crs_wkt, transform, shape, places, names, schema)
    if not places:
        raise BadInputError("No place to suggest: the uncertainty raster has no valid pixel.")
    _tell_spacing(events, o, given is None, len(places), valid, float(distance), used, unit)
    events.info(f"Suggested {len(places)} places at least {distance_text(used, unit)} apart, uncertainty "
                f"{places[-1]['uncertainty']}..{places[0]['uncertainty']} % (of pixels: "
                f"{100 * histogram[threshold:].sum() / valid:.1f} % at or above {threshold} %). Written to {output}.")
    events.progress(1.0, "written")
    return {"OUTPUT": f"{output}|layername={o.layer_name}", "COUNT": len(places), "MIN_DISTANCE": used,
            "DISTANCE_UNIT": unit, "MIN_DISTANCE_TEXT": distance_text(used, unit),
            "LAYER_NAME": o.layer_name, "CLASS_FIELD": o.class_field, "CLASS_VALUES": o.class_values,
            "CLASSES": [{"id": c.id, "name": c.name, "colour": c.colour} for c in schema] if schema else []}


def _given_distance(o, apart: float, unit: str, events):
    """The analyst's minimum distance, or None for the automatic one: also for 0, as in the dialog ("empty or 0:
    automatic"). One under ``apart`` (a square's diagonal) would let squares overlap, which is never wanted: it is
    raised to ``apart``, and the log says so."""
    if not o.min_distance:
        return None
    if o.min_distance < apart:
        events.info(f"The minimum distance {distance_text(o.min_distance, unit)} would let {o.size} px squares "
                    f"overlap: {distance_text(apart, unit)} is used, the least at which they never do.")
        return apart
    return float(o.min_distance)


def _tell_spacing(events, o, automatic, placed, valid, planned, used, unit) -> None:
    """Warn when fewer places than asked were found, with the numbers and the fix; tell a shrunk automatic
    distance (an explicit one never shrinks)."""
    if automatic and used < planned:
        events.info(f"The automatic minimum distance, {distance_text(planned, unit)} (half the spacing of an even "
                    f"spread), was lowered to {distance_text(used, unit)} to fit more of the {o.count} places.")
    if placed >= o.count:
        return
    if valid < o.count:
        why = f"the uncertainty raster has only {valid} valid pixels: ask for fewer places"
    elif automatic:
        why = (f"no more fit at least {distance_text(used, unit)} apart, where their {o.size} px squares do not "
               f"overlap: ask for fewer places or smaller squares")
    else:
        why = (f"no more fit at the minimum distance you gave, {distance_text(used, unit)}, which is kept: give a "
               f"smaller minimum distance (or none, for the automatic one), or ask for fewer places")
    events.warning(f"Only {placed} places found of the {o.count} asked ({why}).")


# -- inputs -----------------------------------------------------------------------------------------
def _output_path(path, overwrite, replace_unlabelled=False, layer_name="suggested_areas",
                 class_field="class_id") -> str:
    """The output path; an existing file is replaced only with ``overwrite``, or with ``replace_unlabelled``
    when it is an earlier suggestions file none of whose squares has a class yet (nothing of the analyst's)."""
    path = os.path.abspath(os.fspath(path))
    if not path.lower().endswith(".gpkg"):
        raise BadInputError(f"The output {path} must be a GeoPackage: give a path ending in .gpkg.")
    if not os.path.exists(path) or overwrite:
        return path
    keep = "Choose another file name for the new suggestions, or delete the old file first if you no longer need it."
    if not replace_unlabelled:
        raise BadInputError(f"{path} already exists and may hold squares you labelled: it is not replaced. {keep}")
    why = _not_replaceable(path, layer_name, class_field)
    if why:
        raise BadInputError(f"{path} already exists and {why}: it is not replaced. {keep}")
    return path


def _not_replaceable(path, layer_name, class_field):
    """Why the existing ``path`` must be kept (None: an earlier suggestions file with no square labelled)."""
    try:
        source = ogr.Open(path)
    except RuntimeError:
        source = None
    if source is None:
        return "is not a GeoPackage of earlier suggestions"
    names = {source.GetLayer(i).GetName() for i in range(source.GetLayerCount())}
    others = sorted(names - {layer_name, SCHEMA_TABLE, "layer_styles"})
    layer = source.GetLayerByName(layer_name)
    if layer is None or others:
        return f"holds other layers ({', '.join(others or sorted(names)) or 'none'}), not only earlier suggestions"
    if layer.GetLayerDefn().GetFieldIndex(class_field) < 0:
        return f"its layer {layer_name} has no class field {class_field}"
    labelled = sum(1 for feature in layer if _labelled(feature.GetField(class_field)))
    if labelled:
        return f"{labelled} of its squares already have a class (your labelling)"
    return None


def _labelled(value) -> bool:
    """Whether a square's class value is the analyst's: NULL and 0 (an id field), an empty or blank text (a name
    field, as QGIS's form leaves it) are not, as export-chips also reads them."""
    if isinstance(value, str):
        return bool(value.strip())
    return value not in (None, 0)


def _check_class_field(class_field, class_values) -> None:
    """Refuse a class field the output cannot have: none, the GeoPackage's own columns or a hint's name."""
    if class_values not in ("ids", "names"):
        raise BadInputError(f"The class values must be 'ids' or 'names', got {class_values!r}.")
    name = (class_field or "").strip()
    if not name:
        raise BadInputError("Give the name of the class field (e.g. class_id, or your training layer's class field).")
    if name.lower() in RESERVED_FIELDS + HINT_FIELDS:
        what = "uses for its own columns" if name.lower() in RESERVED_FIELDS else "writes as a hint"
        raise BadInputError(f"'{class_field}' cannot be the class field: the suggestions layer {what} a field of "
                            f"that name. Choose another class field (e.g. class_id).")


def _inputs(o, work, events) -> tuple:
    """(uncertainty, classified, confidence) paths: given, or made by classifying --raster with --model."""
    if o.model or o.raster:
        if not (o.model and o.raster):
            raise BadInputError("To classify first, give both the raster and the model.")
        from ..classify.options import ClassifyOptions  # noqa: PLC0415 - onnxruntime only when needed
        from ..classify.run import classify_raster  # noqa: PLC0415
        events.info("Classifying the raster first, with the uncertainty raster.")
        result = classify_raster(ClassifyOptions(o.raster, o.model, os.path.join(work, "classes.tif"),
                                                 confidence=os.path.join(work, "confidence.tif"),
                                                 uncertainty=os.path.join(work, "uncertainty.tif"),
                                                 uncertainty_measure=o.measure), events)
        return result["UNCERTAINTY"], result["OUTPUT"], result["CONFIDENCE"]
    if not o.uncertainty:
        raise BadInputError("Give the uncertainty raster (from 'Classify raster with model'), or a raster and a "
                            "model to classify first.")
    for path in (o.uncertainty, o.classified, o.confidence):
        if path and not os.path.isfile(path):
            raise BadInputError(f"{path} does not exist. Choose an existing raster file.")
    return o.uncertainty, o.classified, o.confidence


# -- reading ----------------------------------------------------------------------------------------
def _check_cancel(events):
    if events.cancel_requested:
        raise Cancelled("Cancelled: no output was written.")


def _values(src, window) -> np.ndarray:
    data = read(src, 1, window=window)
    if src.nodata is not None and src.nodata != NODATA:
        data = np.where(data == src.nodata, NODATA, data)
    return np.where(data > 100, NODATA, data).astype(np.uint8)


def _histogram(src, windows, events) -> np.ndarray:
    histogram = np.zeros(101, dtype=np.int64)
    for number, window in enumerate(windows, 1):
        _check_cancel(events)
        events.progress(0.4 * number / len(windows), "reading the uncertainty")
        histogram += np.bincount(_values(src, window).ravel(), minlength=256)[:101]
    return histogram


def _threshold(histogram, wanted: int) -> int:
    """The highest value t with at least ``wanted`` pixels at or above it (0 when there are fewer)."""
    at_or_above = np.cumsum(histogram[::-1])[::-1]
    enough = np.flatnonzero(at_or_above >= wanted)
    return int(enough.max()) if enough.size else 0


def _keep_shares(histogram, threshold: int, most: int = MAX_CANDIDATES) -> np.ndarray:
    """The share of pixels to keep as candidates, by uncertainty value (0..255): every pixel of the highest values
    while they number at most ``most``, a random share of the next value to make up ``most``, none below it or
    below ``threshold``. (A uniform thinning of everything above ``threshold`` could drop pixels of 100 % and
    keep ones of 95 %.)"""
    shares = np.zeros(256, dtype=np.float64)
    taken = 0
    for value in range(100, threshold - 1, -1):
        count = int(histogram[value])
        if count == 0:
            continue
        shares[value] = min(1.0, (most - taken) / count)
        taken += count
        if taken >= most:
            break
    return shares


def _candidates(src, others, windows, threshold, keep, rng, has_confidence, events) -> dict:
    rows, cols, values, classes, probability = [], [], [], [], []
    for number, window in enumerate(windows, 1):
        _check_cancel(events)
        events.progress(0.4 + 0.5 * number / len(windows), "finding uncertain places")
        data = _values(src, window)
        r, c = np.nonzero((data >= threshold) & (data != NODATA))
        share = keep[data[r, c]]
        if (share < 1.0).any():
            chosen = rng.random(r.size) < share
            r, c = r[chosen], c[chosen]
        rows.append(r + int(window.row_off))
        cols.append(c + int(window.col_off))
        values.append(data[r, c])
        hints = [read(other, 1, window=window)[r, c] for other in others]
        classes.append(hints[0] if hints else np.zeros(r.size, np.uint8))
        probability.append(hints[1] if has_confidence and len(hints) > 1 else np.zeros(r.size, np.uint8))
    return {key: np.concatenate(parts) for key, parts in (("row", rows), ("col", cols), ("value", values),
                                                         ("class", classes), ("probability", probability))}


def _spread(c, count, distance, transform, rng, floor: float = 0.0, centres=None) -> tuple:
    """Most uncertain first (random among ties), each at least ``distance`` from those taken; the distance
    is halved (up to 4 times, never below ``floor``) while too few places are found. ``centres``: (col, row) of
    each candidate's square (default its pixel's centre). Returns (places, distance used)."""
    order = np.lexsort((rng.random(c["value"].size), -c["value"].astype(np.int64)))
    x, y = transform * (centres if centres is not None else (c["col"] + 0.5, c["row"] + 0.5))
    for attempt in range(5):
        if attempt:
            if distance <= floor:
                break
            distance = max(distance / 2, floor)
        taken, cells = [], {}
        for i in order:
            if len(taken) == count:
                break
            if distance > 0:
                cell = (int(x[i] // distance), int(y[i] // distance))
                near = (j for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                        for j in cells.get((cell[0] + dx, cell[1] + dy), ()))
                if any((x[i] - x[j]) ** 2 + (y[i] - y[j]) ** 2 < distance ** 2 for j in near):
                    continue
                cells.setdefault(cell, []).append(i)
            taken.append(i)
        if len(taken) == count or distance == 0:
            break
    places = [{"row": int(c["row"][i]), "col": int(c["col"][i]), "uncertainty": int(c["value"][i]),
               "class": int(c["class"][i]), "probability": int(c["probability"][i])} for i in taken]
    return places, distance


# -- writing ----------------------------------------------------------------------------------------
def _inside(centre: float, half: float, extent: int) -> float:
    """A square's centre (in pixels) moved just enough for the square to lie inside ``0..extent``: a place on
    an edge pixel gets a square that still covers it, not one sticking out of the raster."""
    if 2 * half >= extent:
        return extent / 2.0
    return min(max(centre, half), extent - half)


def _write(path, o, crs_wkt, transform, shape, places, names, schema) -> None:
    ogr.UseExceptions()
    half = o.size / 2.0
    with file_in_place(path, "", ".gpkg") as temporary:
        source = ogr.GetDriverByName("GPKG").CreateDataSource(temporary)
        class_kind = ogr.OFTString if o.class_values == "names" else ogr.OFTInteger
        layer = new_layer(source, o.layer_name, crs_wkt, ogr.wkbPolygon,
                          [(o.class_field, class_kind), ("predicted_class", ogr.OFTInteger),
                           ("predicted_name", ogr.OFTString), ("probability", ogr.OFTInteger),
                           ("uncertainty", ogr.OFTInteger), ("rank", ogr.OFTInteger)])
        for rank, place in enumerate(places, 1):
            feature = ogr.Feature(layer.GetLayerDefn())
            if place["class"]:
                feature.SetField("predicted_class", place["class"])
                feature.SetField("predicted_name", names.get(place["class"], f"class {place['class']}"))
            if o.confidence or o.model:
                feature.SetField("probability", place["probability"])
            feature.SetField("uncertainty", place["uncertainty"])
            feature.SetField("rank", rank)
            ring = ogr.Geometry(ogr.wkbLinearRing)
            col, row = _inside(place["col"] + 0.5, half, shape[1]), _inside(place["row"] + 0.5, half, shape[0])
            for dc, dr in ((-half, -half), (half, -half), (half, half), (-half, half), (-half, -half)):
                ring.AddPoint_2D(*(transform * (col + dc, row + dr)))
            polygon = ogr.Geometry(ogr.wkbPolygon)
            polygon.AddGeometry(ring)
            feature.SetGeometry(polygon)
            layer.CreateFeature(feature)
        if schema:
            write_table(source, SCHEMA_TABLE, [("id", ogr.OFTInteger), ("name", ogr.OFTString),
                                          ("colour", ogr.OFTString)], [[c.id, c.name, c.colour] for c in schema])
        source = layer = None
