"""Inference tiles independent of the training chip size: a model trained on 64 px chips (exported with dynamic
height and width) classifies a 2256x2856 px mosaic of the real Zion image at its own 64 px tile, at the tile the
classifier chooses (``--tile-size 0``: within the largest tile the trainer measured at export to keep >= 99 % of
the labels, the card's ``tile_agreement``) and at 512 px asked for, interleaved; each is compared with bare
onnxruntime over its own tiles in memory, and the bigger tiles' maps with the model tile's (share of classified
pixels with the same class) and with NLCD."""
import time

import numpy as np
import rasterio

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.model.session import load_model

from .assets import map_agreement, mosaic_vrt, trainer_model
from .common import ZION_LABELS, figure, median, paired_ratio, target, versus
from .inference import RATIO_TARGET, bare_run, bare_side_by_side, per_run, same_way_row, tiles_in_memory_at

AGREEMENT_TARGET = 0.99
ASKED = 512
MINUTES = 3.0


def run(settings) -> dict:
    work = settings.folder("tiles")
    model, _, described = trainer_model(settings, 64, 0.2 if settings.quick else MINUTES)
    raster = mosaic_vrt(work / "zion_2x.vrt", 2256, 2856)
    reference = mosaic_vrt(work / "nlcd_2x.vrt", 2256, 2856, source=ZION_LABELS)
    sizes = {"model tile": load_model(model, device="cpu").tile, "automatic": 0, f"{ASKED} px asked": ASKED}
    outputs = {name: work / f"{name.replace(' ', '_')}.tif" for name in sizes}
    seconds, bare_seconds, results = {name: [] for name in sizes}, {name: [] for name in sizes}, {}

    def classify(name):
        tick = time.perf_counter()
        results[name] = classify_raster(ClassifyOptions(raster, model, outputs[name], tile_size=sizes[name],
                                                        device="cpu", overwrite=True))
        return time.perf_counter() - tick

    for name in sizes:  # warm-up, untimed: tells each run's tile, overlap and batch
        classify(name)
    tiles = {name: tiles_in_memory_at(model, raster, "cpu", result["TILE"], result["OVERLAP"], result["BATCH_SIZE"])
             for name, result in results.items()}
    own = load_model(model, device="cpu", streams=0)  # as the classifier loads it
    same_way = []
    for _ in range(settings.runs):  # ours and bare onnxruntime in turn: the machine's load hits both alike
        for name in sizes:
            seconds[name].append(classify(name))
            bare_seconds[name].append(bare_run(tiles[name][1], tiles[name][0]))
            if name == "model tile":
                same_way.append(bare_side_by_side(own, per_run(tiles[name][0], results[name]["tiles_per_run"])))
    del tiles
    bare = {name: median(values) for name, values in bare_seconds.items()}
    megapixels = results["automatic"]["MEGAPIXELS"]
    auto, asked = results["automatic"], results[f"{ASKED} px asked"]
    saved = 1.0 - median(seconds["automatic"]) / median(seconds["model tile"])
    agreement = {name: map_agreement(outputs["model tile"], outputs[name]) for name in sizes}
    accuracy = {name: overall_accuracy(outputs[name], reference) for name in sizes}
    measured = load_model(model, device="cpu").card.get("tile_agreement") or {}
    at_export = ", ".join(f"{size} px {share:.3f}" for size, share in (measured.get("agreement") or {}).items())
    figures = []
    for name, result in results.items():
        ratio = paired_ratio(seconds[name], bare_seconds[name])
        figures.append(figure(
            f"tiles.{name.replace(' ', '_')}", f"Classify throughput, {result['TILE']} px tiles ({name}; "
            f"{result['tiles']} tiles, batch {result['BATCH_SIZE']}, overlap {result['OVERLAP']} px)",
            median([megapixels / s for s in seconds[name]]), "Mpx/s", runs=[megapixels / s for s in seconds[name]],
            baseline={"label": f"bare onnxruntime over the same {result['tiles_run']} tiles in memory",
                      "value": megapixels / bare[name], "unit": "Mpx/s"},
            ratio=ratio, target=target(ratio, "<=", RATIO_TARGET, "x") if name == "model tile" else None))
        if name == "model tile":
            figures.append(same_way_row("tiles.model_tile", f"Classify throughput, {result['TILE']} px tiles",
                                        megapixels, seconds[name], same_way, own.streams, result["tiles_run"]))
    figures += [
        figure("tiles.automatic_tile", "Automatic tile (largest measured at export to keep >= 99 % of the labels)",
               auto["TILE"], "px", note=f"same class as the 64 px tiles at export: {at_export or 'not measured'}"),
        figure("tiles.time_saved", f"Time saved by the automatic {auto['TILE']} px tiles over the model's 64 px tiles",
               saved, "", note=f"{median(seconds['model tile']):.2f} s -> {median(seconds['automatic']):.2f} s"),
        figure("tiles.agreement", f"Maps at the automatic {auto['TILE']} px and at 64 px tiles: same class",
               agreement["automatic"], "", target=target(agreement["automatic"], ">=", AGREEMENT_TARGET)),
        figure("tiles.agreement_asked", f"Maps at {ASKED} px (asked for) and at 64 px tiles: same class",
               agreement[f"{ASKED} px asked"], "",
               note=f"{1.0 - median(seconds[f'{ASKED} px asked']) / median(seconds['model tile']):.0%} faster than "
                    f"64 px tiles; {asked['TILE']} px run"),
        versus("tiles.accuracy", f"Overall accuracy against NLCD at the automatic {auto['TILE']} px tiles",
               accuracy["automatic"], "at the model's 64 px tiles", accuracy["model tile"]),
        versus("tiles.accuracy_asked", f"Overall accuracy against NLCD at {ASKED} px tiles (asked for)",
               accuracy[f"{ASKED} px asked"], "at the model's 64 px tiles", accuracy["model tile"]),
    ]
    what = f"Model: {described}. Raster: {raster.name}, {megapixels:.1f} Mpx; CPU, the card's overlap."
    return {"what": what, "figures": figures,
            "details": {"seconds": seconds, "bare_seconds": bare_seconds, "same_way_seconds": same_way,
                        "tile_agreement_at_export": measured,
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
