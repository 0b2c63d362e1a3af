"""Map quality from a few digitised polygons (issue 11): the Zion sparse-polygon case, scored where no polygon is.

The 40 polygons of ``zion/training_polygons_sparse.gpkg`` lie in the western 60 % of the scene. Ours: chips
exported as the user guide advises for small polygons (64 px, stride 32; every other setting the exporter's
default), the trainer with its defaults (a CPU time cap of ``MINUTES``), ``classify_raster`` over the whole image
at the model's overlap and at 50 %. Both maps, the forest's and ours, are scored on every valid pixel of the
eastern 40 % of columns against NLCD 2011 (8 classes; metrics of ``landcover_plugin.core.assess.metrics``).
The forest: scikit-learn RandomForestClassifier (200 trees) on all polygon pixels (band values), alone and with
its class probabilities averaged over a 5x5 window (what spatial context is worth here). Also: the trainer's
held-out estimate (HELDOUT_OA) against the map's measured OA, how far the map depends on the overlap, and the
map with the classes weighed by the scene's estimated shares (the classifier's default for a model trained on
polygons) against the model's own probabilities.
"""
import json
import shutil
import time

import numpy as np
import rasterio
from rasterio.features import rasterize
from scipy.ndimage import uniform_filter
from sklearn.ensemble import RandomForestClassifier

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.rasters import valid_mask
from landcover_plugin.core.train.options import TrainConfig
from landcover_plugin.core.train.report import read_card
from training.loop import train

from .common import DATA, ZION_IMAGE, ZION_LABELS, figure, target, versus
from .quality import polygons, score

POLYGONS = DATA / "zion" / "training_polygons_sparse.gpkg"
CLASSES = DATA / "zion" / "classes.json"
CLASS_FIELD = "class_id"
EAST_FROM = 0.6
MINUTES = 10.0  # the CPU budget on 2 cores
FOREST_ID = 4  # NLCD's forest in classes.json: the scene's commonest class, whose share differs most between parts
FOREST = {"n_estimators": 200, "n_jobs": 2, "random_state": 0}


def run(settings) -> dict:
    work = settings.folder("sparse")
    result = zion_sparse(settings, work)
    ours, rf, smooth = result["ours"], result["rf"], result["rf_5x5"]
    figures = []
    for metric, label, margin in (("overall_accuracy", "overall accuracy", 0.03), ("mean_iou", "mIoU", 0.0)):
        figures.append(versus(
            f"sparse.zion.{metric}", f"Zion, 40 sparse polygons, east 40 % scored: {label}", ours[metric],
            "pixel random forest", rf[metric],
            target=target(ours[metric], ">=", round(rf[metric] + margin, 4),
                          what=f">= the forest{f' + {margin:g}' if margin else ''}"),
            note=f"{ours['n']} px scored; forest with 5x5 averaging of its probabilities: {smooth[metric]:.3f}"))
    own = result["ours_own"]
    for metric, label in (("overall_accuracy", "overall accuracy"), ("mean_iou", "mIoU")):
        figures.append(versus(
            f"sparse.zion.class_shares.{metric}", f"Zion sparse: {label} with the classes weighed by the scene's "
            f"estimated shares (the default) against the model's own probabilities", ours[metric],
            "class shares off", own[metric],
            target=target(ours[metric], ">=", own[metric], what=">= class shares off"),
            note=f"estimated shares ({result.get('shares_found_by') or 'em'}): " + ", ".join(
                f"{n} {100 * v:.1f} %" for n, v in zip(result["class_names"], result["scene_shares"]))))
    # the estimate is of the default map (classes weighed); the card keeps the unweighed map's beside it
    heldout, measured = result["heldout_oa"], ours["overall_accuracy"]
    unweighed = result.get("heldout_unweighed") or {}
    figures.append(versus(
        "sparse.zion.heldout", "Held-out estimate of the map's OA (HELDOUT_OA)", heldout,
        "the measured OA (east 40 %) of the map it describes (the default: classes weighed by the scene's shares)",
        measured,
        target=target(None if heldout is None else abs(heldout - measured), "<=", 0.10,
                      what="within 0.10 of the measured OA"), note=result["heldout_method"]))
    estimated = result["heldout_miou"]
    figures.append(versus(
        "sparse.zion.heldout_miou", "Held-out estimate of the map's mIoU (HELDOUT_MIOU)", estimated,
        "the measured mIoU (east 40 %) of the map it describes (classes weighed)", ours["mean_iou"],
        note=f"the polygons' IoUs weighted by the map's class shares say {result['heldout_polygon_miou']}; "
             f"the estimate takes the map's own expected errors (its class probabilities over a sample of it) "
             f"and brings them to the overall accuracy"))
    for metric, label in (("overall_accuracy", "OA"), ("mean_iou", "mIoU")):
        value = unweighed.get(metric)
        figures.append(versus(
            f"sparse.zion.heldout_unweighed.{metric}", f"Held-out estimate of the unweighed map's {label} (the "
            f"card's heldout.unweighed)", value, f"the measured {label} (east 40 %) of the map with class shares off",
            own[metric]))
    parts = result["parts"]
    worst = min(parts, key=lambda part: part["weighed"] - part["off"])
    figures.append(versus(
        "sparse.zion.class_shares.parts", "Zion sparse, on parts of the scene with other class shares: "
        "OA weighed by the whole scene's shares against class shares off (the worst part)", worst["weighed"],
        "class shares off", worst["off"], target=target(worst["weighed"], ">=", worst["off"],
                                                             what=">= class shares off on every part"),
        note="; ".join(f"{part['name']} (forest {100 * part['forest']:.0f} %): {part['weighed']:.3f} / "
                       f"{part['off']:.3f}" for part in parts) + f" (forest {100 * result['forest_share']:.0f} % of "
        f"the whole scene's labelled pixels)"))
    figures.append(figure(
        "sparse.zion.overlap", "Maps at the model's overlap and at 50 % overlap: identical pixels",
        result["overlap_agreement"], "", target=target(result["overlap_agreement"], ">=", 0.98),
        note=f"overlap {result['overlap_default_px']} px vs {result['overlap_half_px']} px"))
    figures.append(figure("sparse.zion.train_minutes", "Training time (CPU, 2 threads)", result["train_minutes"],
                          "min", target=target(result["train_minutes"], "<=", MINUTES)))
    names = result["class_names"]
    notes = ["Per-class IoU, ours / forest / forest 5x5: " + ", ".join(
        f"{n} {_two(a)} / {_two(b)} / {_two(c)}" for n, a, b, c in zip(names, ours["iou"], rf["iou"], smooth["iou"]))
        + ".", f"Trainer: {result['training_note']}."]
    if result["heldout_estimates"]:
        notes.append(f"Estimators of the map's OA kept in the card (measured {measured:.3f}): " + ", ".join(
            f"{name} {value:.3f}" for name, value in result["heldout_estimates"].items()) + ".")
    what = ("Ours = the trainer's defaults on chips of 64 px, stride 32 (exporter defaults otherwise: polygons held "
            "out whole for validation, then a refit on all), classified by `classify_raster`; the *Ratio* column is "
            "ours minus the baseline.")
    return {"what": what, "figures": figures, "details": result, "notes": notes}


def zion_sparse(settings, work) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    chips = work / "chips"
    classes = json.loads(CLASSES.read_text())["classes"]
    export_chips(ChipExportOptions(ZION_IMAGE, chips, labels_vector=POLYGONS, class_field=CLASS_FIELD,
                                   schema=classes, chip_size=64, stride=32))
    config = TrainConfig(dataset_dir=str(chips), output=str(work / "model.onnx"), threads=2,
                         time_limit_minutes=0.3 if settings.quick else MINUTES)
    if settings.quick:
        config.epochs = 2
    tick = time.perf_counter()
    trained = train(config, RecordingEvents())
    minutes = (time.perf_counter() - tick) / 60.0
    default = classify_raster(ClassifyOptions(ZION_IMAGE, config.output, work / "map.tif", overwrite=True),
                              RecordingEvents())
    half = classify_raster(ClassifyOptions(ZION_IMAGE, config.output, work / "map_50.tif", overlap=50.0,
                                           overwrite=True), RecordingEvents())
    own = classify_raster(ClassifyOptions(ZION_IMAGE, config.output, work / "map_own.tif", class_shares="off",
                                          overwrite=True), RecordingEvents())
    ours, ours_half, ours_own = _read(default["OUTPUT"]), _read(half["OUTPUT"]), _read(own["OUTPUT"])
    with rasterio.open(ZION_IMAGE) as src:
        image, transform, nodata = src.read(), src.transform, src.nodata
    valid = valid_mask(image, nodata)
    truth = _read(ZION_LABELS)
    east = valid & (truth != 255)
    east[:, :int(np.ceil(EAST_FROM * truth.shape[1]))] = False
    labels = rasterize(((g, int(c)) for g, c in polygons(POLYGONS, None, CLASS_FIELD)), out_shape=truth.shape,
                       transform=transform, fill=0, dtype="uint8")
    labels[~valid] = 0
    forest, forest_5x5 = _forest_maps(image, labels, valid, settings)
    ids = [c["id"] for c in classes]
    card = read_card(config.output)
    return {"ours": score(truth[east], ours[east], ids), "rf": score(truth[east], forest[east], ids),
            "ours_own": score(truth[east], ours_own[east], ids),
            "scene_shares": (card.get("class_shares") or {}).get("scene_shares") or [],
            "shares_found_by": (card.get("class_shares") or {}).get("found_by"),
            "rf_5x5": score(truth[east], forest_5x5[east], ids), "class_names": [c["name"] for c in classes],
            "heldout_oa": trained.get("HELDOUT_OA"), "heldout_miou": trained.get("HELDOUT_MIOU"),
            "heldout_polygon_miou": (trained.get("HELDOUT") or {}).get("polygon_mean_iou"),
            "heldout_method": (trained.get("HELDOUT") or {}).get("method", "no held-out estimate"),
            "heldout_estimates": (trained.get("HELDOUT") or {}).get("estimates") or {},
            "heldout_unweighed": (trained.get("HELDOUT") or {}).get("unweighed") or {},
            "parts": _parts(truth, ours, ours_own, valid & (truth != 255) & (labels == 0), ids),
            "forest_share": float((truth[valid & (truth != 255)] == FOREST_ID).mean()),
            "overlap_agreement": float((ours[valid] == ours_half[valid]).mean()),
            "overlap_default_px": default["OVERLAP"], "overlap_half_px": half["OVERLAP"],
            "train_minutes": round(minutes, 2), "training_pixels": int((labels > 0).sum()),
            "training_note": (f"{trained['architecture']}, {trained['epochs_run']} epochs in {minutes:.1f} min "
                              f"(best held-out epoch {trained['BEST_EPOCH']}, held-out mIoU "
                              f"{trained['BEST_VAL_MIOU']})")}


def _parts(truth, weighed, off, scored, ids) -> list:
    """OA of the weighed and the unweighed map on parts of the scene (no polygon pixel) whose class shares differ
    from the whole scene's, from which the weights were estimated: does the weighing hold where the shares differ?"""
    height, width = truth.shape
    east, half = int(np.ceil(EAST_FROM * width)), height // 2
    boxes = {"east, north half": (0, half, east, width), "east, south half": (half, height, east, width),
             "west, north half": (0, half, 0, east), "west, south half": (half, height, 0, east),
             "south-east corner": (2 * height // 3, height, int(0.75 * width), width)}
    parts = []
    for name, (r0, r1, c0, c1) in boxes.items():
        inside = np.zeros_like(scored)
        inside[r0:r1, c0:c1] = True
        inside &= scored
        parts.append({"name": name, "forest": float((truth[inside] == FOREST_ID).mean()),
                      "weighed": score(truth[inside], weighed[inside], ids)["overall_accuracy"],
                      "off": score(truth[inside], off[inside], ids)["overall_accuracy"]})
    return parts


def _forest_maps(image, labels, valid, settings):
    fit = labels > 0
    options = dict(FOREST, n_estimators=20) if settings.quick else FOREST
    forest = RandomForestClassifier(**options).fit(image[:, fit].T, labels[fit])
    probs = np.zeros((len(forest.classes_),) + valid.shape, np.float32)
    probs[:, valid] = forest.predict_proba(image[:, valid].T).T
    weight = uniform_filter(valid.astype(np.float32), 5, mode="constant")
    smooth = np.stack([uniform_filter(p, 5, mode="constant") for p in probs]) / np.maximum(weight, 1e-6)
    maps = []
    for p in (probs, smooth):
        mapped = forest.classes_[p.argmax(0)].astype(np.uint8)
        mapped[~valid] = 0
        maps.append(mapped)
    return maps


def _read(path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def _two(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"
