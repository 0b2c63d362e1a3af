"""Chip export on Zion: chips/s of ``export_chips`` against a bare rasterio loop, and peak memory.

Baseline: the same windows read from the image and the label raster and written as the same GeoTIFFs
(same profiles) with rasterio and nothing else: no label resampling, statistics, split or dataset.json.
"""
import json
import shutil
import sys
import time

import numpy as np
import rasterio
from rasterio.windows import Window

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions

from .common import ZION_IMAGE, ZION_LABELS, figure, median, paired_ratio, python_baseline_rss, run_measured

CHIP, STRIDE = 128, 64


def run(settings) -> dict:
    work = settings.folder("chips")
    out = work / "zion_chips"
    runs = max(5, settings.runs) if not settings.quick else 3
    bare_out = work / "bare_chips"
    seconds, bare_seconds, summary, windows = [], [], None, None
    for _ in range(runs):  # interleaved, so that other load on the machine hits both alike
        shutil.rmtree(out, ignore_errors=True)
        tick = time.perf_counter()
        summary = export_chips(ChipExportOptions(ZION_IMAGE, out, labels_raster=ZION_LABELS, chip_size=CHIP,
                                                 stride=STRIDE))
        seconds.append(time.perf_counter() - tick)
        if windows is None:
            windows = [c["window"] for c in json.loads((out / "dataset.json").read_text())["chips"]]
        shutil.rmtree(bare_out, ignore_errors=True)
        tick = time.perf_counter()
        bare_export(windows, bare_out)
        bare_seconds.append(time.perf_counter() - tick)
    chips = summary["chips"]
    ours_rate = [chips / s for s in seconds]
    bare_rate = [chips / s for s in bare_seconds]
    ratio = paired_ratio(seconds, bare_seconds)

    engine_out = work / "engine_chips"
    shutil.rmtree(engine_out, ignore_errors=True)
    measured = run_measured([sys.executable, "-m", "landcover_plugin.core.engine", "export-chips",
                             "--image", ZION_IMAGE, "--labels-raster", ZION_LABELS, "--output", engine_out,
                             "--chip-size", CHIP, "--stride", STRIDE])
    if measured["returncode"] != 0:
        raise RuntimeError(f"engine export-chips failed: {measured['error'] or measured['stderr_tail']}")
    floor = python_baseline_rss("landcover_plugin.core.chips.export")
    what = f"Zion 1128x1428 px, 4 bands uint16, NLCD labels raster; {CHIP} px chips, stride {STRIDE}"
    figures = [
        figure("chips.rate", f"Chip export ({chips} chips kept of {summary['windows']} windows)",
               median(ours_rate), "chips/s", runs=ours_rate,
               baseline={"label": "bare rasterio read + write of the same windows", "value": median(bare_rate),
                         "unit": "chips/s", "runs": bare_rate},
               ratio=ratio),
        figure("chips.peak_rss", "Chip export peak memory (engine export-chips subprocess)",
               measured["peak_rss_mb"], "MB",
               baseline={"label": "Python importing the chip exporter only", "value": floor, "unit": "MB"},
               ratio=measured["peak_rss_mb"] / floor,
               note=f"{measured['peak_rss_mb'] - floor:.0f} MB above the interpreter and libraries; "
                    f"engine wall time {measured['seconds']:.2f} s including start-up"),
    ]
    return {"what": what, "figures": figures,
            "details": {"chips": chips, "train_chips": summary["train_chips"], "val_chips": summary["val_chips"],
                        "windows": summary["windows"], "seconds_runs": seconds, "bare_seconds_runs": bare_seconds}}


def bare_export(windows, out) -> None:
    """Read and write the chips of ``windows`` with rasterio only (the floor of any chip exporter)."""
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    with rasterio.open(ZION_IMAGE) as image, rasterio.open(ZION_LABELS) as labels:
        common = {"driver": "GTiff", "width": CHIP, "height": CHIP, "crs": image.crs}
        image_profile = dict(common, count=image.count, dtype=image.dtypes[0], nodata=image.nodata)
        label_profile = dict(common, count=1, dtype="uint8", nodata=0, compress="deflate", zlevel=1)
        for w in windows:
            window = Window(w["col_off"], w["row_off"], w["width"], w["height"])
            data = image.read(window=window)
            label = labels.read(1, window=window)
            label = np.where(label == 255, 0, label).astype(np.uint8)
            transform = image.window_transform(window)
            name = f"r{w['row_off']:06d}_c{w['col_off']:06d}.tif"
            with rasterio.open(out / "images" / name, "w", transform=transform, **image_profile) as dst:
                dst.write(data)
            with rasterio.open(out / "labels" / name, "w", transform=transform, **label_profile) as dst:
                dst.write(label, 1)
