"""The scene-pretrained encoder on rstoolbox's polygons (issue 17): 4-fold polygon cross-validation.

The folds of ``quality.rstoolbox`` (every 4th polygon of each class held out and never exported); in each
fold the same network is trained for the same minutes from a random start and from an encoder pretrained on
the rstoolbox raster (masked-image reconstruction; the pretraining runs once, in the first fold, and its
encoder is reused by the others: it never saw a label), and the pixel random forest learns from the fold's
kept polygons. All three maps are scored on the held-out polygons' pixels, pooled over the folds.
"""
import time

import numpy as np
import rasterio
from sklearn.ensemble import RandomForestClassifier

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.rasters import valid_mask
from landcover_plugin.core.train.options import TrainConfig
from training.loop import train

from .common import RSTOOLBOX_IMAGE
from .quality import FOLDS, _rf_options, rstoolbox_fold, rstoolbox_schema, score, split_label_grids


def rstoolbox_folds(settings, work, architecture: str, train_minutes: float, pretrain_minutes: float) -> dict:
    """``{"random": scores, "scene": scores, "rf": scores, "notes": [...]}`` pooled over the folds."""
    schema = rstoolbox_schema()
    ids = {c["name"]: c["id"] for c in schema}
    with rasterio.open(RSTOOLBOX_IMAGE) as src:
        image, transform, nodata = src.read(), src.transform, src.nodata
    valid = valid_mask(image, nodata)
    pooled = {"truth": [], "random": [], "scene": [], "rf": []}
    notes = []
    for fold in range(2 if settings.quick else FOLDS):
        fold_work = work / f"fold{fold}"
        _, chips, reference = rstoolbox_fold(fold, fold_work, schema, valid.shape, transform)
        scored = (reference > 0) & valid
        pooled["truth"].append(reference[scored])
        for name, pretrain in (("random", 0.0), ("scene", pretrain_minutes)):
            out = fold_work / f"{name}.onnx"
            config = TrainConfig(dataset_dir=str(chips), output=str(out), architecture=architecture, threads=2,
                                 time_limit_minutes=train_minutes, scene_pretrain_minutes=pretrain,
                                 cv_folds=1)  # the bench's folds score the map
            tick = time.perf_counter()
            trained = train(config, RecordingEvents())
            mapped = classify_raster(ClassifyOptions(RSTOOLBOX_IMAGE, str(out), fold_work / f"{name}.tif",
                                                     overwrite=True), RecordingEvents())
            with rasterio.open(mapped["OUTPUT"]) as src:
                pooled[name].append(src.read(1)[scored])
            notes.append(f"fold {fold + 1} {name}: {trained['epochs_run']} epochs in "
                         f"{(time.perf_counter() - tick) / 60:.1f} min")
        grids = split_label_grids(chips)
        kept_labels = np.maximum(grids["train"], grids["val"])
        fit = kept_labels > 0
        forest = RandomForestClassifier(**_rf_options(settings)).fit(image[:, fit].T, kept_labels[fit])
        pooled["rf"].append(forest.predict(image[:, scored].T))
    truth = np.concatenate(pooled["truth"])
    result = {name: score(truth, np.concatenate(pooled[name]), list(ids.values()))
              for name in ("random", "scene", "rf")}
    result["notes"] = notes
    return result
