"""Accuracy of a classified raster against reference polygons or a raster: the engine command ``assess``
and its Python API ``assess_accuracy(AssessOptions(...), events)``.

    python -m landcover_plugin.core.engine assess --classified map.tif \\
        (--reference-vector ref.gpkg --class-field class | --reference-raster ref.tif) \\
        [--classes classes.json] [--output-folder DIR] [--html report.html] [--table table.csv] [--json out.json]

Counts stream window by window on the classified raster's grid (extended to the reference data, so
reference pixels outside the raster are counted too; see :mod:`.reference`). Class names and
colours come from ``--classes`` or from the classified raster's category names and colour table.
Reference polygon values may be class names (any case) or ids. Writes a per-class CSV table, the
confusion matrix as CSV, everything as JSON and an HTML report with two PNG plots; every file is
written under a temporary name and renamed only when all of them are complete.
"""
import json
import os

import numpy as np
from rasterio.windows import transform as window_transform

from ..errors import BadInputError, Cancelled, write_failure
from ..options import check_bounds
from ..output_folder import partial_path
from ..raster_classes import embedded_classes
from ..rasters import check_written_as, open_raster, read
from ..schema import ClassInfo, ClassSchema, default_colour
from ..vectors import read_labelled_geometries
from .area_report import (
    FEW_MARK,
    FEW_POINTS,
    area_html,
    area_interval,
    area_section,
    plot_areas,
    shown,
    weight_by_area,
)
from .metrics import ConfusionCounter, metrics_from_confusion, to_jsonable
from .options import AssessOptions
from .reference import (
    SAMPLE_MAP_FIELD,
    SAMPLE_REFERENCE_FIELD,
    ExtendedGrid,
    PointReference,
    PolygonReference,
    RasterReference,
    all_points,
    map_class_mismatches,
    point_layer,
    window_bounds,
)
from .report import format_table, plot_confusion, plot_per_class, render_html, write_confusion_csv, write_table_csv

EARTH_RADIUS_M = 6371007.2  # authalic sphere, for areas in a geographic CRS


def assess_accuracy(options: AssessOptions, events) -> dict:
    """Assess ``options.classified`` against the reference; writes the report files, returns the outputs."""
    paths = _output_paths(options)
    classified = str(options.classified)
    if not os.path.isfile(classified):
        raise BadInputError(f"The classified raster {classified} does not exist. Choose an existing raster file.")
    if bool(options.reference_vector) == bool(options.reference_raster):
        raise BadInputError("Give exactly one reference: reference polygons (with their class field) or a "
                            "reference raster.")
    if options.reference_vector and not options.class_field:
        raise BadInputError("Reference polygons need a class field: choose the field holding class names or ids.")
    if options.block_size < 16:
        raise BadInputError("The block size must be at least 16 pixels.")
    check_bounds(options)
    classes_file = options.classes if options.classes and os.path.isfile(options.classes) else None
    inputs = {os.path.realpath(p) for p in (classified, options.reference_vector, options.reference_raster,
                                            classes_file) if p}
    for path in paths.values():
        if os.path.realpath(path) in inputs:
            raise BadInputError(f"The output {path} is one of the inputs. Choose another output name (in "
                                f"Processing the JSON results and the figures are named after the table and the "
                                f"HTML report).")

    schema, colour_table = _load_schema(options.classes, classified, events)
    with open_raster(classified, "classified raster") as src:
        check_written_as(src, "classified", classified)
        if not np.issubdtype(np.dtype(src.dtypes[0]), np.integer):
            raise BadInputError(f"The classified raster has pixel type {src.dtypes[0]}; it must hold integer "
                                "class ids (1..254, 0 = no data). Choose the classified map, not a confidence "
                                "or probability raster.")
        if src.count > 1:
            events.warning(f"The classified raster has {src.count} bands; band 1 is assessed.")
        area = _area_info(src.transform, src.crs, src.height)
        reference = _open_reference(options, src, schema, events)
        try:
            counts = _count(src, reference, options.block_size, area["row_area"], events)
        finally:
            reference.close()
        strata = (map_class_mismatches(options.reference_vector, options.layer, src.crs.to_wkt() if src.crs else None,
                                       src) if reference.kind == "points" else (0, 0))
    report = _build_report(options, counts, schema, colour_table, area, events)
    _note_strata(report, *strata, events)
    _write_outputs(report, paths)
    view = shown(report)  # the JSON keeps the count metrics; the report, log and outputs show the weighted ones
    events.info("Accuracy (rows = reference, columns = classified):\n" + format_table(view))
    events.info(_area_log(report))
    summary = view["summary"]
    return {"OUTPUT_HTML": paths["html"], "OUTPUT_TABLE": paths["table"], "OUTPUT_JSON": paths["json"],
            "OUTPUT_CONFUSION": paths["confusion"], "OA": summary["overall_accuracy"],
            "KAPPA": summary["kappa"], "MIOU": summary["mean_iou"], "PIXELS_ASSESSED": summary["pixels_assessed"],
            "OA_ESTIMATE": report["overall_accuracy_estimate"], "OA_CI95": report["overall_ci95"]}


def _note_strata(report, checked: int, differ: int, events) -> None:
    """Warn when sample points were drawn from another map: their recorded map_class is not this map's class."""
    report["sample_map_class_differs"] = {"points_checked": checked, "points_differ": differ}
    if not differ:
        return
    text = (f"{differ} of {checked} sample points lie on a pixel of another class than the map_class they were "
            "drawn from: the sample was drawn from another map (or the map changed). The area estimates take "
            "this map's classes as strata, which holds only for a sample drawn from this map: draw a new sample "
            "with 'Create reference sample' to report this map.")
    events.warning(text)
    if report["area_estimate_note"]:
        report["area_estimate_note"] = text + " " + report["area_estimate_note"]


def _area_log(report) -> str:
    rows = report["area_estimates"]
    if not rows:
        return report["area_estimate_note"]
    lines = [f"Estimated overall accuracy {100 * report['overall_accuracy_estimate']:.1f} % ± "
             f"{100 * report['overall_ci95']:.1f} (95 % CI). Error-adjusted areas:"]
    for r in rows:
        few = f" {FEW_MARK}" if "estimated_area" in r["unreliable"] else ""
        if r["estimated_area_ha"] is not None:
            lines.append(f"  {r['name']}: {area_interval(r, True)} ha (mapped {r['mapped_area_ha']:,.1f} ha){few}")
        else:
            lines.append(f"  {r['name']}: {area_interval(r, False)} pixels (mapped {r['mapped_pixels']:,}){few}")
    if any("estimated_area" in r["unreliable"] for r in rows):
        lines.append(f"{FEW_MARK}: from fewer than {FEW_POINTS} sample points, unreliable (see the report).")
    elif any(r["unreliable"] for r in rows):  # no area above is marked: say which figures the report marks
        lines.append(f"Some classes' accuracies rest on fewer than {FEW_POINTS} sample points: unreliable, marked "
                     f"{FEW_MARK} in the report.")
    return "\n".join(lines)


# -- inputs ---------------------------------------------------------------------------------------
def _output_paths(options) -> dict:
    explicit = [p for p in (options.html, options.table, options.json) if p]
    folder = options.output_folder or (os.path.dirname(os.path.abspath(explicit[0])) if explicit else None)
    if not folder:
        raise BadInputError("Give an output folder (or the paths of the HTML report, table or JSON file).")
    html = os.path.abspath(options.html or os.path.join(folder, "accuracy_report.html"))
    table = os.path.abspath(options.table or os.path.join(folder, "accuracy_table.csv"))
    stem = os.path.splitext(html)[0]
    return {"table": table, "confusion": os.path.splitext(table)[0] + "_confusion.csv",
            "json": os.path.abspath(options.json or os.path.join(folder, "accuracy.json")),
            "confusion_png": stem + "_confusion_matrix.png", "per_class_png": stem + "_per_class.png",
            "area_png": stem + "_areas.png",
            "html": html}


def _load_schema(classes_arg, classified, events):
    """(ClassSchema or None, {id: colour} from the raster's colour table). The class list comes from
    ``--classes``, else the classes the raster carries (the classifier's tag, or its category names)."""
    schema, colours = embedded_classes(classified, events)
    if not classes_arg:
        return schema, colours
    text = classes_arg
    if os.path.isfile(classes_arg):
        with open(classes_arg, encoding="utf-8") as f:
            text = f.read()
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(f"The class list is neither a JSON file nor JSON text ({exc}). Give "
                            "[{\"id\": 1, \"name\": \"water\", \"colour\": \"#1f78b4\"}, ...].") from exc
    if isinstance(items, dict):
        items = items.get("classes", [])
    return ClassSchema.from_list(items), colours


def _open_reference(options, src, schema, events):
    if options.reference_raster:
        return RasterReference(options.reference_raster, src.crs, src.transform, src.width, src.height, events)
    crs_wkt = src.crs.to_wkt() if src.crs else None
    labelled = read_labelled_geometries(options.reference_vector, options.class_field, crs_wkt, layer=options.layer,
                                        events=events)
    if not labelled and point_layer(options.reference_vector, options.layer):
        raise BadInputError(
            f"None of the reference points has a value in the field '{options.class_field}': nothing to assess. "
            f"Label the points first: set each point's reference class ({SAMPLE_REFERENCE_FIELD} in a sample from "
            "'Create reference sample') from imagery or field visits, then choose that field.")
    if all_points(labelled) and options.class_field.strip().lower() == SAMPLE_MAP_FIELD:
        raise BadInputError(
            f"The class field '{options.class_field}' holds the map class each sample point was drawn from "
            "(a copy of the map), not what is really there: assessed against it, the map always scores 100 %. "
            f"Label the points' reference class field ({SAMPLE_REFERENCE_FIELD}) from imagery or field visits, "
            f"then choose '{SAMPLE_REFERENCE_FIELD}' as the class field.")
    matched = _match_values(labelled, schema, events)
    return PointReference(matched) if all_points(matched) else PolygonReference(matched)


def _match_values(labelled, schema, events) -> list:
    """Reference values (names or ids) to class ids; numeric ids outside the class list are kept as
    extra classes, 0 means "no label" (skipped), unknown names are an error listing them all."""
    matched, unknown, unlabelled = [], set(), 0
    for geometry, value in labelled:
        if str(value).strip() in ("0", "0.0"):
            unlabelled += 1
            continue
        class_id = None
        if schema is not None:
            try:
                class_id = schema.id_for_value(value)
            except BadInputError:
                pass
        if class_id is None:
            try:
                number = float(str(value).strip())
            except ValueError:
                number = None
            if number is not None and number.is_integer() and 1 <= number <= 254:
                class_id = int(number)
        if class_id is None:
            unknown.add(str(value))
        else:
            matched.append((geometry, class_id))
    if unknown:
        known = ", ".join(f"{c.id}={c.name}" for c in schema) if schema else "none: the raster has no category names"
        raise BadInputError(f"Reference class values {', '.join(sorted(unknown)[:20])} match no class of the "
                            f"classified raster (classes: {known}). Choose the field holding the class names "
                            "or ids, or give the class list (id, name, colour) so names can be matched.")
    if unlabelled:
        events.warning(f"{unlabelled} reference feature(s) have class 0 (no label) and are left out.")
    return matched


# -- counting -------------------------------------------------------------------------------------
def _count(src, reference, block, row_area, events) -> dict:
    grid = ExtendedGrid(src.transform, src.width, src.height, reference.bounds)
    reference.prepare(grid)
    counter = ConfusionCounter()
    mapped = np.zeros(256, dtype=np.int64)
    mapped_area = np.zeros(256, dtype=np.float64)
    outside = on_nodata = 0
    nodata, warned_255 = src.nodata, False
    windows = list(grid.windows(block))
    for number, window in enumerate(windows, 1):
        if events.cancel_requested:
            raise Cancelled("Accuracy assessment cancelled: no output was written.")
        events.progress((number - 1) / len(windows), f"window {number}/{len(windows)}")
        inside = grid.inside_part(window)
        box = window_bounds(src.transform, window)
        has_reference = reference.intersects(box)
        if inside is None and not has_reference:
            continue
        shape = (int(window.height), int(window.width))
        classes = np.zeros(shape, dtype=np.uint8)
        within = np.zeros(shape, dtype=bool)
        if inside is not None:
            raster_window, slices = inside
            data = read(src, 1, window=raster_window)
            valid = _classified_valid(data, nodata)
            if not warned_255 and nodata != 255 and (data == 255).any():
                warned_255 = True
                events.warning("The classified raster holds value 255, which is never a class: treated as no data.")
            values = data[valid].astype(np.int64)
            classes[slices][valid] = values
            within[slices] = True
            mapped += np.bincount(values, minlength=256)
            rows = np.arange(raster_window.row_off, raster_window.row_off + raster_window.height)
            weights = np.broadcast_to(row_area[rows][:, None], data.shape)[valid]
            mapped_area += np.bincount(values, weights=weights, minlength=256)
        if not has_reference:
            continue
        if reference.kind == "points":  # each sample point counts once, in the pixel it falls in
            ids, mapped_ids, point_outside, point_nodata = reference.pairs(window, classes, within)
            outside += point_outside
            on_nodata += point_nodata
            counter.update(ids, mapped_ids)
            continue
        ids = reference.read(window_transform(window, src.transform), box, shape, window=window)
        has_ref = ids > 0
        outside += int((has_ref & ~within).sum())
        on_nodata += int((has_ref & within & (classes == 0)).sum())
        pair = has_ref & (classes > 0)
        counter.update(ids[pair], classes[pair])
    events.progress(1.0, "counted")
    return {"counter": counter, "mapped": mapped, "mapped_area": mapped_area, "outside": outside,
            "on_nodata": on_nodata, "conflicts": reference.conflicts, "reference_kind": reference.kind}


def _classified_valid(data: np.ndarray, nodata) -> np.ndarray:
    valid = data != 0
    if nodata is not None:
        valid &= data != nodata
    bad = data[valid & ((data < 0) | (data > 255))]
    if bad.size:
        raise BadInputError(f"The classified raster holds value {bad[0]}, which is not a class id (1..254). "
                            "Choose a classified map with class ids 1..254 and 0 as no data.")
    return valid & (data != 255)  # 255 is never a class (DESIGN.md): treated as no data


def _area_info(transform, crs, height) -> dict:
    """Pixel area per row: square metres (unit "ha" in reports) in a projected or geographic CRS,
    else squared map units."""
    rows = np.arange(height, dtype=np.float64)
    flat = abs(transform.a * transform.e - transform.b * transform.d)
    if crs is not None and crs.is_geographic:
        top = np.radians(transform.f + transform.e * rows)
        bottom = np.radians(transform.f + transform.e * (rows + 1))
        row_area = EARTH_RADIUS_M ** 2 * np.radians(abs(transform.a)) * np.abs(np.sin(top) - np.sin(bottom))
        return {"row_area": row_area, "unit": "ha", "to_unit": 1e-4,
                "note": "The raster is in a geographic CRS: pixel areas are computed per row on a sphere "
                        "(approximate to about 0.5 %)."}
    factor = None
    if crs is not None:
        try:
            factor = crs.linear_units_factor[1]
        except Exception:  # noqa: BLE001 - a CRS without linear units
            factor = None
    if factor:
        return {"row_area": np.full(height, flat * factor ** 2), "unit": "ha", "to_unit": 1e-4,
                "note": f"Pixel area {flat * factor ** 2:g} m² from the raster's transform."}
    return {"row_area": np.full(height, flat), "unit": "map units²", "to_unit": 1.0,
            "note": "The raster has no CRS with known linear units: areas are in squared map units, not hectares."}


# -- results --------------------------------------------------------------------------------------
def _build_report(options, counts, schema, colour_table, area, events) -> dict:
    counter, mapped = counts["counter"], counts["mapped"]
    present = counter.present_ids()
    classes = list(schema) if schema is not None else []
    known = {c.id for c in classes}
    extra = sorted((set(present) | {int(i) for i in np.flatnonzero(mapped) if 0 < i < 255}) - known)
    if extra and schema is not None:
        events.warning(f"Values {', '.join(map(str, extra))} are not in the class list; they are reported as "
                       "'class <id>'.")
    classes += [ClassInfo(i, f"class {i}", colour_table.get(i) or default_colour("", i - 1)) for i in extra]
    cm_ids = [c.id for c in classes if c.id in set(present)]
    if not cm_ids:
        raise BadInputError(
            f"No reference pixel falls on a classified pixel ({counts['outside']} reference pixels lie outside "
            f"the classified raster, {counts['on_nodata']} on its no-data). Check that the reference data and "
            "the classified raster cover the same area and that their CRSs are right.")
    cm = counter.matrix(cm_ids)
    m = metrics_from_confusion(cm)
    index = {class_id: k for k, class_id in enumerate(cm_ids)}
    rows = []
    for c in classes:
        k = index.get(c.id)
        pick = (lambda name: m[name][k] if k is not None else float("nan"))  # noqa: E731
        rows.append({"id": c.id, "name": c.name, "colour": c.colour,
                     "reference_pixels": int(m["reference_totals"][k]) if k is not None else 0,
                     "classified_pixels": int(m["classified_totals"][k]) if k is not None else 0,
                     "precision": pick("precision"), "recall": pick("recall"), "f1": pick("f1"),
                     "iou": pick("iou"), "mapped_pixels": int(mapped[c.id]),
                     "mapped_area": float(counts["mapped_area"][c.id] * area["to_unit"])})
    assessed = int(m["n"])
    report = {
        "schema_version": 1,
        "inputs": {"classified": os.path.abspath(options.classified),
                   "reference": options.reference_source or os.path.abspath(options.reference_vector
                                                                            or options.reference_raster),
                   "reference_kind": counts["reference_kind"], "class_field": options.class_field},
        "convention": "confusion matrix rows = reference classes, columns = classified classes; "
                      "precision = user's accuracy, recall = producer's accuracy",
        "summary": {"pixels_assessed": assessed, "overall_accuracy": m["overall_accuracy"],
                    "kappa": m["kappa"], "mean_iou": m["mean_iou"], "macro_f1": m["macro_f1"]},
        "left_out": {"outside_classified_raster": counts["outside"],
                     "on_classified_nodata": counts["on_nodata"],
                     "overlapping_polygons_disagree": counts["conflicts"],
                     "classified_pixels_without_reference": int(mapped.sum()) - assessed},
        "area": {"unit": area["unit"], "note": area["note"]},
        "classes": rows,
        "confusion_matrix": {"class_ids": cm_ids, "names": [classes[[c.id for c in classes].index(i)].name
                                                            for i in cm_ids],
                             "counts": cm, "row_shares": m["row_shares"], "column_shares": m["column_shares"]},
    }
    report.update(area_section(counts["reference_kind"], rows, cm_ids, cm, mapped,
                               counts["mapped_area"] * area["to_unit"], area))
    weight_by_area(report)
    return to_jsonable(report)


def _write_outputs(report: dict, paths: dict) -> None:
    """Write every output under a temporary name, then rename them all (the HTML last). The JSON is ``report``
    (DESIGN.md's contract), the others show :func:`shown`'s figures."""
    staged, placed, data, report = [], [], report, shown(report)
    try:
        for path in paths.values():
            os.makedirs(os.path.dirname(path), exist_ok=True)
        writers = [("table", lambda f: write_table_csv(report, f)),
                   ("confusion", lambda f: write_confusion_csv(report, f)),
                   ("json", lambda f: _write_text(f, json.dumps(data, indent=1))),
                   ("confusion_png", lambda f: plot_confusion(report, f)),
                   ("per_class_png", lambda f: plot_per_class(report, f)),
                   ("html", lambda f: _write_text(f, render_html(
                       report, os.path.basename(paths["confusion_png"]), os.path.basename(paths["per_class_png"]),
                       area_html(report, os.path.basename(paths["area_png"]) if report["area_estimates"] else None))))]
        if report["area_estimates"]:
            writers.insert(-1, ("area_png", lambda f: plot_areas(report, f)))
        for key, write in writers:
            temporary = partial_path(paths[key], os.path.splitext(paths[key])[1])  # hidden, this run's own
            staged.append((temporary, paths[key]))
            write(temporary)
        for temporary, final in staged:
            os.replace(temporary, final)
            placed.append(final)
    except OSError as exc:
        for final in placed:  # half a report set (a rename failed after others): none, as the message says
            os.remove(final)
        where = next((final for temporary, final in staged if temporary == exc.filename), exc.filename) \
            or os.path.dirname(paths["html"])
        reason = write_failure(exc, os.path.dirname(where))
        raise BadInputError(f"Cannot write the accuracy report: {reason} ({where}). Choose an output folder you can "
                            f"write to; no report file was left there.") from exc
    finally:
        for temporary, _ in staged:
            if os.path.exists(temporary):
                os.remove(temporary)


def _write_text(path, text) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
