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

Here: the command's checks of its options and inputs (output paths, the class list, the reference data and its
values) and its log. The counting is in :mod:`.counting`, the report and its files in :mod:`.results`.
"""
import json
import os

import numpy as np

from ..errors import BadInputError
from ..model import map_record
from ..options import check_bounds
from ..raster_classes import embedded_classes
from ..rasters import check_classified, open_raster
from ..schema import ClassSchema
from ..vectors import read_labelled_geometries
from .area_report import FEW_MARK, FEW_POINTS, area_interval, shown
from .counting import _area_info, _count
from .options import AssessOptions
from .reference import (
    SAMPLE_MAP_FIELD,
    SAMPLE_REFERENCE_FIELD,
    PointReference,
    PolygonReference,
    RasterReference,
    all_points,
    map_class_mismatches,
    point_layer,
)
from .report import format_table
from .results import _build_report, _write_outputs
from .training_pixels import TrainingPixels
from .training_pixels import summary as training_summary


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
        check_classified(src, classified)
        if src.count > 1:
            events.warning(f"The classified raster has {src.count} bands; band 1 is assessed.")
        area = _area_info(src.transform, src.crs, src.height)
        reference = _open_reference(options, src, schema, events)
        record = map_record.from_tags(src.tags())  # the model that made the map, where it says
        training = None if reference.kind == "points" else TrainingPixels.from_record(record, src.crs)
        try:
            counts = _count(src, reference, options.block_size, area["row_area"], events, training)
        finally:
            reference.close()
        strata = (map_class_mismatches(options.reference_vector, options.layer, src.crs.to_wkt() if src.crs else None,
                                       src) if reference.kind == "points" else (0, 0))
    report = _build_report(options, counts, schema, colour_table, area, events)
    _note_strata(report, *strata, events)
    if counts["on_training"] is not None:
        cm = counts["counter"].counts
        report["reference_on_training_pixels"] = training_summary(
            *counts["on_training"], int(cm[1:255, 1:255].sum()), int(np.trace(cm[1:255, 1:255])), training.folder)
    view = shown(report)  # the JSON keeps the count metrics; the report, log and outputs show the weighted ones
    report["trainer_estimate"] = map_record.comparison(
        record, report["inputs"]["reference_kind"],
        {"overall_accuracy": view["summary"]["overall_accuracy"], "mean_iou": view["summary"]["mean_iou"],
         "ci95": report["overall_ci95"]})
    _write_outputs(report, paths)
    if (report.get("reference_on_training_pixels") or {}).get("warning"):
        events.warning(report["reference_on_training_pixels"]["warning"])
    events.info("Accuracy (rows = reference, columns = classified):\n" + format_table(view))
    events.info(_area_log(report))
    if report["trainer_estimate"]:
        events.info(report["trainer_estimate"]["text"])
    summary = view["summary"]
    return {"OUTPUT_HTML": paths["html"], "OUTPUT_TABLE": paths["table"], "OUTPUT_JSON": paths["json"],
            "OUTPUT_CONFUSION": paths["confusion"], "OA": summary["overall_accuracy"],
            "KAPPA": summary["kappa"], "MIOU": summary["mean_iou"], "PIXELS_ASSESSED": summary["pixels_assessed"],
            "OA_ESTIMATE": report["overall_accuracy_estimate"], "OA_CI95": report["overall_ci95"],
            "TRAINER_OA": (report["trainer_estimate"] or {}).get("trainer_overall_accuracy"),
            "TRAINING_PIXEL_SHARE": (report.get("reference_on_training_pixels") or {}).get("share")}


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
