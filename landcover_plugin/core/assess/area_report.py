"""The area-estimate part of the accuracy report: JSON entries, a bar chart with error bars and HTML.

Built only from a sample of points (a probability sample, stratified by map class or simple random):
the estimators of :mod:`.area_estimate` with strata = the classified raster's classes and stratum sizes
= their mapped areas over the whole raster. Polygons and rasters are not a probability sample, so the
report says why it gives no area estimate for them.
"""

import numpy as np

from ..errors import BadInputError
from ..html_cells import escape
from .area_estimate import stratified_estimates
from .metrics import metrics_from_confusion

NOT_A_SAMPLE = {
    "polygons": "No error-adjusted area estimate: reference polygons are not a probability sample of the "
                "map (analysts place them where classes are clear), so they cannot give unbiased areas or "
                "confidence intervals; for the same reason the accuracy above is of the places they cover, not of "
                "the whole map (usually less accurate, in its mixed places). Use 'Create reference sample' and "
                "label its points for the map's accuracy and area estimates.",
    "raster": "No error-adjusted area estimate: the reference raster is used as a census of the pixels it "
              "covers, not as a probability sample. Areas with confidence intervals need labelled sample "
              "points (see 'Create reference sample').",
}


def area_section(reference_kind: str, class_rows: list, cm_ids: list, cm, mapped, mapped_area,
                 area: dict) -> dict:
    """The report's keys ``area_estimates``, ``overall_accuracy_estimate``, ``overall_ci95``,
    ``area_estimate_note`` and ``area_proportions`` (None where no estimate is given).

    ``cm``: the sample confusion matrix over ``cm_ids`` (rows reference, columns classified);
    ``mapped``/``mapped_area``: pixels and area (in ``area["unit"]``) of every value 0..255 on the whole
    classified raster.
    """
    empty = {"area_estimates": None, "overall_accuracy_estimate": None, "overall_ci95": None,
             "area_proportions": None}
    if reference_kind != "points":
        return {**empty, "area_estimate_note": NOT_A_SAMPLE.get(reference_kind, NOT_A_SAMPLE["raster"])}
    by_id = {r["id"]: r for r in class_rows}
    ids = sorted(set(cm_ids) | {i for i in by_id if mapped[i] > 0})
    position = {class_id: k for k, class_id in enumerate(cm_ids)}
    sample = np.zeros((len(ids), len(ids)), dtype=np.int64)  # rows map class, columns reference
    for a, map_id in enumerate(ids):
        for b, ref_id in enumerate(ids):
            if map_id in position and ref_id in position:
                sample[a, b] = cm[position[ref_id]][position[map_id]]
    pixels = np.array([mapped[i] for i in ids], dtype=np.float64)
    areas = np.array([mapped_area[i] for i in ids], dtype=np.float64)
    try:
        est = stratified_estimates(sample, areas)
    except BadInputError:
        thin = [f"{by_id[i]['name']} ({int(sample[k].sum())})" for k, i in enumerate(ids)
                if pixels[k] > 0 and sample[k].sum() < 2]
        return {**empty, "area_estimate_note":
                "No error-adjusted area estimate: the stratified estimator needs at least 2 labelled sample "
                f"points mapped as each class, and these classes have fewer: {', '.join(thin)}. Label more "
                "points there, or draw the sample with 'Create reference sample' (it gives every class a "
                "minimum)."}
    in_ha = area["unit"] == "ha"
    total_pixels = pixels.sum()
    entries = []
    for k, class_id in enumerate(ids):
        row = by_id[class_id]
        entries.append({
            "id": class_id, "name": row["name"], "colour": row["colour"],
            "sample_points_mapped": int(sample[k].sum()), "sample_points_reference": int(sample[:, k].sum()),
            "mapped_pixels": int(pixels[k]), "estimated_pixels": float(est["area_proportion"][k] * total_pixels),
            "pixels_ci95": float(est["area_ci"][k] / areas.sum() * total_pixels) if areas.sum() else None,
            "mapped_area_ha": float(areas[k]) if in_ha else None,
            "estimated_area_ha": float(est["estimated_area"][k]) if in_ha else None,
            "area_ci95_ha": float(est["area_ci"][k]) if in_ha else None,
            "mapped_proportion": float(est["weights"][k]),
            "estimated_proportion": float(est["area_proportion"][k]),
            "proportion_ci95": float(est["area_proportion_se"][k] * est["z"]),
            "users_accuracy": float(est["users"][k]), "users_ci95": float(est["users_ci"][k]),
            "producers_accuracy": float(est["producers"][k]), "producers_ci95": float(est["producers_ci"][k]),
        })
        _add_bounds(entries[-1])
    note = ("Stratified estimators of Olofsson et al. (2014, Remote Sensing of Environment 148: 42-57): strata "
            f"= the {len([p for p in pixels if p > 0])} mapped classes, weighted by their mapped area; "
            f"{int(sample.sum())} labelled sample points. ± values are 95 % confidence intervals (1.96 "
            "standard errors). They hold for a probability sample: stratified random by map class (as "
            "'Create reference sample' draws) or simple random. An area's interval is clipped at 0 where it "
            "would run below (the normal approximation does not know areas are positive). Figures marked "
            f"'{FEW_MARK}' rest on fewer than {FEW_POINTS} sample points (user's accuracy: points mapped as the "
            "class; producer's accuracy and area: points whose reference is the class): unreliable, their "
            "interval (even ± 0) understates the uncertainty; label more points of those classes.")
    if not in_ha:
        note += " The raster's CRS has no known units: areas are given in pixels only."
    return {"area_estimates": entries, "overall_accuracy_estimate": est["overall"],
            "overall_ci95": est["overall_ci"], "area_estimate_note": note,
            "area_proportions": {"class_ids": ids, "rows": "map class (stratum)", "columns": "reference class",
                                 "values": est["proportions"]}}


FEW_POINTS = 10  # below this many sample points a figure and its interval are flagged as unreliable
FEW_MARK = "(few points)"


def _add_bounds(entry: dict) -> None:
    """Interval bounds clipped at 0 (``*_low``/``*_high``) and the figures resting on fewer than
    ``FEW_POINTS`` sample points (``unreliable``)."""
    for value, ci, stem in (("estimated_area_ha", "area_ci95_ha", "area_ci95"), ("estimated_pixels", "pixels_ci95",
                                                                                   "pixels_ci95")):
        low = high = None
        if entry[value] is not None and entry[ci] is not None:
            low, high = max(0.0, entry[value] - entry[ci]), entry[value] + entry[ci]
        suffix = "_ha" if value.endswith("_ha") else ""
        entry[f"{stem}_low{suffix}"], entry[f"{stem}_high{suffix}"] = low, high
    entry["unreliable"] = ((["users_accuracy"] if entry["sample_points_mapped"] < FEW_POINTS else [])
                           + (["producers_accuracy", "estimated_area"]
                              if entry["sample_points_reference"] < FEW_POINTS else []))


WEIGHTED = "area-weighted"
SAMPLE_COUNTS = "sample counts"
PIXEL_COUNTS = "pixel counts"


def weight_by_area(report: dict) -> None:
    """With area estimates, add the area-weighted accuracies beside the count-based ones.

    A stratified sample over-represents small classes on purpose, so its raw point counts do not say how
    accurate the map is (a minority class with 50 of 400 points may cover 0.1 % of the map). Overall
    accuracy, kappa, precision (user's), recall (producer's), F1 and IoU are then also computed from the error
    matrix in estimated area proportions (Olofsson et al. 2014, eq. 9): the same overall, user's and
    producer's accuracies as the area section. The report's JSON keeps DESIGN.md's contract (``summary`` and
    ``classes`` hold the count metrics) and adds them under ``area_weighted``; ``summary.weighting`` says which
    the report shows as its headline (:func:`shown`).
    """
    summary = report["summary"]
    kind = report["inputs"]["reference_kind"]
    if kind != "points" or not report.get("area_estimates"):
        summary["weighting"] = SAMPLE_COUNTS if kind == "points" else PIXEL_COUNTS
        return
    matrix = report["area_proportions"]
    ids = list(matrix["class_ids"])
    weighted = metrics_from_confusion(np.asarray(matrix["values"], dtype=np.float64).T)  # rows = reference
    summary["weighting"] = WEIGHTED
    summary["area_weighted"] = {"overall_accuracy": weighted["overall_accuracy"],
                                "overall_ci95": report["overall_ci95"], "kappa": weighted["kappa"],
                                "mean_iou": weighted["mean_iou"], "macro_f1": weighted["macro_f1"]}
    position = {class_id: k for k, class_id in enumerate(ids)}
    for row in report["classes"]:
        k = position.get(row["id"])
        row["area_weighted"] = {key: weighted[key][k] if k is not None else float("nan") for key in CLASS_METRICS}


CLASS_METRICS = ("precision", "recall", "f1", "iou")


def shown(report: dict) -> dict:
    """The figures the report shows: with area-weighted accuracies (:func:`weight_by_area`), ``summary`` and
    each class row carry them, and the count-based ones under ``sample_counts``; else ``report`` itself."""
    summary = report["summary"]
    if "area_weighted" not in summary:
        return report
    counts = {key: summary[key] for key in ("overall_accuracy", "kappa", "mean_iou", "macro_f1")}
    view = dict(report, summary={**summary, **summary["area_weighted"], "sample_counts": counts})
    view["classes"] = [{**row, **row["area_weighted"], "sample_counts": {key: row[key] for key in CLASS_METRICS}}
                       for row in report["classes"]]
    return view


# -- plot ----------------------------------------------------------------------------------------
def plot_areas(report: dict, path) -> None:
    """Bars of mapped and estimated area per class, the estimate with its 95 % confidence interval."""
    from .report import _pyplot  # noqa: PLC0415 - matplotlib only when a report is written
    plt = _pyplot()
    from matplotlib.patches import Patch  # noqa: PLC0415
    from matplotlib.ticker import FuncFormatter  # noqa: PLC0415
    rows = report["area_estimates"]
    in_ha = rows[0]["mapped_area_ha"] is not None
    mapped = [r["mapped_area_ha"] if in_ha else r["mapped_pixels"] for r in rows]
    estimated = [r["estimated_area_ha"] if in_ha else r["estimated_pixels"] for r in rows]
    ci = [r["area_ci95_ha"] if in_ha else r["pixels_ci95"] for r in rows]
    ci = [[min(c, e) for c, e in zip(ci, estimated)], ci]  # clipped at 0 below
    k = len(rows)
    fig, ax = plt.subplots(figsize=(min(4.0 + 0.9 * k, 24.0), 4.8))
    x = np.arange(k)
    ax.bar(x - 0.2, mapped, 0.4, label="mapped (pixel count)", color="#bbbbbb", edgecolor="#555555")
    ax.bar(x + 0.2, estimated, 0.4, yerr=ci, capsize=4, label="estimated (± 95 % CI)",
           color=[r["colour"] for r in rows], edgecolor="#333333")
    ax.set_xticks(x)
    ax.set_xticklabels([r["name"] for r in rows], rotation=30 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_ylabel("area (ha)" if in_ha else "area (pixels)")
    ax.set_title("Mapped and error-adjusted area per class")
    ax.grid(axis="y", alpha=0.3)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    handles = [Patch(facecolor="#bbbbbb", edgecolor="#555555", label="mapped (pixel count)"),
               Patch(facecolor="white", edgecolor="#333333", label="estimated, in the class colour (± 95 % CI)")]
    ax.legend(handles=handles, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


# -- HTML ----------------------------------------------------------------------------------------
def _pm(value, ci, pattern="{:,.0f}") -> str:
    if value is None:
        return "n/a"
    return pattern.format(value) + ("" if ci is None else " ± " + pattern.format(ci))


def area_interval(entry: dict, in_ha: bool) -> str:
    """An estimated area (hectares or pixels) with its 95 % interval; one that would run below 0 is given
    clipped, as the range from 0."""
    value, ci, low, high, pattern = ((entry["estimated_area_ha"], entry["area_ci95_ha"], entry.get("area_ci95_low_ha"),
                                      entry.get("area_ci95_high_ha"), "{:,.1f}") if in_ha else
                                     (entry["estimated_pixels"], entry["pixels_ci95"], entry.get("pixels_ci95_low"),
                                      entry.get("pixels_ci95_high"), "{:,.0f}"))
    if value is None or ci is None or low is None or value - ci >= 0:
        return _pm(value, ci, pattern)
    return f"{pattern.format(value)} (95 % CI {pattern.format(low)} to {pattern.format(high)}, clipped at 0)"


def _pct_pm(value, ci) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f} %" + ("" if ci is None else f" ± {100 * ci:.1f}")


def area_html(report: dict, image: str = None) -> str:
    """The report's "Area estimates" section (a note only when no estimate is given)."""
    parts = ['<h2 id="area-estimates">Area estimates from the reference sample</h2>']
    rows = report.get("area_estimates")
    if not rows:
        parts.append(f'<p class="note">{escape(report.get("area_estimate_note") or "")}</p>')
        return "\n".join(parts)
    parts.append(f'<p><b>Overall accuracy (estimated)</b>: <span class="big">'
                 f'{_pct_pm(report["overall_accuracy_estimate"], report["overall_ci95"])}</span></p>')
    if image:
        parts.append(f'<img src="{escape(image)}" alt="Bar chart of mapped and estimated area with 95 % confidence '
                     'intervals">')
    in_ha = rows[0]["mapped_area_ha"] is not None
    parts += ["<table><thead><tr>", '<th class="name">class</th><th>sample points (mapped as)</th>',
              "<th>mapped area (ha)</th><th>estimated area (ha) ± 95 % CI</th>" if in_ha else "",
              "<th>mapped pixels</th><th>estimated pixels ± 95 % CI</th>",
              "<th>user's accuracy ± 95 % CI</th><th>producer's accuracy ± 95 % CI</th>", "</tr></thead><tbody>"]
    for r in rows:
        swatch = f'<span class="swatch" style="background:{escape(r["colour"])}"></span>'
        few = {key: f" {FEW_MARK}" if key in r.get("unreliable", ()) else ""
               for key in ("users_accuracy", "producers_accuracy", "estimated_area")}
        area_cells = (f"<td>{_pm(r['mapped_area_ha'], None, '{:,.1f}')}</td>"
                      f"<td>{area_interval(r, True)}{few['estimated_area']}</td>") if in_ha else ""
        parts.append(f'<tr><td class="name">{swatch}{escape(r["name"])}</td><td>{r["sample_points_mapped"]:,}</td>'
                     f"{area_cells}<td>{r['mapped_pixels']:,}</td>"
                     f"<td>{area_interval(r, False)}{few['estimated_area']}</td>"
                     f"<td>{_pct_pm(r['users_accuracy'], r['users_ci95'])}{few['users_accuracy']}</td>"
                     f"<td>{_pct_pm(r['producers_accuracy'], r['producers_ci95'])}{few['producers_accuracy']}"
                     "</td></tr>")
    parts.append("</tbody></table>")
    matrix = report["area_proportions"]
    names = {r["id"]: r["name"] for r in rows}
    head = "".join(f"<th>{escape(names[i])}</th>" for i in matrix["class_ids"])
    parts.append("<table><caption>Error matrix in estimated area proportions (rows = map class, columns = "
                 f'reference class)</caption><thead><tr><th class="name">map \\ reference</th>{head}'
                 "<th>total</th></tr></thead><tbody>")
    values = np.array([[0.0 if v is None else v for v in row] for row in matrix["values"]])
    for i, class_id in enumerate(matrix["class_ids"]):
        cells = "".join(f"<td>{v:.4f}</td>" for v in values[i])
        parts.append(f'<tr><th class="name">{escape(names[class_id])}</th>{cells}<td>{values[i].sum():.4f}</td></tr>')
    totals = "".join(f"<td>{v:.4f}</td>" for v in values.sum(axis=0))
    parts.append(f'<tr><th class="name">total</th>{totals}<td>{values.sum():.4f}</td></tr></tbody></table>')
    parts.append(f'<p class="note">{escape(report["area_estimate_note"])}</p>')
    return "\n".join(parts)
