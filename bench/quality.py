"""Map quality: our model against a pixel-wise random forest trained on the same training pixels.

Zion: NLCD labels, chips with the exporter's spatial split. Our model is trained by ``training.loop.train``
(default settings, a CPU time budget), exported to ONNX and run over the whole image by ``classify_raster``;
both maps are scored on the labelled pixels of the validation chips. rstoolbox: every 4th polygon of each
class (by feature id) is held out and never exported; chips come from the other polygons, and both maps are
scored on the held-out polygons' pixels. The random forest (scikit-learn) learns from the labelled pixels of
the training chips (each pixel once, band values as features). Metrics: ``landcover_plugin.core.accuracy``.
"""
import json
import shutil
import time

import numpy as np
import rasterio
from osgeo import ogr
from rasterio.features import rasterize
from sklearn.ensemble import RandomForestClassifier

from landcover_plugin.core.accuracy import ConfusionCounter, metrics_from_confusion
from landcover_plugin.core.chip_export import export_chips
from landcover_plugin.core.classify import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.raster_utils import valid_mask
from training.config import TrainConfig
from training.loop import train

from .common import RSTOOLBOX_IMAGE, RSTOOLBOX_POLYGONS, ZION_IMAGE, ZION_LABELS, figure, target

RF_OPTIONS = {"n_estimators": 100, "n_jobs": 2, "min_samples_leaf": 3, "max_samples": 0.25, "random_state": 0}
ZION_MINUTES, RSTOOLBOX_MINUTES = 8.0, 2.0
CLASS_FIELD = "class"


def run(settings) -> dict:
    work = settings.folder("quality")
    figures, details, notes = [], {}, []
    for name, scene in (("zion", zion), ("rstoolbox", rstoolbox)):
        result = scene(settings, work / name)
        details[name] = result
        ours, rf = result["ours"], result["rf"]
        for metric, label in (("mean_iou", "mIoU"), ("overall_accuracy", "overall accuracy")):
            diff = ours[metric] - rf[metric]
            figures.append(figure(
                f"quality.{name}.{metric}", f"{result['title']}: {label}", ours[metric], "",
                baseline={"label": "pixel random forest", "value": rf[metric], "unit": ""}, ratio=diff,
                target=target(ours[metric], ">", rf[metric], what="above the random forest"),
                note=f"{ours['n']} px scored"))
        notes.append(f"{result['title']}: {result['training_note']}")
    notes.append("Random forest: scikit-learn RandomForestClassifier(" +
                 ", ".join(f"{k}={v}" for k, v in _rf_options(settings).items()) + ").")
    what = ("Ours = U-Net (training defaults: base width 16, class-weighted loss, flips/rotations, one-cycle AdamW) "
            "with a CPU time budget, classified by `classify_raster`; the *Ratio* column is ours minus the forest.")
    return {"what": what, "figures": figures, "details": details, "notes": notes}


def zion(settings, work) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    chips = work / "chips"
    export_chips(ZION_IMAGE, chips, labels_raster=ZION_LABELS, chip_size=128, stride=64)
    trained, model_seconds = _train(settings, chips, work / "model.onnx", ZION_MINUTES)
    grids = split_label_grids(chips)
    scored = grids["val"] > 0
    result = compare(settings, chips, grids["train"], grids["val"], scored, work)
    result.update(title="Zion (NLCD, validation chips)", trainer=_trainer_view(trained),
                  training_note=_note(trained, model_seconds))
    return result


def rstoolbox(settings, work) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    held_out, kept, by_class = hold_out_polygons(RSTOOLBOX_POLYGONS)
    chips = work / "chips"
    export_chips(RSTOOLBOX_IMAGE, chips, labels_vector=RSTOOLBOX_POLYGONS, class_field=CLASS_FIELD, fids=kept,
                 chip_size=64, stride=32, min_labelled=0.01)
    trained, model_seconds = _train(settings, chips, work / "model.onnx", RSTOOLBOX_MINUTES)
    meta = json.loads((chips / "dataset.json").read_text())
    ids = {c["name"]: c["id"] for c in meta["classes"]}
    with rasterio.open(RSTOOLBOX_IMAGE) as src:
        reference = rasterize(((geom, ids[name]) for geom, name in polygons(RSTOOLBOX_POLYGONS, held_out)),
                              out_shape=(src.height, src.width), transform=src.transform, fill=0, dtype="uint8")
        reference[~valid_mask(src.read(), src.nodata)] = 0
    grids = split_label_grids(chips)
    result = compare(settings, chips, grids["train"], reference, reference > 0, work)
    result.update(title=f"rstoolbox ({len(held_out)} held-out polygons)", trainer=_trainer_view(trained),
                  held_out_fids=held_out, polygons_per_class=by_class,
                  training_note=_note(trained, model_seconds))
    return result


def compare(settings, chips, train_labels, reference, scored, work) -> dict:
    """Score our classified map and the forest's on the ``scored`` pixels of ``reference``."""
    meta = json.loads((chips / "dataset.json").read_text())
    image_path = meta["source"]["image"]
    class_ids = [c["id"] for c in meta["classes"]]
    classified = work / "classified.tif"
    classify_raster(image_path, work / "model.onnx", classified, overwrite=True, events=RecordingEvents())
    with rasterio.open(classified) as src:
        ours = src.read(1)
    with rasterio.open(image_path) as src:
        image = src.read()
    fit = train_labels > 0
    tick = time.perf_counter()
    forest = RandomForestClassifier(**_rf_options(settings)).fit(image[:, fit].T, train_labels[fit])
    rf_fit = time.perf_counter() - tick
    rf_map = forest.predict(image[:, scored].T)
    truth = reference[scored]
    return {"ours": score(truth, ours[scored], class_ids), "rf": score(truth, rf_map, class_ids),
            "rf_training_pixels": int(fit.sum()), "rf_fit_seconds": round(rf_fit, 1),
            "scored_pixels": int(scored.sum())}


def score(truth, mapped, class_ids) -> dict:
    counter = ConfusionCounter()
    counter.update(truth, mapped)
    m = metrics_from_confusion(counter.matrix(class_ids))
    return {"n": m["n"], "overall_accuracy": m["overall_accuracy"], "mean_iou": m["mean_iou"],
            "kappa": m["kappa"], "iou": [None if np.isnan(v) else round(float(v), 4) for v in m["iou"]]}


def split_label_grids(chips) -> dict:
    """Labels of the train and of the val chips on the source grid (0 elsewhere; each pixel once)."""
    meta = json.loads((chips / "dataset.json").read_text())
    with rasterio.open(meta["source"]["image"]) as src:
        shape = (src.height, src.width)
    grids = {"train": np.zeros(shape, np.uint8), "val": np.zeros(shape, np.uint8)}
    for chip in meta["chips"]:
        w = chip["window"]
        with rasterio.open(chips / chip["label"]) as src:
            label = src.read(1)
        part = grids[chip["split"]][w["row_off"]:w["row_off"] + w["height"], w["col_off"]:w["col_off"] + w["width"]]
        np.maximum(part, label[:part.shape[0], :part.shape[1]], out=part)
    return grids


def hold_out_polygons(path, every: int = 4):
    """Feature ids held out (every 4th of each class, by id) and kept; polygon counts per class."""
    source = ogr.Open(str(path))
    layer = source.GetLayer(0)
    by_class = {}
    for feature in layer:
        by_class.setdefault(feature.GetField(CLASS_FIELD), []).append(feature.GetFID())
    held_out = sorted(fid for fids in by_class.values() for i, fid in enumerate(sorted(fids)) if i % every == every - 1)
    kept = sorted(fid for fids in by_class.values() for fid in fids if fid not in held_out)
    return held_out, kept, {k: len(v) for k, v in by_class.items()}


def polygons(path, fids):
    source = ogr.Open(str(path))
    layer = source.GetLayer(0)
    for fid in fids:
        feature = layer.GetFeature(fid)
        yield json.loads(feature.GetGeometryRef().ExportToJson()), feature.GetField(CLASS_FIELD)


def _train(settings, chips, output, minutes):
    config = TrainConfig(dataset_dir=str(chips), output=str(output), epochs=2 if settings.quick else 300,
                         time_limit_minutes=0.2 if settings.quick else minutes)
    tick = time.perf_counter()
    outputs = train(config, RecordingEvents())
    return outputs, time.perf_counter() - tick


def _rf_options(settings) -> dict:
    return dict(RF_OPTIONS, n_estimators=10) if settings.quick else RF_OPTIONS


def _trainer_view(outputs) -> dict:
    return {k: outputs.get(k) for k in ("BEST_VAL_MIOU", "BEST_VAL_ACCURACY", "BEST_EPOCH", "epochs_run",
                                        "stopped_early", "device")}


def _note(outputs, seconds) -> str:
    return (f"trained {outputs['epochs_run']} epochs in {seconds / 60:.1f} min (best epoch {outputs['BEST_EPOCH']}, "
            f"{'stopped early, ' if outputs['stopped_early'] else ''}trainer's own val mIoU "
            f"{outputs['BEST_VAL_MIOU']}, accuracy {outputs['BEST_VAL_ACCURACY']})")
