"""The assessment's results (run by :mod:`.assess`): the report built from the counts (:func:`_build_report`,
the JSON contract of DESIGN.md) and every output file written from it, all or none (:func:`_write_outputs`).
"""
import json
import os

import numpy as np

from ..errors import BadInputError, write_failure
from ..output_folder import partial_path
from ..schema import ClassInfo, default_colour
from .area_report import area_html, area_section, plot_areas, shown, weight_by_area
from .metrics import metrics_from_confusion, to_jsonable
from .report import plot_confusion, plot_per_class, render_html, write_confusion_csv, write_table_csv


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
