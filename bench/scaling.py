"""Scaling: the engine's ``classify`` on rasters of 1, 4 and 16 times the area (VRT mosaics of the real Zion
image, same model); the time must grow linearly with the area.

Times are the engine's own (``SECONDS`` of its result: model loading to the last byte written), the
process start-up and imports are reported beside them. Runs are interleaved (1x, 4x, 16x, 1x, ...) so a
busy spell on the machine does not land on one size only. Linear means: the exponent b of a least-squares
fit time = a * area^b is at most 1.1, and each size's time is at most 1.15 x (k x the 1x time).
"""
import numpy as np
import rasterio

from .assets import mosaic_vrt, speed_model
from .common import ZION_IMAGE, engine, figure, median, target

EXPONENT_LIMIT = 1.1
PER_SIZE_LIMIT = 1.15
FACTORS = (1, 4, 16)


def run(settings) -> dict:
    model_path, model_text = speed_model(settings, 4)
    work = settings.folder("scaling")
    with rasterio.open(ZION_IMAGE) as src:
        base_w, base_h = src.width, src.height
    if settings.quick:
        base_w, base_h = base_w // 2, base_h // 2
    else:
        base_w, base_h = 2 * base_w, 2 * base_h
    rasters = {}
    for k in FACTORS:
        side = int(round(np.sqrt(k)))
        rasters[k] = mosaic_vrt(work / f"mosaic_{k}x.vrt", base_w * side, base_h * side)
    engine_s = {k: [] for k in FACTORS}
    wall_s = {k: [] for k in FACTORS}
    megapixels = {}
    for _ in range(settings.runs):
        for k in FACTORS:
            measured = engine("classify", "--raster", rasters[k], "--model", model_path, "--output",
                              work / f"out_{k}x.tif", "--overwrite", "--device", "cpu", timeout=1500)
            engine_s[k].append(measured["result"]["SECONDS"])
            wall_s[k].append(measured["seconds"])
            megapixels[k] = measured["result"]["MEGAPIXELS"]
    for k in FACTORS:
        (work / f"out_{k}x.tif").unlink(missing_ok=True)
    med = {k: median(engine_s[k]) for k in FACTORS}
    exponent = float(np.polyfit(np.log([megapixels[k] for k in FACTORS]), np.log([med[k] for k in FACTORS]), 1)[0])
    figures = []
    for k in FACTORS:
        expected = k * med[1]
        ratio = med[k] / expected
        startup = median(wall_s[k]) - med[k]
        figures.append(figure(
            f"scaling.{k}x", f"{k}x area: {megapixels[k]:.1f} Mpx", med[k], "s", runs=engine_s[k],
            baseline={"label": f"{k} x the 1x time (linear)", "value": expected, "unit": "s"}, ratio=ratio,
            target=target(ratio, "<=", PER_SIZE_LIMIT, "x") if k > 1 else None,
            note=f"{megapixels[k] / med[k]:.2f} Mpx/s; process start-up and imports {startup:.1f} s more"))
    figures.append(figure("scaling.exponent", "Fitted exponent b of time = a * area^b", exponent, "",
                          target=target(exponent, "<=", EXPONENT_LIMIT)))
    what = (f"Engine `classify` on VRT mosaics of the Zion image, 1x = {base_w}x{base_h} px; model: {model_text}; "
            f"batch 4, the card's overlap, CPU.")
    return {"what": what, "figures": figures,
            "details": {"engine_seconds": engine_s, "wall_seconds": wall_s, "megapixels": megapixels}}
