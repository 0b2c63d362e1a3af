"""The ``create-sample`` engine command: a stratified random sample of points from a classified raster,
ready for blind labelling, with its design stored beside it. Python API: ``create_sample(SampleOptions(...))``.

    python -m landcover_plugin.core.engine create-sample --classified map.tif --output sample.gpkg \\
        (--size 400 | --target-se 0.01 [--users-accuracy 0.8]) [--allocation recommended --min-per-class 50] \\
        [--min-distance 100] [--seed 1]

Strata are the map classes (Olofsson et al. 2014). Two passes over the raster, window by window, keep
memory bounded: the first counts the pixels of each class, the second finds the pixels drawn (the k-th
pixel of class c in reading order, for ranks drawn without replacement). Each point sits at its pixel's
centre. With a minimum distance, candidates are drawn in excess and accepted in their random order,
rarest class first, when far enough from every point accepted so far; a class that falls short draws more
(spacing.py).

The GeoPackage holds the point layer (``sample_id`` in random order, so ids do not give the strata away;
``map_class``; an empty ``reference_class`` to fill; ``note``), the class list (``landcover_classes``,
as the training layer has), and the design: a ``landcover_sample_design`` table (one row per class) and
the whole design as JSON in the layer's metadata item ``landcover_sample_design``.
"""
import json
import os

import numpy as np
from osgeo import ogr, osr

from ..assess.assess import _load_schema
from ..errors import BadInputError, Cancelled
from ..map_units import distance_unit
from ..options import check_bounds, parse_floats
from ..output_folder import file_in_place
from ..rasters import check_classified, open_raster, read
from ..schema import ClassInfo, default_colour
from .design import allocate, sample_size
from .options import DEFAULT_USERS_ACCURACY, SampleOptions
from .spacing import spaced_points

DESIGN_TABLE = "landcover_sample_design"
SCHEMA_TABLE = "landcover_classes"


def create_sample(options: SampleOptions, events) -> dict:
    """Draw the sample and write the GeoPackage; returns OUTPUT, SAMPLE_SIZE, SEED, DESIGN and CLASSES."""
    o = options
    classified = os.fspath(o.classified)
    if not os.path.isfile(classified):
        raise BadInputError(f"The classified raster {classified} does not exist. Choose an existing raster file.")
    output = _output_path(o.output, o.overwrite, classified)
    if o.size is None and o.target_se is None:
        raise BadInputError("Give the sample size, or a target standard error of overall accuracy (e.g. 0.01) "
                            "to compute it from.")
    if o.min_distance is not None and o.min_distance < 0:
        raise BadInputError(f"The minimum distance cannot be negative, got {o.min_distance}.")
    if o.block_size < 16:
        raise BadInputError("The block size must be at least 16 pixels.")
    check_bounds(o)
    schema, colour_table = _load_schema(o.classes, classified, events)
    seed = int(o.seed) if o.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    rng = np.random.default_rng(seed)
    with open_raster(classified, "classified raster") as src:
        check_classified(src, classified)
        windows = list(_windows(src.width, src.height, o.block_size))
        counts = _count(src, windows, events)
        strata = np.flatnonzero(counts)
        if strata.size == 0:
            raise BadInputError("The classified raster holds no class id (every pixel is 0 or no data): there "
                                "is nothing to sample. Choose a classified map.")
        pixels = counts[strata]
        total = _total_size(o, pixels, events)
        wanted = allocate(total, pixels, o.allocation, o.min_per_class)
        transform, crs_wkt = src.transform, src.crs.to_wkt() if src.crs else None
        classes = _classes(schema, colour_table, strata)
        _warn_thin(strata, wanted, classes, o, events)
        passes = []

        def locate(ranks, offsets):  # one pass over the raster; later ones for classes that fell short
            passes.append(len(passes) + 1)
            return _locate(src, windows, strata, ranks, offsets, events, passes[-1])

        chosen = spaced_points(locate, strata, pixels, wanted, rng, float(o.min_distance or 0.0), transform,
                               events, {i: c.name for i, c in classes.items()}, distance_unit(src.crs))
    order = rng.permutation(len(chosen))
    points = [chosen[i] for i in order]
    design = {"method": "stratified random (strata = map classes)", "allocation": o.allocation,
              "min_per_class": o.min_per_class if o.allocation == "recommended" else None,
              "target_se": o.target_se, "size_requested": int(total), "size": len(points), "seed": seed,
              "min_distance": float(o.min_distance or 0.0), "classified": os.path.abspath(classified),
              "pixels_total": int(pixels.sum()),
              "strata": [{"id": int(c), "name": classes[int(c)].name, "mapped_pixels": int(n),
                          "weight": float(n / pixels.sum()), "allocated": int(w),
                          "drawn": int(sum(1 for p in points if p[0] == c))}
                         for c, n, w in zip(strata, pixels, wanted)]}
    if o.target_se is not None and o.size is None:
        design["users_accuracy_anticipated"] = _users_accuracy(o.users_accuracy, len(strata)).tolist()
    _write(output, o.layer_name, crs_wkt, transform, points, list(classes.values()), design)
    events.progress(1.0, "written")
    events.info(f"Drew {len(points)} points ({o.allocation} allocation, seed {seed}): " + ", ".join(
        f"{s['name']} {s['drawn']}" for s in design["strata"]) + f". Written to {output}.")
    return {"OUTPUT": f"{output}|layername={o.layer_name}", "SAMPLE_SIZE": len(points), "SEED": seed,
            "DESIGN": design, "CLASSES": [{"id": c.id, "name": c.name, "colour": c.colour} for c in classes.values()],
            "LAYER_NAME": o.layer_name}


# -- inputs -----------------------------------------------------------------------------------------
def _output_path(path, overwrite, classified) -> str:
    path = os.path.abspath(os.fspath(path))
    if not path.lower().endswith(".gpkg"):
        raise BadInputError(f"The output {path} must be a GeoPackage: give a path ending in .gpkg.")
    if os.path.exists(path):
        if os.path.samefile(path, classified):
            raise BadInputError(f"The output {path} is the classified raster. Choose another output name.")
        if not overwrite:
            raise BadInputError(f"{path} already exists and may hold labelled points: it is not replaced. Choose "
                                "another file name, or delete the old file first if you no longer need it.")
    return path


def _warn_thin(strata, wanted, classes, o, events) -> None:
    """Warn when a class gets too few points for 'Assess accuracy': under 2 it gives no area estimate at all,
    under ``FEW_POINTS`` its figures are flagged unreliable."""
    from ..assess.area_report import FEW_POINTS  # noqa: PLC0415 - the threshold the report applies

    for limit, consequence in ((2, "'Assess accuracy' can then give no area estimates or confidence intervals "
                                   "(it needs at least 2 labelled points in every map class)"),
                               (FEW_POINTS, "their accuracies and areas will be flagged as unreliable")):
        thin = [f"{classes[int(c)].name} {int(n)}" for c, n in zip(strata, wanted) if n < limit]
        if thin:
            fix = ("raise the minimum points per class" if o.allocation == "recommended" else
                   "choose the recommended allocation with a minimum points per class (e.g. 50)")
            events.warning(f"Classes with fewer than {limit} points ({o.allocation} allocation): {', '.join(thin)}; "
                           f"{consequence}. For a sample that reports every class, {fix} or draw more points.")
            return


def _users_accuracy(text, count: int) -> np.ndarray:
    values = parse_floats(text, "Anticipated user's accuracies") or [DEFAULT_USERS_ACCURACY]
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise BadInputError(f"Give one anticipated user's accuracy for all classes, or one per mapped class "
                            f"({count}, in class-id order); got {len(values)}.")
    return np.array(values, dtype=np.float64)


def _total_size(o, pixels, events) -> int:
    if o.size is not None:
        if o.target_se is not None:
            events.warning("Both a sample size and a target standard error were given: the size is used.")
        if int(o.size) < 1:
            raise BadInputError(f"The sample size must be at least 1, got {o.size}.")
        return int(o.size)
    ua = _users_accuracy(o.users_accuracy, len(pixels))
    n = sample_size(pixels, ua, float(o.target_se), population=float(pixels.sum()))
    events.info(f"Sample size for a standard error of overall accuracy of {o.target_se:g} with anticipated "
                f"user's accuracies {', '.join(f'{u:g}' for u in ua)}: {n} points (Cochran; Olofsson et al. "
                "2014, eq. 13).")
    return n


def _classes(schema, colour_table, strata) -> dict:
    """{id: ClassInfo} of the schema's classes plus any mapped id it lacks."""
    classes = {c.id: c for c in schema} if schema is not None else {}
    for class_id in (int(c) for c in strata):
        if class_id not in classes:
            classes[class_id] = ClassInfo(class_id, f"class {class_id}",
                                          colour_table.get(class_id) or default_colour("", class_id - 1))
    return dict(sorted(classes.items()))


# -- reading ----------------------------------------------------------------------------------------
def _windows(width, height, block):
    from rasterio.windows import Window  # noqa: PLC0415
    for row in range(0, height, block):
        for col in range(0, width, block):
            yield Window(col, row, min(block, width - col), min(block, height - row))


def _class_ids(src, window) -> np.ndarray:
    """Band 1 in ``window`` with 0 wherever it is not a class (no data, 255, outside 1..254)."""
    data = read(src, 1, window=window).astype(np.int64)
    bad = (data < 1) | (data > 254)
    if src.nodata is not None:
        bad |= data == src.nodata
    data[bad] = 0
    return data


def _count(src, windows, events) -> np.ndarray:
    counts = np.zeros(255, dtype=np.int64)
    for number, window in enumerate(windows, 1):
        _check_cancel(events)
        events.progress(0.5 * number / len(windows), f"counting pixels, window {number}/{len(windows)}")
        counts += np.bincount(_class_ids(src, window).ravel(), minlength=255)[:255]
    counts[0] = 0
    return counts


def _locate(src, windows, strata, ranks, offsets, events, number: int = 1) -> list:
    """(class, priority, row, col) of the pixels with the drawn ranks (priority = the draw order, from the
    class's ``offsets``); ``number``: the pass (2 and more: more candidates for classes that fell short)."""
    sorted_ranks = [np.sort(r) for r in ranks]
    order_of = [{int(rank): i for i, rank in enumerate(r)} for r in ranks]  # rank -> its place in the draw
    seen = np.zeros(len(strata), dtype=np.int64)
    found = []
    start, span = (0.5, 0.45) if number == 1 else (0.95, 0.0)
    what = "finding the sample" if number == 1 else f"finding more candidates (pass {number})"
    for index, window in enumerate(windows, 1):
        _check_cancel(events)
        events.progress(start + span * index / len(windows), f"{what}, window {index}/{len(windows)}")
        data = _class_ids(src, window)
        for k, class_id in enumerate(strata):
            flat = np.flatnonzero(data == class_id)
            lo, hi = np.searchsorted(sorted_ranks[k], [seen[k], seen[k] + flat.size])
            for rank in sorted_ranks[k][lo:hi]:
                row, col = divmod(int(flat[rank - seen[k]]), data.shape[1])
                found.append((int(class_id), offsets[k] + order_of[k][int(rank)], int(window.row_off) + row,
                              int(window.col_off) + col))
            seen[k] += flat.size
    return found


def _check_cancel(events) -> None:
    if events.cancel_requested:
        raise Cancelled("Sampling cancelled: no output was written.")


# -- writing ----------------------------------------------------------------------------------------
def _write(path, layer_name, crs_wkt, transform, points, classes, design) -> None:
    """Write the GeoPackage under a temporary name, then rename it into place."""
    ogr.UseExceptions()
    with file_in_place(path, "the sample ", ".gpkg") as temporary:
        source = ogr.GetDriverByName("GPKG").CreateDataSource(temporary)
        layer = new_layer(source, layer_name, crs_wkt, ogr.wkbPoint,
                          [("sample_id", ogr.OFTInteger), ("map_class", ogr.OFTInteger),
                           ("reference_class", ogr.OFTInteger), ("note", ogr.OFTString)])
        layer.StartTransaction()
        for number, (class_id, x, y) in enumerate(points, 1):
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("sample_id", number)
            feature.SetField("map_class", class_id)
            point = ogr.Geometry(ogr.wkbPoint)
            point.AddPoint_2D(float(x), float(y))
            feature.SetGeometry(point)
            layer.CreateFeature(feature)
        layer.CommitTransaction()
        layer.SetMetadataItem(DESIGN_TABLE, json.dumps(design))
        write_table(source, SCHEMA_TABLE, [("id", ogr.OFTInteger), ("name", ogr.OFTString), ("colour", ogr.OFTString)],
               [[c.id, c.name, c.colour] for c in classes])
        write_table(source, DESIGN_TABLE, [("class_id", ogr.OFTInteger), ("class_name", ogr.OFTString),
                                      ("mapped_pixels", ogr.OFTInteger64), ("weight", ogr.OFTReal),
                                      ("allocated", ogr.OFTInteger), ("drawn", ogr.OFTInteger)],
               [[s["id"], s["name"], s["mapped_pixels"], s["weight"], s["allocated"], s["drawn"]]
                for s in design["strata"]])
        source = layer = None  # closes the file


def new_layer(source, name, crs_wkt, geometry_type, columns):
    """A layer of the GeoPackage ``source`` with columns [(name, OGR field type)], in ``crs_wkt`` (none: no CRS)."""
    srs = None
    if crs_wkt:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(crs_wkt)
    options = ["FID=fid", "GEOMETRY_NAME=geom"] if geometry_type != ogr.wkbNone else []
    layer = source.CreateLayer(name, srs, geometry_type, options)
    for column, kind in columns:
        layer.CreateField(ogr.FieldDefn(column, kind))
    return layer


def write_table(source, name, columns, rows) -> None:
    table = new_layer(source, name, None, ogr.wkbNone, columns)
    for row in rows:
        feature = ogr.Feature(table.GetLayerDefn())
        for (column, _), value in zip(columns, row):
            feature.SetField(column, value)
        table.CreateFeature(feature)
