"""The accuracy report: a text table for the log, two matplotlib plots and a self-contained HTML5 page.

All functions take the JSON-ready ``report`` dict built by the ``assess`` command (NaN already turned
into ``None``). The HTML references its images by file name only, so the report folder can be moved.
"""
import csv
import datetime as _dt

import numpy as np

from ..html_cells import escape, number, percent

METRICS = [("precision", "Precision (user's acc.)"), ("recall", "Recall (producer's acc.)"),
           ("f1", "F1"), ("iou", "IoU")]
BAR_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]


def _area(value) -> str:
    return f"{value:,.2f}"


def _weighted(report) -> bool:
    return report["summary"].get("weighting") == "area-weighted"


def _points(report) -> bool:
    return report["inputs"]["reference_kind"] == "points"


def _counted(report) -> str:
    """What the confusion matrix counts."""
    return "sample points" if _points(report) else "pixels"


# -- text --------------------------------------------------------------------------------------
def format_table(report: dict) -> str:
    """A plain-text summary and per-class table, for the processing log."""
    s = report["summary"]
    over = f"over {s['pixels_assessed']:,} " + ("sample points" if _points(report) else "reference pixels")
    if _weighted(report):
        raw = s["sample_counts"]
        head = (f"Overall accuracy {percent(s['overall_accuracy'])} ± {100 * s['overall_ci95']:.1f} (95 % CI), kappa "
                f"{number(s['kappa'])}, mean IoU {percent(s['mean_iou'])}, macro F1 {percent(s['macro_f1'])}: "
                f"area-weighted "
                f"estimates {over} (Olofsson et al. 2014). Raw sample counts, "
                f"which over-represent small classes, give {percent(raw['overall_accuracy'])}.")
    else:
        head = (f"Overall accuracy {percent(s['overall_accuracy'])}, kappa {number(s['kappa'])}, mean IoU "
                f"{percent(s['mean_iou'])}, macro F1 {percent(s['macro_f1'])} {over}"
                + (" (sample counts, not area-weighted)." if _points(report) else "."))
    lines = [head]
    width = max([len(r["name"]) for r in report["classes"]] + [5])
    unit = report["area"]["unit"]
    lines.append(f"{'class':<{width}}  {'ref pts' if _points(report) else 'ref px':>9}  {'precision':>9}  "
                 f"{'recall':>9}  {'F1':>9}  {'IoU':>9}  {'mapped ' + unit:>14}")
    for r in report["classes"]:
        lines.append(f"{r['name']:<{width}}  {r['reference_pixels']:>9}  {percent(r['precision']):>9}  "
                     f"{percent(r['recall']):>9}  {percent(r['f1']):>9}  {percent(r['iou']):>9}  "
                     f"{_area(r['mapped_area']):>14}")
    left = report["left_out"]
    overlaps = (f", {left['overlapping_polygons_disagree']:,} where overlapping polygons disagree"
                if report["inputs"]["reference_kind"] == "polygons" else "")
    lines.append(f"Left out: {left['outside_classified_raster']:,} reference pixels outside the classified raster, "
                 f"{left['on_classified_nodata']:,} on its no-data{overlaps}.")
    return "\n".join(lines)


# -- CSV ------------------------------------------------------------------------------------------
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what Excel/LibreOffice run as a formula (OWASP)


class _SafeCsv:
    """A csv.writer whose text cells never start a formula: a class named '=HYPERLINK(...)' stays text.
    Numbers (negative ones too) are written as numbers."""

    def __init__(self, handle):
        self._writer = csv.writer(handle)

    def writerow(self, row):
        self._writer.writerow([f"'{v}" if isinstance(v, str) and v.startswith(FORMULA_STARTS) and not _numeric(v)
                               else v for v in row])


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _fmt(value) -> str:
    return "" if value is None else (f"{value:.6f}" if isinstance(value, float) else str(value))


def write_table_csv(report, path) -> None:
    """One row per class: pixel counts, precision, recall, F1, IoU and mapped area. With sample points the
    ``reference_pixels``/``classified_pixels`` columns count points, and ``accuracy_from`` says whether the
    accuracies are area-weighted estimates or raw counts."""
    unit = "ha" if report["area"]["unit"] == "ha" else "map_units2"
    basis = report["summary"].get("weighting", "pixel counts")
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = _SafeCsv(f)
        writer.writerow(["class_id", "class_name", "reference_pixels", "classified_pixels",
                         "precision_users_accuracy", "recall_producers_accuracy", "f1", "iou",
                         "mapped_pixels", f"mapped_area_{unit}", "accuracy_from"])
        for row in report["classes"]:
            writer.writerow([row["id"], row["name"], row["reference_pixels"], row["classified_pixels"],
                             _fmt(row["precision"]), _fmt(row["recall"]), _fmt(row["f1"]), _fmt(row["iou"]),
                             row["mapped_pixels"], _fmt(row["mapped_area"]), basis])


def write_confusion_csv(report, path) -> None:
    """The confusion matrix with totals, recall per row and precision per column."""
    cm = report["confusion_matrix"]
    counts = np.array(cm["counts"], dtype=np.int64)
    by_id = {row["id"]: row for row in report["classes"]}
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = _SafeCsv(f)
        corner = "reference \\ classified" + (f" ({_counted(report)})" if _points(report) else "")
        writer.writerow([corner] + cm["names"] + ["total", "recall_producers_accuracy"])
        for k, class_id in enumerate(cm["class_ids"]):
            writer.writerow([cm["names"][k]] + counts[k].tolist() + [int(counts[k].sum()),
                                                                    _fmt(by_id[class_id]["recall"])])
        writer.writerow(["total"] + counts.sum(axis=0).tolist() + [int(counts.sum()), ""])
        writer.writerow(["precision_users_accuracy"] + [_fmt(by_id[i]["precision"]) for i in cm["class_ids"]]
                        + ["", ""])


# -- plots -------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib  # noqa: PLC0415 - heavy; only imported when a report is written
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    return plt


def plot_confusion(report: dict, path) -> None:
    """Heat map of the confusion matrix: colour = row share (of each reference class), text = count."""
    plt = _pyplot()
    cm = report["confusion_matrix"]
    counts = np.array(cm["counts"], dtype=np.int64)
    shares = np.array([[np.nan if v is None else v for v in row] for row in cm["row_shares"]], dtype=float)
    k = len(cm["names"])
    size = min(4.0 + 0.6 * k, 22.0)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(np.nan_to_num(shares), cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(cm["names"], rotation=45, ha="right")
    ax.set_yticklabels(cm["names"])
    ax.set_xlabel("Classified")
    ax.set_ylabel("Reference")
    ax.set_title(f"Confusion matrix ({'sample point' if _points(report) else 'pixel'} counts; colour = share "
                 "of the reference class)")
    if k <= 30:
        font = max(5, 11 - k // 4)
        for i in range(k):
            for j in range(k):
                dark = np.nan_to_num(shares[i, j]) > 0.5
                ax.text(j, i, f"{counts[i, j]:,}", ha="center", va="center", fontsize=font,
                        color="white" if dark else "black")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="row share")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def plot_per_class(report: dict, path) -> None:
    """Grouped bars of precision, recall, F1 and IoU for each class in the confusion matrix."""
    plt = _pyplot()
    ids = report["confusion_matrix"]["class_ids"]
    rows = [r for r in report["classes"] if r["id"] in ids]
    k = len(rows)
    fig, ax = plt.subplots(figsize=(min(4.0 + 0.9 * k, 24.0), 4.8))
    x = np.arange(k)
    width = 0.2
    for m, ((key, label), colour) in enumerate(zip(METRICS, BAR_COLOURS)):
        values = [np.nan if r[key] is None else r[key] for r in rows]
        ax.bar(x + (m - 1.5) * width, values, width, label=label, color=colour)
    ax.set_xticks(x)
    ax.set_xticklabels([r["name"] for r in rows], rotation=30 if k > 6 else 0, ha="right" if k > 6 else "center")
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("score")
    ax.set_title("Per-class accuracy (area-weighted estimates)" if _weighted(report) else "Per-class accuracy")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18 if k > 6 else -0.1), ncol=4, frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


# -- HTML --------------------------------------------------------------------------------------
_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em 0; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: right; }
th { background: #f0f0f0; }
td.name, th.name { text-align: left; }
td, .name { white-space: nowrap; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border: 1px solid #555;
          vertical-align: middle; margin-right: 0.4em; }
.big { font-size: 1.4em; }
img { max-width: 100%; height: auto; }
.note { color: #555; font-size: 0.9em; }
.warn { color: #8a4b00; font-weight: bold; }
"""


def _name_cell(row, tag="td") -> str:
    return (f'<{tag} class="name"><span class="swatch" style="background:{escape(row["colour"])}"></span>'
            f"{escape(row['name'])}</{tag}>")


def _matrix_table(report, values_key: str, caption: str, fmt) -> str:
    cm = report["confusion_matrix"]
    by_id = {r["id"]: r for r in report["classes"]}
    head = "".join(f"<th>{escape(n)}</th>" for n in cm["names"])
    out = [f"<table><caption>{escape(caption)}</caption>",
           f'<thead><tr><th class="name">reference \\ classified</th>{head}<th>total</th></tr></thead><tbody>']
    counts = np.array(cm["counts"], dtype=np.int64)
    for i, class_id in enumerate(cm["class_ids"]):
        cells = "".join(f"<td>{fmt(v)}</td>" for v in cm[values_key][i])
        out.append(f"<tr>{_name_cell(by_id[class_id], 'th')}{cells}<td>{counts[i].sum():,}</td></tr>")
    totals = "".join(f"<td>{v:,}</td>" for v in counts.sum(axis=0))
    out.append(f'<tr><th class="name">total</th>{totals}<td>{counts.sum():,}</td></tr></tbody></table>')
    return "\n".join(out)


def _basis_note(report) -> str:
    """What the summary's figures are computed from."""
    if _weighted(report):
        return ("Area-weighted estimates from the stratified reference sample (Olofsson et al. 2014): each map "
                "class's points count in proportion to the area the class covers on the map; ± is the 95 % "
                "confidence interval. The confusion matrix below gives the raw sample counts, which "
                "over-represent small classes.")
    if _points(report):
        return ("From the raw sample counts, not area-weighted: " + (report.get("area_estimate_note") or "")).strip()
    return "Counted in pixels of the reference data."


def _training_html(entry) -> str:
    """The warning that reference pixels are the map's model's training pixels (training_pixels.summary), or ""."""
    return f'<p class="warn">{escape(entry["warning"])}</p>' if entry and entry.get("warning") else ""


def _trainer_html(found) -> str:
    """The trainer's estimate of the map's accuracy beside this assessment's (map_record.comparison), or ""."""
    if not found:
        return ""
    miou = "" if found["trainer_mean_iou"] is None else f", mean IoU {percent(found['trainer_mean_iou'])}"
    return (f'<h3>The trainer\'s estimate</h3><p>Overall accuracy {percent(found["trainer_overall_accuracy"])}{miou}'
            f' (model {escape(found["model"])}).</p><p class="note">{escape(found["text"])}</p>')


def render_html(report: dict, confusion_image: str, per_class_image: str, area_section: str = "") -> str:
    """The report page (HTML5); image arguments are file names relative to the page; ``area_section``:
    the HTML of the area estimates (after the summary)."""
    s, left, area = report["summary"], report["left_out"], report["area"]
    inputs = report["inputs"]
    reference = inputs["reference"] + (f" (field {inputs['class_field']})" if inputs.get("class_field") else "")
    unit = area["unit"]
    weighted = _weighted(report)
    counted = _counted(report)
    class_rows = []
    for r in report["classes"]:
        class_rows.append(
            f"<tr>{_name_cell(r)}<td>{r['id']}</td><td>{r['reference_pixels']:,}</td>"
            f"<td>{r['classified_pixels']:,}</td><td>{percent(r['precision'])}</td><td>{percent(r['recall'])}</td>"
            f"<td>{percent(r['f1'])}</td><td>{percent(r['iou'])}</td><td>{r['mapped_pixels']:,}</td>"
            f"<td>{_area(r['mapped_area'])}</td></tr>")
    created = _dt.datetime.now().isoformat(timespec="seconds")
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Accuracy assessment</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        "<h1>Accuracy assessment</h1>",
        f'<p class="note">Created {escape(created)}.<br>Classified raster: {escape(inputs["classified"])}<br>'
        f"Reference {escape(inputs['reference_kind'])}: {escape(reference)}</p>",
        "<h2>Summary</h2>",
        "<table><tbody>",
        f'<tr><th class="name">Overall accuracy</th><td class="big">{percent(s["overall_accuracy"])}'
        + (f' ± {100 * s["overall_ci95"]:.1f}' if weighted else "") + "</td></tr>",
        f'<tr><th class="name">Cohen\'s kappa</th><td class="big">{number(s["kappa"])}</td></tr>',
        f'<tr><th class="name">Mean IoU</th><td class="big">{percent(s["mean_iou"])}</td></tr>',
        f'<tr><th class="name">Macro F1</th><td>{percent(s["macro_f1"])}</td></tr>',
        (f'<tr><th class="name">Overall accuracy from the raw sample counts (not an estimate of the map\'s '
         f'accuracy)</th><td>{percent(s["sample_counts"]["overall_accuracy"])}</td></tr>' if weighted else ""),
        f'<tr><th class="name">Reference {_counted(report)} assessed</th><td>{s["pixels_assessed"]:,}</td></tr>',
        "</tbody></table>",
        _training_html(report.get("reference_on_training_pixels")),
        f'<p class="note">{escape(_basis_note(report))}</p>',
        _trainer_html(report.get("trainer_estimate")),
        area_section,
        "<h2>Reference pixels left out</h2>",
        "<table><tbody>",
        f'<tr><th class="name">Outside the classified raster</th><td>{left["outside_classified_raster"]:,}</td></tr>',
        f'<tr><th class="name">On no-data of the classified raster</th><td>{left["on_classified_nodata"]:,}</td></tr>',
        (f'<tr><th class="name">Where overlapping polygons of different classes meet</th>'
         f'<td>{left["overlapping_polygons_disagree"]:,}</td></tr>' if inputs["reference_kind"] == "polygons" else ""),
        "</tbody></table>",
        f'<p class="note">Counted in pixels of the classified raster\'s grid. '
        f'{left["classified_pixels_without_reference"]:,} classified pixels have no reference data.</p>',
        "<h2>Per-class accuracy</h2>",
        f'<img src="{escape(per_class_image)}" alt="Bar chart of precision, recall, F1 and IoU per class">',
        "<table><thead><tr>",
        f'<th class="name">class</th><th>id</th><th>reference {counted}</th><th>classified {counted} (assessed)</th>'
        "<th>precision (user's accuracy)</th><th>recall (producer's accuracy)</th><th>F1</th><th>IoU</th>"
        f"<th>mapped pixels (whole raster)</th><th>mapped area ({escape(unit)})</th>",
        "</tr></thead><tbody>", *class_rows, "</tbody></table>",
        f'<p class="note">{escape(area["note"])} Mapped pixels and area count the whole classified raster; '
        f"the other columns count only {counted} with reference data"
        + ("; precision, recall, F1 and IoU are area-weighted estimates" if weighted else "")
        + ". n/a: the class does not occur there.</p>",
        "<h2>Confusion matrix</h2>",
        f'<img src="{escape(confusion_image)}" alt="Heat map of the confusion matrix">',
        _matrix_table(report, "counts", "Sample counts (points, not area-weighted)" if _points(report)
                      else "Pixel counts", lambda v: f"{v:,}"),
        _matrix_table(report, "row_shares", "Row shares: where each reference class was mapped (recall view)"
                      + (" - of the sample counts, not area-weighted" if _points(report) else ""), percent),
        _matrix_table(report, "column_shares", "Column shares: what each mapped class really is (precision view)"
                      + (" - of the sample counts" if _points(report) else ""), percent),
        f'<p class="note">{escape(report["convention"])}.</p>',
        "</body>", "</html>", "",
    ]
    return "\n".join(parts)
