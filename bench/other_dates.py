"""Maps of another date: the Zion sparse-polygon model on copies of the scene's east 40 % as another day's light
and haze would make them, trained without and with colour augmentation (training/dataset.py ``augment``).

The same chips as ``sparse`` (64 px, stride 32, polygons held out whole, then a refit on all), the trainer's
defaults for ``sparse.MINUTES`` of CPU, once with ``colour_augment`` off and once on. The east 40 % of columns is cut
into a raster of its own and altered per band, x' = g x + o on the digital numbers: as it is; *haze, lower sun*
(g 0.9, o +15, +10, +6, +3 % of the band means from blue to NIR: scattering is stronger at short wavelengths);
*15 % brighter*; *20 % darker*; the haze again on a copy with noise (2 % of the band means), a pixel east of the
training raster's grid and its south quarter replaced by other ground (changed land cover), scored where nothing
changed. Each copy is classified by ``classify_raster`` and scored against NLCD on every valid pixel. One training
each (no median): the sparse case's seeds spread by about +-0.03 in overall accuracy. The model trained without
colour augmentation then classifies each copy with ``match_training_raster`` (classify/radiometry.py), against its
own unmatched maps. The light sensitivity each training measured (training/light_sensitivity.py: labels changed
over a sample of the training raster by 5 % more or less light) is set side by side.

``python -m bench.other_dates`` runs it alone (prints JSON).
"""
import json
import time

import numpy as np
import rasterio

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.map_record import from_tags
from landcover_plugin.core.model.session import load_model
from landcover_plugin.core.rasters import valid_mask
from landcover_plugin.core.train.options import TrainConfig
from training.loop import train

from .common import ZION_IMAGE, ZION_LABELS, Settings, target, versus
from .quality import score
from .sparse import CLASS_FIELD, CLASSES, EAST_FROM, MINUTES, POLYGONS

# haze and lower sun, noise, a pixel east of the training raster's grid, its south quarter other ground (the north
# quarter, mirrored: changed land cover); scored where nothing changed
CHANGED = "haze, noise, a pixel off, a quarter changed"

HAZE = (0.15, 0.10, 0.06, 0.03)  # offsets as shares of the band means, blue, green, red, NIR
COPIES = {"as it is": (1.0, 0.0), "haze, lower sun": (0.9, HAZE), "15 % brighter": (1.15, 0.0),
          "20 % darker": (0.8, 0.0), CHANGED: (0.9, HAZE)}
NOISE = 0.02  # of the band means, Gaussian, on the changed copy


def run(settings) -> dict:
    result = measure(settings, settings.folder("other_dates"), 0.3 if settings.quick else MINUTES)
    figures = []
    for copy in COPIES:
        plain, augmented = result["plain"][copy], result["augmented"][copy]
        for metric, label in (("overall_accuracy", "overall accuracy"), ("mean_iou", "mIoU")):
            # another date should gain; the scene itself may lose a little (up to 0.05)
            limit = plain[metric] - 0.05 if copy == "as it is" else plain[metric]
            figures.append(versus(
                f"other_dates.{copy}.{metric}", f"Zion east 40 %, {copy}, trained with colour augmentation: {label}",
                augmented[metric], "colour augmentation off", plain[metric],
                target=target(augmented[metric], ">=", limit, what=(
                    ">= off - 0.05" if copy == "as it is" else ">= colour augmentation off")),
                note=f"{augmented['n']} px scored"))
    for copy in COPIES:  # the model without colour augmentation, matched to the training raster or not
        plain, matched = result["plain"][copy], result["matched"][copy]
        for metric, label in (("overall_accuracy", "overall accuracy"), ("mean_iou", "mIoU")):
            limit = plain[metric] - 0.01 if copy == "as it is" else plain[metric]
            figures.append(versus(
                f"other_dates.matched.{copy}.{metric}", f"Zion east 40 %, {copy}, matched to the training raster: "
                f"{label}", matched[metric], "not matched", plain[metric],
                target=target(matched[metric], ">=", limit, what=(
                    ">= not matched - 0.01" if copy == "as it is" else ">= not matched")),
                note=f"{matched['n']} px scored; {result['lines'][copy]}"))
    for side in ("brighter", "darker"):  # the trainer's own measurement (training/light_sensitivity.py)
        plain, augmented = result["light"]["plain"], result["light"]["augmented"]
        if plain and augmented:
            figures.append(versus(
                f"other_dates.light_sensitivity.{side}", f"Labels changed by 5 % {side} light in every band (the "
                f"trainer's light sensitivity), trained with colour augmentation", augmented[side],
                "colour augmentation off", plain[side],
                target=target(augmented[side], "<=", plain[side], what="<= colour augmentation off"),
                note=f"over {augmented['tiles']} tiles of the training raster, classes weighed"))
    what = (f"The trainer's defaults on the Zion sparse-polygon chips for {result['minutes']:g} min, colour "
            f"augmentation off and on; each copy of the scene's east 40 % (digital numbers x gain + offset; the "
            f"last also noisy, a pixel off and with a quarter of other ground, scored where nothing changed) "
            f"classified and scored against NLCD; the *Ratio* column is on minus off. One training each. Then the "
            f"model without colour augmentation on the same copies with *Match to the training raster* "
            f"(classify/radiometry.py), against the same model unmatched.")
    return {"what": what, "figures": figures, "details": result, "notes": result["notes"]}


def measure(settings, work, minutes: float) -> dict:
    chips = work / "chips"
    if not (chips / "dataset.json").is_file():
        classes = json.loads(CLASSES.read_text())["classes"]
        export_chips(ChipExportOptions(ZION_IMAGE, chips, labels_vector=POLYGONS, class_field=CLASS_FIELD,
                                       schema=classes, chip_size=64, stride=32))
    copies = _copies(work)
    with rasterio.open(ZION_LABELS) as src:
        truth = src.read(1)[:, int(np.ceil(EAST_FROM * src.width)):]
    ids = [c["id"] for c in json.loads(CLASSES.read_text())["classes"]]
    result = {"minutes": minutes, "notes": [], "lines": {}, "light": {}}
    for name, colour in (("plain", False), ("augmented", True)):
        out = work / f"{name}.onnx"
        config = TrainConfig(dataset_dir=str(chips), output=str(out), threads=2, time_limit_minutes=minutes,
                             colour_augment=colour)
        tick = time.perf_counter()
        trained = train(config, RecordingEvents())
        result["notes"].append(f"{name}: {trained['epochs_run']} epochs in {(time.perf_counter() - tick) / 60:.1f} "
                               f"min, held-out OA {trained.get('HELDOUT_OA')}")
        result["light"][name] = load_model(out, events=RecordingEvents()).card.get("light_sensitivity")
        result[name] = {}
        for copy, (path, valid) in copies.items():
            result[name][copy] = _scored(path, out, work / f"{name}_map.tif", valid, truth, ids)
        if not colour:
            result["matched"] = {}
            for copy, (path, valid) in copies.items():
                result["matched"][copy] = _scored(path, out, work / "matched_map.tif", valid, truth, ids, True)
                with rasterio.open(work / "matched_map.tif") as src:
                    lines = (from_tags(src.tags()) or {}).get("matched_to_training")
                result["lines"][copy] = (f"gains {', '.join(f'{g:.3f}' for g in lines['gain'])}, "
                                         f"{lines['pairs_kept']:.0%} of the pixel pairs kept"
                                         if lines else "not matched")
    return result


def _scored(path, model, output, valid, truth, ids, match: bool = False) -> dict:
    """Classify ``path`` with ``model`` (matched to the training raster or not) and score it against NLCD over
    ``valid``."""
    mapped = classify_raster(ClassifyOptions(str(path), str(model), output, overwrite=True,
                                             match_training_raster=match), RecordingEvents())
    with rasterio.open(mapped["OUTPUT"]) as src:
        ours = src.read(1)
    scored = valid & (truth != 255)
    return score(truth[scored], ours[scored], ids)


def _copies(work) -> dict:
    """``{copy: (GeoTIFF path, valid pixels)}``: the east 40 % of the Zion image, altered as :data:`COPIES` say."""
    with rasterio.open(ZION_IMAGE) as src:
        column = int(np.ceil(EAST_FROM * src.width))
        east = src.read()[:, :, column:]
        profile = dict(src.profile, width=east.shape[2], transform=src.transform * src.transform.translation(column, 0))
        nodata = src.nodata
    valid = valid_mask(east, nodata)
    means = np.array([band[valid].mean() for band in east])
    found = {}
    for number, (copy, (gain, offset)) in enumerate(COPIES.items()):
        altered, scored = east.astype(np.float64), valid
        if copy == CHANGED:
            altered, scored = _changed(altered, valid, means)
        altered = altered * gain + (np.asarray(offset) * means)[:, None, None]
        altered = np.clip(np.round(altered), 0, 65534).astype(np.uint16)
        altered[:, ~valid] = nodata
        path = work / f"east_{number}.tif"
        with rasterio.open(path, "w", **profile) as out:
            out.write(altered)
        found[copy] = (path, scored)
    return found


def _changed(east, valid, means):
    """The east 40 % a pixel east of its grid, with noise, its south quarter replaced by the north quarter mirrored;
    and where to score it (valid, unchanged, not the column moved in)."""
    rows = east.shape[1] // 4
    moved = np.roll(east, 1, axis=2)
    moved[:, -rows:] = moved[:, :rows][:, ::-1]
    moved += np.random.default_rng(0).normal(0, 1, moved.shape) * (NOISE * means)[:, None, None]
    scored = valid.copy()
    scored[-rows:], scored[:, 0] = False, False
    return moved, scored


if __name__ == "__main__":
    settings = Settings()
    found = measure(settings, settings.folder("other_dates"), MINUTES)
    print(json.dumps(found, indent=1, default=str))
