"""Scene-pretrained encoder against random initialisation (issue 17), on the Zion sparse polygons (east 40 % scored).

The same chips as ``sparse`` (64 px, stride 32, polygons held out whole, then a refit on all); the same
network, ``unet_resnet18`` (base width 16), trained for ``TRAIN_MINUTES`` of CPU from (a) a random start and
(b) an encoder pretrained first for ``PRETRAIN_MINUTES`` on the Zion raster itself (masked-image
reconstruction, no labels: training/scene_pretrain.py), then frozen for 2 epochs and tuned at 0.1 x the
learning rate. Both maps by ``classify_raster``, scored against NLCD on every valid pixel of the eastern 40 %
of columns, beside the pixel random forest of ``sparse`` (200 trees on the polygon pixels).

``python -m bench.pretrained [train minutes] [pretrain minutes] [--no-refit]`` runs it alone (prints JSON).
Measured by `make bench` on the idle 2-core CPU (4 min training, 3 min pretraining; one run): random start OA
0.570, mIoU 0.158; scene-pretrained 0.501 / 0.132; forest 0.557 / 0.148. rstoolbox folds (bench/pretrained_folds.py,
1 min a model): random 0.974 / 0.923, scene-pretrained 0.959 / 0.869, forest 0.998 / 0.993. Before early stopping
waited for the learning rate to fall to half its peak: random 0.450 / 0.121 and 0.929 / 0.823, scene-pretrained
0.321 / 0.079 and 0.986 / 0.941 (the random start stopped at 31 epochs on Zion, now 68).
"""
import json
import sys
import time

import numpy as np
import rasterio
from rasterio.features import rasterize

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.rasters import valid_mask
from landcover_plugin.core.train.options import TrainConfig
from training.loop import train

from .common import ZION_IMAGE, ZION_LABELS, Settings, target, versus
from .pretrained_folds import rstoolbox_folds
from .quality import polygons, score
from .sparse import CLASS_FIELD, CLASSES, EAST_FROM, POLYGONS, _forest_maps

TRAIN_MINUTES = 4.0
PRETRAIN_MINUTES = 3.0
ARCHITECTURE = "unet_resnet18"
FOLD_MINUTES = 1.0  # per model and rstoolbox fold (a small raster)


def run(settings) -> dict:
    result = measure(settings, settings.folder("pretrained"), 0.3 if settings.quick else TRAIN_MINUTES,
                     0.2 if settings.quick else PRETRAIN_MINUTES)
    random, scene, rf = result["random"], result["scene"], result["rf"]
    figures = []
    for metric, label in (("overall_accuracy", "overall accuracy"), ("mean_iou", "mIoU")):
        figures.append(versus(
            f"pretrained.zion.{metric}", f"Zion sparse polygons, {ARCHITECTURE} scene-pretrained: {label}",
            scene[metric], "the same net from a random start", random[metric],
            target=target(scene[metric], ">=", random[metric], what=">= the random start"),
            note=f"{scene['n']} px scored; {result['notes']['scene']}; random start: {result['notes']['random']}; "
                 f"pixel random forest: {rf[metric]:.3f}"))
    folds = rstoolbox_folds(settings, settings.folder("pretrained") / "rstoolbox", ARCHITECTURE,
                            0.2 if settings.quick else FOLD_MINUTES, 0.2 if settings.quick else PRETRAIN_MINUTES / 2)
    result["rstoolbox"] = folds
    for metric, label in (("overall_accuracy", "overall accuracy"), ("mean_iou", "mIoU")):
        figures.append(versus(
            f"pretrained.rstoolbox.{metric}", f"rstoolbox 4-fold polygon CV, {ARCHITECTURE} scene-pretrained: "
            f"{label}", folds["scene"][metric], "the same net from a random start", folds["random"][metric],
            target=target(folds["scene"][metric], ">=", folds["random"][metric], what=">= the random start"),
            note=f"{folds['scene']['n']} held-out px; pixel random forest: {folds['rf'][metric]:.3f}"))
    what = (f"{ARCHITECTURE} trained {result['train_minutes']:g} min on the Zion sparse-polygon chips from a "
            f"random start and from an encoder pretrained {result['pretrain_minutes']:g} min on the scene "
            f"(masked-image reconstruction); the *Ratio* column is pretrained minus random; the notes give the "
            f"pixel random forest's score. The trainer's default net on the same case: see `sparse`. rstoolbox: "
            f"the folds of `quality`, {FOLD_MINUTES:g} min per model, the encoder pretrained "
            f"{PRETRAIN_MINUTES / 2:g} min once on the rstoolbox raster and reused by every fold.")
    return {"what": what, "figures": figures, "details": result, "notes": ["rstoolbox: " + "; ".join(folds["notes"])]}


def measure(settings, work, train_minutes: float, pretrain_minutes: float, refit: bool = True) -> dict:
    chips = work / "chips"
    if not (chips / "dataset.json").is_file():
        classes = json.loads(CLASSES.read_text())["classes"]
        export_chips(ChipExportOptions(ZION_IMAGE, chips, labels_vector=POLYGONS, class_field=CLASS_FIELD,
                                       schema=classes, chip_size=64, stride=32))
    with rasterio.open(ZION_IMAGE) as src:
        image, transform = src.read(), src.transform
        valid = valid_mask(image, src.nodata)
    with rasterio.open(ZION_LABELS) as src:
        truth = src.read(1)
    east = valid & (truth != 255)
    east[:, :int(np.ceil(EAST_FROM * truth.shape[1]))] = False
    ids = [c["id"] for c in json.loads(CLASSES.read_text())["classes"]]
    result = {"train_minutes": train_minutes, "pretrain_minutes": pretrain_minutes, "notes": {}}
    labels = rasterize(((g, int(c)) for g, c in polygons(POLYGONS, None, CLASS_FIELD)), out_shape=truth.shape,
                       transform=transform, fill=0, dtype="uint8")
    labels[~valid] = 0
    forest, _ = _forest_maps(image, labels, valid, settings)
    result["rf"] = score(truth[east], forest[east], ids)
    for name, pretrain in (("random", 0.0), ("scene", pretrain_minutes)):
        out = work / f"{name}.onnx"
        config = TrainConfig(dataset_dir=str(chips), output=str(out), architecture=ARCHITECTURE, threads=2,
                             time_limit_minutes=train_minutes, scene_pretrain_minutes=pretrain, refit=refit)
        tick = time.perf_counter()
        trained = train(config, RecordingEvents())
        seconds = time.perf_counter() - tick
        mapped = classify_raster(ClassifyOptions(ZION_IMAGE, str(out), work / f"{name}.tif", overwrite=True),
                                 RecordingEvents())
        with rasterio.open(mapped["OUTPUT"]) as src:
            ours = src.read(1)
        result[name] = score(truth[east], ours[east], ids)
        result["notes"][name] = (f"{trained['epochs_run']} epochs in {seconds / 60:.1f} min, held-out OA "
                                 f"{trained.get('HELDOUT_OA')}")
    return result


if __name__ == "__main__":
    minutes = [float(a) for a in sys.argv[1:3]] or [TRAIN_MINUTES, PRETRAIN_MINUTES]
    settings = Settings()
    found = measure(settings, settings.folder("pretrained"), *minutes, refit="--no-refit" not in sys.argv)
    print(json.dumps({k: found[k] for k in ("random", "scene", "rf", "notes", "train_minutes", "pretrain_minutes")},
                     indent=1, default=str))
