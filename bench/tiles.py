"""Inference tiles independent of the training chip size: a model trained on 64 px chips (exported with dynamic
height and width) classifies a 2256x2856 px mosaic of the real Zion image at its own 64 px tile and at the tile
the classifier chooses (``--tile-size 0``), interleaved; both are compared with bare onnxruntime over
their own tiles in memory, and with each other (share of classified pixels with the same class)."""
import time

import numpy as np
import rasterio

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster

from .assets import map_agreement, mosaic_vrt, trainer_model
from .common import ZION_LABELS, figure, median, target
from .inference import bare_run, tiles_in_memory_at

AGREEMENT_TARGET = 0.99
MINUTES = 3.0


def run(settings) -> dict:
    work = settings.folder("tiles")
    model, _, described = trainer_model(settings, 64, 0.2 if settings.quick else MINUTES)
    raster = mosaic_vrt(work / "zion_2x.vrt", 2256, 2856)
    reference = mosaic_vrt(work / "nlcd_2x.vrt", 2256, 2856, source=ZION_LABELS)
    sizes = {"model tile": None, "automatic": 0}
    outputs = {name: work / f"{name.replace(' ', '_')}.tif" for name in sizes}
    seconds, results = {name: [] for name in sizes}, {}
    for round_ in range(settings.runs + 1):  # round 0 warms up and is not counted
        for name, tile in sizes.items():
            tick = time.perf_counter()
            results[name] = classify_raster(ClassifyOptions(raster, model, outputs[name], tile_size=tile,
                                                            device="cpu", overwrite=True))
            if round_:
                seconds[name].append(time.perf_counter() - tick)
    bare = {}
    for name, result in results.items():
        batches, loaded = tiles_in_memory_at(model, raster, "cpu", result["TILE"], result["OVERLAP"],
                                             result["BATCH_SIZE"])
        bare[name] = median([bare_run(loaded, batches) for _ in range(settings.runs)])
        del batches
    megapixels = results["automatic"]["MEGAPIXELS"]
    big = results["automatic"]
    saved = 1.0 - median(seconds["automatic"]) / median(seconds["model tile"])
    agreement = map_agreement(outputs["model tile"], outputs["automatic"])
    accuracy = {name: overall_accuracy(outputs[name], reference) for name in sizes}
    figures = []
    for name, result in results.items():
        figures.append(figure(
            f"tiles.{name.replace(' ', '_')}", f"Classify throughput, {result['TILE']} px tiles ({name}; "
            f"{result['tiles']} tiles, batch {result['BATCH_SIZE']}, overlap {result['OVERLAP']} px)",
            median([megapixels / s for s in seconds[name]]), "Mpx/s", runs=[megapixels / s for s in seconds[name]],
            baseline={"label": f"bare onnxruntime over the same {result['tiles_run']} tiles in memory",
                      "value": megapixels / bare[name], "unit": "Mpx/s"},
            ratio=median(seconds[name]) / bare[name]))
    figures += [
        figure("tiles.time_saved", f"Time saved by {big['TILE']} px tiles over the model's 64 px tiles", saved,
               "", note=f"{median(seconds['model tile']):.2f} s -> {median(seconds['automatic']):.2f} s"),
        figure("tiles.agreement", f"Maps at {big['TILE']} px and at 64 px tiles: same class", agreement, "",
               target=target(agreement, ">=", AGREEMENT_TARGET)),
        figure("tiles.accuracy", f"Overall accuracy against NLCD at {big['TILE']} px tiles", accuracy["automatic"],
               "", baseline={"label": "at the model's 64 px tiles", "value": accuracy["model tile"], "unit": ""},
               ratio=accuracy["automatic"] - accuracy["model tile"]),
    ]
    what = f"Model: {described}. Raster: {raster.name}, {megapixels:.1f} Mpx; CPU, the card's overlap."
    return {"what": what, "figures": figures,
            "details": {"seconds": seconds, "bare_seconds": bare,
                        "tiles": {n: {k: r[k] for k in ("TILE", "tiles", "BATCH_SIZE", "OVERLAP", "model_seconds")}
                                  for n, r in results.items()}}}


def overall_accuracy(classified, reference) -> float:
    """Share of NLCD-labelled pixels (1..254) that the map gives the same class."""
    with rasterio.open(classified) as src:
        labels = src.read(1)
    with rasterio.open(reference) as src:
        truth = src.read(1)
    scored = (truth > 0) & (truth < 255) & (labels > 0)
    return float(np.mean(labels[scored] == truth[scored]))
