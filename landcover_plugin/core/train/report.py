"""The training report: one HTML page from what a training run leaves behind, for the Results Viewer.

Read from files only (the model's card in its ``metadata_props``, the curves CSV, the chip dataset's
``dataset.json``), with the standard library, so the QGIS side writes it without onnx, torch or numpy and it
can be written again later for any model. The curves PNG is referenced by file name when it sits beside the
page (the folder can move), else by its absolute path.
"""
import csv
import datetime as _dt
import json
import math
from pathlib import Path

from ..chips.dataset import DATASET_FILE, IMAGES_DIR, LABELS_DIR
from ..errors import BadInputError
from ..html_cells import count, escape, image_src, key_value_table, number, percent
from ..model.metadata import read_metadata_props
from ..output_folder import replaced_in_place
from .options import duration_text
from .report_sections import class_shares_section, data_section, heldout_section, light_section, settings_section

CARD_KEY = "landcover_card"


def read_card(model_path) -> dict:
    """The landcover card of an ONNX model ({} for a model without one)."""
    text = read_metadata_props(model_path).get(CARD_KEY)
    return json.loads(text) if text else {}


def read_curves(csv_path) -> list:
    """The training curves' rows (numbers as floats, empty cells as None); [] when there is no file."""
    if not csv_path or not Path(csv_path).is_file():
        return []
    with open(csv_path, newline="", encoding="utf-8") as handle:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def class_weights(train_pixels: list) -> list:
    """The trainer's weights (training/objective.py): inverse square-root frequency, the average labelled
    pixel weighing 1, clipped to [0.1, 10]; 1 for a class without pixels."""
    total = sum(c for c in train_pixels if c > 0)
    if not total:
        return [1.0] * len(train_pixels)
    freq = [c / total for c in train_pixels]
    norm = sum(f / math.sqrt(f) for f in freq if f > 0)
    return [min(10.0, max(0.1, (1.0 / math.sqrt(f)) / norm)) if f > 0 else 1.0 for f in freq]


def check_report_path(html_path, config) -> None:
    """Refuse a report path that would replace a file of the run: the model, its curves or checkpoints, a file of
    the chip dataset, or a weights file it starts from (the report is written after training, over whatever is
    there). ``config``: the run's TrainConfig."""
    report = Path(html_path).absolute().resolve()
    model = Path(config.output).absolute().resolve()
    files = [(model, "the model"), *((p.absolute().resolve(), "the model's training curves")
                                     for p in config.curves_paths())]
    files += [(Path(p).absolute().resolve(), what) for p, what in (
        (config.resume, "the checkpoint to resume from"), (config.initial_weights, "the initial weights"),
        (config.encoder_weights, "the encoder weights")) if p]
    dataset = Path(config.dataset_dir).absolute().resolve()
    files.append((dataset / DATASET_FILE, "the chip dataset's description"))
    # the model, and so its report, may be saved in the chips folder: only the dataset's own files are refused
    folders = [(dataset / IMAGES_DIR, "the chip dataset"), (dataset / LABELS_DIR, "the chip dataset"),
               (config.checkpoint_dir.absolute().resolve(), "the checkpoints folder")]
    what = next((what for path, what in files if report == path), None) or next(
        (f"a file of {what}" for folder, what in folders if report == folder or folder in report.parents), None)
    if what:
        raise BadInputError(f"The training report {html_path} would replace {what}. Choose another file for the "
                            f"report, e.g. {model.with_name(model.stem + '_report.html')}: nothing was trained.")


def write_training_report(html_path, model_path, curves_csv=None, curves_png=None, dataset_dir=None,
                          outputs: dict = None) -> str:
    """Write the report page; returns its path. ``outputs``: the Train algorithm's results, for what the card
    does not hold (cancelled, paths)."""
    html_path = Path(html_path).absolute()  # the path returned: valid from any folder, like the model's
    card = read_card(model_path)
    dataset = {}
    if dataset_dir and (Path(dataset_dir) / "dataset.json").is_file():
        dataset = json.loads((Path(dataset_dir) / "dataset.json").read_text(encoding="utf-8"))
    page = render(card, read_curves(curves_csv), dataset, model_path=str(model_path),
                  curves_png=image_src(curves_png, html_path), curves_csv=curves_csv, dataset_dir=dataset_dir,
                  outputs=outputs or {})
    html_path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_in_place(html_path, ".html") as tmp:  # hidden, this run's own: never a visible half page
        Path(tmp).write_text(page, encoding="utf-8")
    return str(html_path)


def render(card: dict, curves: list, dataset: dict, model_path: str = "", curves_png: str = None,
           curves_csv=None, dataset_dir=None, outputs: dict = None) -> str:
    """The page (HTML5) for a model card, its curves rows and its chip dataset's description."""
    outputs = outputs or {}
    metrics = best_epoch(card, curves, outputs)
    classes = card.get("classes") or []
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        "<title>Training report</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        "<h1>Training report</h1>",
        f'<p class="note">Created {escape(_dt.datetime.now().isoformat(timespec="seconds"))}.<br>'
        f"Model: {escape(model_path)}<br>Chip dataset: {escape(dataset_dir or 'unknown')}</p>",
        "<h2>Summary</h2>", _summary(card, metrics, outputs),
        "<h2>Held-out estimate of the map's accuracy</h2>", heldout_section(card.get("heldout")),
        class_shares_section(card), light_section(card),
        "<h2>Training curves</h2>",
        (f'<img src="{escape(curves_png)}" alt="Training and validation loss, validation accuracy and mIoU per epoch">'
         if curves_png else '<p class="note">No curves plot.</p>'),
        _epochs_table(curves, metrics.get("best_epoch"), refit=outputs.get("refit_epochs") or 0,
                      cv_folds=outputs.get("cv_folds") or (card.get("heldout") or {}).get("cv_folds")),
        (f'<p class="note">Every number per epoch: {escape(curves_csv)}</p>' if curves_csv else ""),
        f"<h2>Per-class IoU at the best epoch (epoch {escape(metrics.get('best_epoch') or 'n/a')})</h2>",
        _class_table(classes, metrics, dataset, card, refit=bool(outputs.get("refit_epochs")),
                     cv_folds=outputs.get("cv_folds") or (card.get("heldout") or {}).get("cv_folds")),
        "<h2>Data</h2>", data_section(card, dataset),
        "<h2>Run settings</h2>", settings_section(card),
        "</body>", "</html>", "",
    ]
    return "\n".join(parts)


def best_epoch(card: dict, curves: list, outputs: dict) -> dict:
    """The best epoch's scores: from its row of the curves (a refit model's card has no validation, its
    curves are those of the held-out run) or, without curves, from the card."""
    metrics = dict(card.get("metrics") or {})
    epoch = outputs.get("BEST_EPOCH") or metrics.get("best_epoch")
    scored = [r for r in curves if r.get("val_miou") is not None]
    row = next((r for r in scored if r.get("epoch") == epoch), None)
    if row is None and scored and (epoch is None or metrics.get("val_miou") is None):
        row = max(scored, key=lambda r: r["val_miou"])
    if row is not None:
        metrics.update(best_epoch=_int(row["epoch"]), val_miou=row.get("val_miou"),
                       val_accuracy=row.get("val_accuracy"), val_loss=row.get("val_loss"),
                       val_iou={k[len("val_iou_"):]: v for k, v in row.items() if k.startswith("val_iou_")})
        metrics["epochs_trained"] = max(metrics.get("epochs_trained") or 0, len(curves))
    return metrics


# -- sections ------------------------------------------------------------------------------------
def _summary(card, metrics, outputs) -> str:
    rows = [("Architecture", card.get("architecture", "unknown")),
            ("Best epoch", f"{metrics.get('best_epoch', 'n/a')} of {metrics.get('epochs_trained', 'n/a')} trained"
                           + _stop_note(card.get("training") or {}, bool(outputs.get("refit_epochs")))),
            ("Validation mIoU at the best epoch", percent(metrics.get("val_miou"))),
            ("Validation overall accuracy at the best epoch", percent(metrics.get("val_accuracy"))),
            ("Validation loss at the best epoch", number(metrics.get("val_loss")))]
    if metrics.get("stopped_early"):
        rows.append(("Stopped early", "yes: validation mIoU stopped improving"))
    if metrics.get("cancelled") or outputs.get("CANCELLED"):
        rows.append(("Cancelled", "yes: the model holds the best epoch finished before the cancel"))
    if outputs.get("refit_epochs"):
        best = outputs.get("BEST_EPOCH")
        why = "the best count on the held-out polygons" if outputs["refit_epochs"] == best or not \
            outputs.get("refit_longer") else (f"for the time left: the time limit stopped the held-out training at "
                                              f"its best epoch, {best}, still improving")
        past = (card.get("training") or {}).get("past_limit_s")
        past = "" if past is None else (f"; it trained on {past:g} s past the time limit to reach the held-out "
                                        f"count (a model cut shorter could map worse than the estimate says)")
        rows.append(("Exported model", f"trained again on all polygons (the held-out ones too) for "
                                        f"{outputs['refit_epochs']} epoch(s), {why}{past}; the run settings below "
                                        f"are those of that second run"))
    return key_value_table(rows)


def _stop_note(training: dict, refit: bool) -> str:
    """What ended the epochs, for the best-epoch line: the time limit (the run read as complete without it),
    else the planned count when it is not the count trained."""
    limit = training.get("time_limit_minutes")
    limit = f"the time limit of {duration_text(limit)}" if limit else "the time limit"
    if refit and training.get("selection_stopped_by") == "time limit":
        return f" (the held-out run that chose it was stopped by {limit} before its planned epochs)"
    if training.get("stopped_by") == "time limit":
        return f" ({training.get('epochs', 'n/a')} planned: stopped by {limit})"
    return ""


def _class_table(classes, metrics, dataset, card, refit: bool = False, cv_folds: int = None) -> str:
    """Per class: the IoU at the best epoch, the pixels it was trained and scored on, the exported model's class
    weight. Under cross-validation the IoU is pooled over the folds, so the pixel counts are those too: every
    labelled pixel (each fold trains on all but its held-out groups; the exported model on all) and the pixels
    held out over the folds (from the model card), not the chip dataset's training/validation split."""
    iou = metrics.get("val_iou") or {}
    train = dataset.get("train_class_pixels") or {}
    everything = dataset.get("class_pixels") or {}
    # the exported model's weights: a refit trains on every chip, so on all labelled pixels
    weighted = (everything if refit else None) or train
    weights_on = (card.get("training") or {}).get("class_weights", True)
    weights = class_weights([int(weighted.get(str(c["id"]), 0)) for c in classes]) if weights_on \
        else [1.0] * len(classes)
    if cv_folds:
        held = (card.get("heldout") or {}).get("class_pixels") or {}
        trained = [everything.get(str(c["id"])) if everything else None for c in classes]
        scored = [held.get(c["name"]) if held else None for c in classes]
        heads = (f"held-out IoU ({cv_folds} folds pooled)", "labelled pixels in the chips",
                 f"held-out pixels ({cv_folds} folds pooled)")
        counts_note = (f"IoU and held-out pixels: {cv_folds}-fold cross-validation, every polygon group held out "
                       f"once by a model that never saw it, pooled over the folds (each source pixel counted "
                       f"once; a class with a single polygon group is never held out). Labelled pixels in the "
                       f"chips: all of the chip dataset's (a pixel once per chip that holds it, as the loss sees "
                       f"them), not its training/validation split: each fold trained on them less its held-out "
                       f"groups, the exported model on all. ")
    else:
        val = dataset.get("val_class_pixels") or {}
        trained = [train.get(str(c["id"]), 0) if train else None for c in classes]
        scored = [val.get(str(c["id"])) if val else None for c in classes]
        heads = ("validation IoU", "training pixels", "validation pixels")
        counts_note = ("Pixels: the chip dataset's training and validation split" + (
            ", on which the IoU was measured; the exported model was then trained again on both. " if refit
            else ". "))
    rows = []
    left_out = set(card.get("left_out_classes") or [])  # no training pixel: the model never maps them
    for c, weight, trained_count, held_count in zip(classes, weights, trained, scored):
        score, weight = ("never mapped (no training pixels)", "-") if c["id"] in left_out else \
            (percent(iou.get(c["name"])), f"{weight:.2f}")
        rows.append(f'<tr><td class="name"><span class="swatch" style="background:{escape(c.get("colour", "#888"))}">'
                    f"</span>{escape(c['name'])}</td><td>{escape(c['id'])}</td><td>{escape(score)}</td>"
                    f"<td>{count(trained_count)}</td><td>{count(held_count)}</td><td>{escape(weight)}</td></tr>")
    return ('<table><thead><tr><th class="name">class</th><th>id</th>'
            + "".join(f"<th>{escape(h)}</th>" for h in heads) + "<th>class weight</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>"
            + ('<p class="note">' + escape(counts_note) + "Class weights balance rare classes in the loss (inverse "
               "square root of the class's share of the training pixels" + (", of all chips for the exported "
                                                                           "model, trained again on all of them"
                                                                           if refit else "") + "); "
               + ("on for this run." if weights_on else "off for this run.") + "</p>"))


def _epochs_table(curves, best_epoch, refit: int = 0, cv_folds: int = None) -> str:
    """``refit``: the epochs of the refit that trained the exported model (0: none)."""
    if not curves:
        return ""
    rows = []
    for row in curves:
        mark = ' class="best"' if best_epoch is not None and row.get("epoch") == best_epoch else ""
        rows.append(f"<tr{mark}><td>{escape(_int(row.get('epoch')))}</td><td>{number(row.get('train_loss'))}</td>"
                    f"<td>{number(row.get('val_loss'))}</td><td>{percent(row.get('val_accuracy'))}</td>"
                    f"<td>{percent(row.get('val_miou'))}</td><td>{number(row.get('lr'), 2, sci=True)}</td>"
                    f"<td>{number(row.get('epoch_seconds'), 1)}</td></tr>")
    return ("<table><thead><tr><th>epoch</th><th>training loss</th><th>validation loss</th>"
            "<th>validation overall accuracy</th><th>validation mIoU</th><th>learning rate</th><th>seconds</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            '<p class="note">' + escape(_best_row_note(refit, cv_folds, best_epoch)) + "</p>")


def _best_row_note(refit: int, cv_folds, best_epoch=None) -> str:
    """What the highlighted row is: after a refit the rows are the run that chose the epoch count (or the folds
    pooled), and the exported weights are the refit's, which no row shows."""
    if not refit:
        return "The highlighted row is the best epoch, whose weights the model holds."
    rows = (f"These rows pool the {cv_folds} cross-validation folds (each scored on its held-out polygons); the "
            f"highlighted row is the epoch with the lowest pooled held-out loss" if cv_folds
            else "These rows are the run scored on the held-out polygons; the highlighted row is its best epoch")
    epochs = "that many epochs" if refit == best_epoch or best_epoch is None else \
        f"{refit} epochs (see 'Exported model' above)"
    return (rows + f". The exported model was then trained again on all polygons for {epochs}: its weights are that "
                   f"refit's, which has no validation and no row here.")


# -- small helpers ---------------------------------------------------------------------------------
def _number(text):
    if text in (None, ""):
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _int(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; max-width: 70em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th.name, td.name, table.kv td { text-align: left; }
tr.best td { background: #e8f4e8; font-weight: bold; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.4em; border: 1px solid #555;
          vertical-align: middle; }
.note { color: #555; font-size: 0.92em; } .warn { color: #a35400; }
img { max-width: 100%; }
"""
