"""Inference speed and memory: ``classify_raster`` against bare onnxruntime over the same tiles.

Whole run: ``classify_raster`` from call to return (model loading, reading, standardising, the model,
blending, writing the DEFLATE GeoTIFF, overviews and QML). Bare: onnxruntime over the very tiles the classifier
runs (read beforehand by its own reader into a float32 array in memory), in batches of the same size, nothing
read, blended or written while timed, three ways: one session with every thread running a batch after another
(onnxruntime as one would run it bare: the target's baseline; the session is made once and warmed by every
round); the classifier's own way, ``streams`` batches at once on a share of the threads each (what reading,
blending and writing add over the model run so; no target); and the baseline's way from a new session, loaded,
run and freed within the timing (onnxruntime's own costs of a start, which every whole run pays: making the
session and faulting in its first runs' memory; no target).
The same again on a 25 Mpx GeoTIFF (a 5000 x 5000 px mosaic of Zion, DEFLATE as Zion is: issue #13's own scale),
where the fixed costs that weigh on Zion's 1 s run (loading the model, the session's first runs faulting in
its memory, overviews) are spread thin and what remains is the work done beside each model call.
Memory: the engine command ``classify`` (what users run) on a 20000 x 20000 px VRT mosaic of the Zion
image, peak RSS of that process.
"""
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
from rasterio.shutil import copy as copy_raster

from landcover_plugin.core.classify.options import DEFAULT_BATCH, ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.classify.source import open_source
from landcover_plugin.core.classify.tile_size import model_grid
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.session import load_model

from .assets import mosaic_vrt, speed_model
from .common import ZION_IMAGE, engine, figure, median, paired_ratio, profile_call, python_baseline_rss, target

RATIO_TARGET = 1.03  # issue #13: whole run within 3 % of bare onnxruntime
LARGE = "unet_resnet34"  # issue #13's second model: a big encoder, where per-tile work weighs less
MEMORY_LIMIT_MB = 1500.0
BIG = 20000
SCENE = 5000  # the 25 Mpx raster of issue #13's measurements


def run(settings) -> dict:
    model_path, model_text = speed_model(settings, 16)
    large_path, large_text = speed_model(settings, 16, architecture=LARGE)
    work = settings.folder("inference")
    figures, profiles, details = [], {}, {}
    scene_size = 1000 if settings.quick else SCENE
    devices = ["cpu"] + (["cuda"] if "CUDAExecutionProvider" in ort.get_available_providers() else [])
    for device in devices:
        # Zion runs take 1-3 s, where the machine's noise moves a pair's ratio by 10 %: more rounds a median
        rows, ratio, info = whole_vs_bare(model_path, ZION_IMAGE, work / f"zion_{device}.tif", device,
                                          max(9, settings.runs))
        figures += rows
        details[device] = info
        rows, _, details[f"{device}_{LARGE}"] = whole_vs_bare(large_path, ZION_IMAGE, work / f"large_{device}.tif",
                                                              device, max(7, settings.runs), LARGE)
        figures += rows
        if device == "cpu":  # a scene of real size: minutes a run on 2 cores, a few seconds on a GPU
            scene = scene_raster(work, scene_size)
            megapixels = f"{scene_size ** 2 / 1e6:.0f} Mpx"
            for path, name in ((model_path, None), (large_path, LARGE)):
                rows, _, details[f"{device}_{name or 'unet16'}_scene"] = whole_vs_bare(
                    path, scene, work / "scene_out.tif", device, 3 if not settings.quick else 1,
                    f"{name}, {megapixels} GeoTIFF" if name else f"{megapixels} GeoTIFF")
                figures += rows
            (work / "scene_out.tif").unlink(missing_ok=True)
        if ratio > RATIO_TARGET:
            _, profiles[f"classify_raster on Zion ({device})"] = profile_call(
                lambda: classify_raster(ClassifyOptions(ZION_IMAGE, model_path, work / "profiled.tif", device=device,
                                                        overwrite=True)))
    if "cuda" not in devices:
        figures.append(figure("inference.cuda", "Inference with CUDA", None, "",
                              note="no GPU on this machine; see the GPU check below"))

    small_path, small_text = speed_model(settings, 4)
    size = 4000 if settings.quick else BIG
    big = mosaic_vrt(work / f"zion_mosaic_{size}.vrt", size, size)
    measured = engine("classify", "--raster", big, "--model", small_path, "--output", work / "big.tif",
                      "--overwrite", "--device", "cpu", timeout=1500)
    floor = python_baseline_rss("landcover_plugin.core.classify.run")
    peak = measured["peak_rss_mb"]
    out = measured["result"]
    figures.append(figure(
        "inference.memory_20k",
        f"Peak memory, engine classify of a {size}x{size} px raster ({size * size / 1e6:.0f} Mpx)",
        peak, "MB", baseline={"label": "Python importing the classifier only", "value": floor, "unit": "MB"},
        ratio=peak / floor, target=target(peak, "<", MEMORY_LIMIT_MB, " MB"),
        note=f"{out['MEGAPIXELS_PER_SECOND']:.2f} Mpx/s, {out['SECONDS']:.0f} s in the engine, "
             f"{measured['seconds']:.0f} s wall; model: {small_text}"))
    (work / "big.tif").unlink(missing_ok=True)
    details["memory_run"] = {k: out.get(k) for k in ("SECONDS", "MEGAPIXELS", "MEGAPIXELS_PER_SECOND", "tiles",
                                                     "tiles_run", "model_seconds", "TILE", "OVERLAP")}
    what = (f"Zion 1128x1428 px (1.6 Mpx), and on the CPU a {scene_size}x{scene_size} px GeoTIFF mosaic of it; batch "
            f"{DEFAULT_BATCH}, the model card's overlap; speed model: "
            f"{model_text}; large model: {large_text}. Memory case: a VRT mosaic of the real Zion image, model: "
            f"{small_text}.")
    return {"what": what, "figures": figures, "profiles": profiles, "details": details}


def whole_vs_bare(model_path, raster, output, device: str, runs: int, label: str = None):
    """Figures for one device: Mpx/s of the whole run and of bare onnxruntime, and their ratio. The two are
    interleaved (whole, bare, whole, bare, ...) so that other load on the machine hits both alike. ``label``
    names a model other than the speed model in the figure's key and title."""
    def whole():
        return classify_raster(ClassifyOptions(raster, model_path, output, device=device, overwrite=True))

    result = whole()  # warm-up: file cache, the optimised graph kept (as by any earlier run on this machine);
    # also tells the overlap and batch size used
    batches, model = tiles_in_memory_at(model_path, raster, device, result["TILE"], result["OVERLAP"],
                                        result["BATCH_SIZE"])
    own = load_model(model_path, device=device, streams=0)  # as the classifier loads it
    seconds, bare, same_way, fresh = [], [], [], []
    for _ in range(runs):
        tick = time.perf_counter()
        result = whole()
        seconds.append(time.perf_counter() - tick)
        bare.append(bare_run(model, batches))
        same_way.append(bare_side_by_side(own, per_run(batches, result["tiles_per_run"])))
        fresh.append(bare_from_a_new_session(model_path, device, batches))
    megapixels = result["MEGAPIXELS"]
    ratio = paired_ratio(seconds, bare)
    name = "CUDA" if device == "cuda" else "CPU"
    key, title = f"inference.{device}.mpx_per_s", f"Classify throughput on {name} (whole run)"
    if label:
        slug = re.sub(r"[^a-z0-9_]+", "_", label.lower()).strip("_")
        key, title = f"inference.{device}.{slug}.mpx_per_s", f"Classify throughput on {name}, {label} (whole run)"
    rows = [figure(key, title,
                   median([megapixels / s for s in seconds]), "Mpx/s", runs=[megapixels / s for s in seconds],
                   baseline={"label": f"bare onnxruntime over the same {result['tiles_run']} tiles in memory",
                             "value": median([megapixels / s for s in bare]), "unit": "Mpx/s",
                             "runs": [megapixels / s for s in bare]},
                   ratio=ratio, target=target(ratio, "<=", RATIO_TARGET, "x"),
                   note=f"{result['TILE']} px tiles, batch {result['BATCH_SIZE']} ({result['streams']} run(s) of "
                        f"{result['tiles_per_run']} at once); model alone {result['model_seconds']:.2f} s of "
                        f"{result['SECONDS']:.2f} s in the last run"),
            same_way_row(key, title, megapixels, seconds, same_way, own.streams, result["tiles_run"]),
            figure(f"{key}.new_session", f"{title}: against bare onnxruntime from a new session",
                   median([megapixels / s for s in seconds]), "Mpx/s",
                   baseline={"label": f"bare onnxruntime loading the model, running the same {result['tiles_run']} "
                                      f"tiles in memory as the baseline above and freeing it",
                             "value": median([megapixels / s for s in fresh]), "unit": "Mpx/s",
                             "runs": [megapixels / s for s in fresh]},
                   ratio=paired_ratio(seconds, fresh),
                   note="no target; what the whole run adds to onnxruntime's own costs of a start: making the "
                        "session (the optimised graph kept, as ours) and its first runs' memory")]
    info = {"seconds": seconds, "bare_seconds": bare, "same_way_seconds": same_way, "new_session_seconds": fresh,
            "streams": own.streams,
            "tiles": result["tiles"], "tiles_run": result["tiles_run"],
            "overlap_px": result["OVERLAP"], "tile": result["TILE"], "device": result["DEVICE"]}
    return rows, ratio, info


def scene_raster(work, size: int):
    """A ``size`` x ``size`` px GeoTIFF mosaic of the Zion image, DEFLATE-compressed band by band as Zion is."""
    path = work / f"zion_scene_{size}.tif"
    if not path.exists():
        part = path.with_suffix(".part.tif")
        copy_raster(str(mosaic_vrt(work / f"zion_scene_{size}.vrt", size, size)), str(part), driver="GTiff",
                    compress="deflate", interleave="band")
        part.replace(path)
    return path


def tiles_in_memory_at(model_path, raster, device, tile, overlap_px, batch_size):
    """The classifier's own batches of ``tile`` px tiles (None: the model's own) for ``raster`` (read once,
    untimed) and the loaded model."""
    events = RecordingEvents()
    model = load_model(model_path, device=device, events=events)
    with open_source(raster, model, events=events) as source:
        tile = tile or model.tile
        grid = model_grid(model, source.height, source.width, tile, overlap_px)
        batches = [np.array(batch.x, copy=True) for batch in source.batches(grid, batch_size)]
    return batches, model


def bare_run(model, batches) -> float:
    model.run(batches[0][:1])  # warm-up, as the classifier's first batch pays it too
    tick = time.perf_counter()
    for batch in batches:
        model.session.run([model.output_name], {model.input_name: batch})
    return time.perf_counter() - tick


def bare_from_a_new_session(model_path, device, batches) -> float:
    """Seconds of bare onnxruntime from its start: the model loaded as the classifier loads it (one session on
    every thread), the tiles in memory run one batch after another, the session freed; what a script running
    onnxruntime alone pays each time it starts, where :func:`bare_run` reuses a session warmed by every round."""
    tick = time.perf_counter()
    model = load_model(model_path, device=device, streams=1)
    for batch in batches:
        model.session.run([model.output_name], {model.input_name: batch})
    model.close()
    return time.perf_counter() - tick


def per_run(batches, tiles: int) -> list:
    """``batches`` cut into runs of ``tiles`` tiles (views), as the classifier shares a batch between its runs."""
    return [batch[start:start + tiles] for batch in batches for start in range(0, len(batch), tiles)]


def bare_side_by_side(model, batches) -> float:
    """Bare onnxruntime run as the classifier runs ``model``: ``model.streams`` threads, each taking the next
    batch as it finishes one."""
    if model.streams == 1:
        return bare_run(model, batches)
    model.run(batches[0][:1])
    left, lock = iter(batches), threading.Lock()

    def work(_):
        while True:
            with lock:
                batch = next(left, None)
            if batch is None:
                return
            model.session.run([model.output_name], {model.input_name: batch})

    with ThreadPoolExecutor(model.streams) as pool:
        tick = time.perf_counter()
        list(pool.map(work, range(model.streams)))
        return time.perf_counter() - tick


def same_way_row(key: str, title: str, megapixels: float, seconds, same_way, streams: int, tiles: int) -> dict:
    """The whole run against bare onnxruntime run as the classifier runs it (no target: what reading, blending
    and writing cost beside the model once the model runs the classifier's way)."""
    return figure(f"{key}.same_way", f"{title}: against the model run the classifier's way",
                  median([megapixels / s for s in seconds]), "Mpx/s",
                  baseline={"label": f"bare onnxruntime over the same {tiles} tiles, {streams} run(s) at once",
                            "value": median([megapixels / s for s in same_way]), "unit": "Mpx/s",
                            "runs": [megapixels / s for s in same_way]},
                  ratio=paired_ratio(seconds, same_way),
                  note="no target; what reading, standardising, blending and writing add to the model's own time")
