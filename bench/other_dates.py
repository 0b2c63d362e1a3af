"""Maps of another date: the Zion sparse-polygon model on copies of the scene's east 40 % as another day's light
and haze would make them, trained without and with colour augmentation (training/dataset.py ``augment``).

The same chips as ``sparse`` (64 px, stride 32, polygons held out whole, then a refit on all), the trainer's
defaults for ``sparse.MINUTES`` of CPU, once with ``colour_augment`` off and once on. The east 40 % of columns is cut
into a raster of its own and altered per band, x' = g x + o on the digital numbers: as it is; *haze, lower sun*
(g 0.9, o +15, +10, +6, +3 % of the band means from blue to NIR: scattering is stronger at short wavelengths);
*15 % brighter*; *20 % darker*. Each copy is classified by ``classify_raster`` and scored against NLCD on every
valid pixel. One training each (no median): the sparse case's seeds spread by about +-0.03 in overall accuracy.

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
from landcover_plugin.core.rasters import valid_mask
from landcover_plugin.core.train.options import TrainConfig
from training.loop import train

from .common import ZION_IMAGE, ZION_LABELS, Settings, figure, target
from .quality import score
from .sparse import CLASS_FIELD, CLASSES, EAST_FROM, MINUTES, POLYGONS

HAZE = (0.15, 0.10, 0.06, 0.03)  # offsets as shares of the band means, blue, green, red, NIR
COPIES = {"as it is": (1.0, 0.0), "haze, lower sun": (0.9, HAZE), "15 % brighter": (1.15, 0.0),
          "20 % darker": (0.8, 0.0)}


def run(settings) -> dict:
    result = measure(settings, settings.folder("other_dates"), 0.3 if settings.quick else MINUTES)
    figures = []
    for copy in COPIES:
        plain, augmented = result["plain"][copy], result["augmented"][copy]
        for metric, label in (("overall_accuracy", "overall accuracy"), ("mean_iou", "mIoU")):
            # another date should gain; the scene itself may lose a little (up to 0.05)
            limit = plain[metric] - 0.05 if copy == "as it is" else plain[metric]
            figures.append(figure(
                f"other_dates.{copy}.{metric}", f"Zion east 40 %, {copy}, trained with colour augmentation: {label}",
                augmented[metric], "", baseline={"label": "colour augmentation off", "value": plain[metric],
                                                 "unit": ""},
                ratio=augmented[metric] - plain[metric],
                target=target(augmented[metric], ">=", limit, what=(
                    ">= off - 0.05" if copy == "as it is" else ">= colour augmentation off")),
                note=f"{augmented['n']} px scored"))
    what = (f"The trainer's defaults on the Zion sparse-polygon chips for {result['minutes']:g} min, colour "
            f"augmentation off and on; each copy of the scene's east 40 % (digital numbers x gain + offset) "
            f"classified and scored against NLCD; the *Ratio* column is on minus off. One training each.")
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
    result = {"minutes": minutes, "notes": []}
    for name, colour in (("plain", False), ("augmented", True)):
        out = work / f"{name}.onnx"
        config = TrainConfig(dataset_dir=str(chips), output=str(out), threads=2, time_limit_minutes=minutes,
                             colour_augment=colour)
        tick = time.perf_counter()
        trained = train(config, RecordingEvents())
        result["notes"].append(f"{name}: {trained['epochs_run']} epochs in {(time.perf_counter() - tick) / 60:.1f} "
                               f"min, held-out OA {trained.get('HELDOUT_OA')}")
        result[name] = {}
        for copy, (path, valid) in copies.items():
            mapped = classify_raster(ClassifyOptions(str(path), str(out), work / f"{name}_map.tif", overwrite=True),
                                     RecordingEvents())
            with rasterio.open(mapped["OUTPUT"]) as src:
                ours = src.read(1)
            scored = valid & (truth != 255)
            result[name][copy] = score(truth[scored], ours[scored], ids)
    return result


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
        altered = east.astype(np.float64) * gain + (np.asarray(offset) * means)[:, None, None]
        altered = np.clip(np.round(altered), 0, 65534).astype(np.uint16)
        altered[:, ~valid] = nodata
        path = work / f"east_{number}.tif"
        with rasterio.open(path, "w", **profile) as out:
            out.write(altered)
        found[copy] = (path, valid)
    return found


if __name__ == "__main__":
    settings = Settings()
    found = measure(settings, settings.folder("other_dates"), MINUTES)
    print(json.dumps(found, indent=1, default=str))
