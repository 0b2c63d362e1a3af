"""``make gpu-check`` / ``python -m bench.gpu_check [--device cpu] [--quick] [--json FILE]``: a GPU check that runs on a
bare machine with an NVIDIA GPU and torch, in under 5 minutes, and prints one table.

It needs torch and numpy only (numpy 1 or 2); onnxruntime is optional. No QGIS, rasterio or GDAL: chips are
synthetic (standard-normal bands, labels of a few classes in blocks, so the loss is a real segmentation loss).
What it measures, on the trainer's default network (U-Net, base width 16, 4 bands, 8 classes, 128 px chips,
batch 16):

* training chips/s through the trainer's own step (``training.step.train_step``: autocast, class-weighted
  loss, gradient scaler, AdamW) with mixed precision (AMP, bfloat16 where the GPU has it) and in float32,
  against a bare torch loop (forward, cross-entropy, backward, AdamW step; float32);
* classification Mpx/s: the network exported to ONNX (dynamic batch and size) and run by onnxruntime over
  256 px tiles with the classifier's own blending (``StripBlender``), on CUDA when this onnxruntime has the
  CUDA execution provider (``onnxruntime-gpu``), else the table says so and gives the CPU figure;
* the GPU's name and the peak GPU memory of each training run;
* with ``--chips DIR ...``: the engine's own ``train`` command on each real chip dataset, run as an analyst runs it
  (a subprocess, every default, ``--time-limit-minutes`` as given): device, epochs, median chips/s, peak GPU memory,
  wall time with the steps after training, and the held-out estimate. It needs rasterio (pip's wheel will do: the
  trainer needs none of GDAL's own bindings); a chip dataset copied with its raster, in the same layout, is read
  whole. Export the chips where GDAL is.

``--json FILE`` keeps the figures; committed as ``bench/gpu_check.json``, ``make bench`` prints them in
bench/RESULTS.md (section "GPU check") with the machine and the commit they were measured on.
"""
import argparse
import csv
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.common import git_commit  # noqa: E402 - after the path (stdlib only: no rasterio)
from landcover_plugin.core.classify.tiling import StripBlender, TileGrid  # noqa: E402
from training.device import amp_settings  # noqa: E402
from training.networks import build_network  # noqa: E402
from training.step import train_step  # noqa: E402

BANDS, CLASSES = 4, 8


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="where to train (default cuda)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (checks that it runs)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--chips", nargs="*", default=[], help="chip datasets to train the engine on, its defaults")
    parser.add_argument("--minutes", type=float, default=2.0, help="time limit of each engine training (default 2)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"torch {torch.__version__} sees no CUDA GPU: run with --device cpu to check the script, or on a "
              f"machine with an NVIDIA GPU and a CUDA build of torch.", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    size = dict(chip=64, batch=4, steps=3, warmup=1, tiles=4, tile=128) if args.quick else \
        dict(chip=128, batch=16, steps=40, warmup=5, tiles=64, tile=256)
    started = time.perf_counter()
    net = build_network("unet", BANDS, CLASSES, base_width=16)
    rows = [_row(f"training, {name}", ours, net, device, amp, size)
            for name, amp in (("trainer step, AMP", True), ("trainer step, float32", False))]
    rows.append(_row("training, bare torch loop (float32)", bare, net, device, size))
    rows.append(_row(f"classify (onnxruntime, {size['tile']} px tiles, blending)", classify, net, size, args.device))
    rows += [_row(f"engine train, {Path(folder).resolve().parent.name}/{Path(folder).name}", engine_training, folder,
                  args.device, args.minutes) for folder in args.chips]
    info = machine(device)
    info["seconds"] = round(time.perf_counter() - started, 1)
    print(table(rows, info, size))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "rows": rows, "size": size}, indent=1) + "\n")
    return 0


def _row(what: str, measure, *args) -> dict:
    """One row of the table; a part that fails says why in its row, and the others still run."""
    try:
        return dict(what=what, **measure(*args))
    except Exception as exc:  # noqa: BLE001 - an unknown machine: report every failure, never lose the table
        return {"what": what, "note": f"failed: {type(exc).__name__}: {str(exc)[:200]}"}


def chips(size: dict, device, seed: int = 0):
    """A batch of synthetic standardised chips and block labels (what a loader would hand the step)."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(size["batch"], BANDS, size["chip"], size["chip"], generator=generator)
    blocks = torch.randint(0, CLASSES, (size["batch"], 1, size["chip"] // 16, size["chip"] // 16),
                           generator=generator).float()
    labels = F.interpolate(blocks, scale_factor=16, mode="nearest")[:, 0].long()
    return images.to(device), labels.to(device)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(step, device, size) -> dict:
    """chips/s over ``steps`` steps after ``warmup``, and the peak GPU memory (MiB) of the run."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(size["warmup"]):
        step()
    _sync(device)
    tick = time.perf_counter()
    for _ in range(size["steps"]):
        step()
    _sync(device)
    seconds = time.perf_counter() - tick
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
    return {"chips_per_s": round(size["steps"] * size["batch"] / seconds, 1), "seconds": round(seconds, 2),
            "peak_mib": None if peak is None else round(peak)}


def ours(net, device, amp: bool, size: dict) -> dict:
    model = _copy(net).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    enabled, dtype, scaling = amp_settings(device, amp)
    scaler = torch.amp.GradScaler("cuda", enabled=scaling)
    weight = torch.zeros(256, device=device)
    weight[:CLASSES] = 1.0
    images, labels = chips(size, device)

    def step():
        train_step(model, optimizer, scaler, images, labels, weight, enabled, dtype)

    result = _timed(step, device, size)
    result["precision"] = str(dtype).replace("torch.", "") if enabled else "float32"
    return result


def bare(net, device, size: dict) -> dict:
    model = _copy(net).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    images, labels = chips(size, device)

    def step():
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    result = _timed(step, device, size)
    result["precision"] = "float32"
    return result


def classify(net, size: dict, device_name: str) -> dict:
    """Mpx/s of onnxruntime + blending over a synthetic raster of ``tiles`` tiles, on CUDA when available."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"note": "onnxruntime is not installed: classification not measured"}
    providers = ort.get_available_providers()
    cuda = "CUDAExecutionProvider" in providers and device_name == "cuda"
    note = None if cuda else ("onnxruntime has no CUDA execution provider (install onnxruntime-gpu): "
                              f"measured on the CPU ({', '.join(providers)})" if device_name == "cuda" else
                              "on the CPU, as asked")
    tile = size["tile"]
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        path = os.path.join(work, "unet.onnx")
        model = torch.nn.Sequential(_copy(net).eval(), torch.nn.Softmax(dim=1)).cpu()
        axes = {0: "batch", 2: "height", 3: "width"}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, BANDS, tile, tile),), path, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": axes, "output": axes},
                              opset_version=17, dynamo=False)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(path, options, providers=(["CUDAExecutionProvider"] if cuda else [])
                                       + ["CPUExecutionProvider"])
    side = int(np.sqrt(size["tiles"])) * (tile - tile // 8) + tile // 8  # a square covered by ~tiles tiles
    grid = TileGrid(side, side, tile, tile // 8)
    blender = StripBlender(grid, list(range(1, CLASSES + 1)), lambda labels, confidence: None)
    batch = 4
    x = np.random.default_rng(0).standard_normal((batch, BANDS, tile, tile)).astype(np.float32)
    valid = np.ones((batch, tile, tile), dtype=bool)
    session.run(None, {"input": x})  # warm-up (CUDA kernels, memory arena)
    tiles = list(grid)
    tick = time.perf_counter()
    for start in range(0, len(tiles), batch):
        part = tiles[start:start + batch]
        probs = session.run(None, {"input": x[:len(part)]})[0]
        for t, p, v in zip(part, probs, valid):
            blender.add(t, p, v)
    blender.finish()
    seconds = time.perf_counter() - tick
    result = {"mpx_per_s": round(side * side / 1e6 / seconds, 2), "seconds": round(seconds, 2),
              "tiles": len(tiles), "provider": session.get_providers()[0]}
    if note:
        result["note"] = note
    return result


def engine_training(folder, device_name: str, minutes: float) -> dict:
    """The engine's ``train`` on a real chip dataset, with its defaults, as the QGIS side starts it."""
    try:
        import rasterio  # noqa: F401 - the trainer reads the chips with it
    except ImportError:
        return {"note": "rasterio is not installed: engine training not measured (carry pip's wheel)"}
    with tempfile.TemporaryDirectory(prefix="gpu-check-train-") as work:
        output = Path(work) / "model.onnx"
        tick = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "landcover_plugin.core.engine", "train", str(folder), "--output",
                               str(output), "--device", device_name, "--time-limit-minutes", str(minutes)],
                              cwd=REPO, capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [
                                  str(REPO), os.environ.get("PYTHONPATH")]))))
        seconds = time.perf_counter() - tick
        events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        outputs = next((e["outputs"] for e in events if e.get("event") == "result"), None)
        if done.returncode or outputs is None:
            error = next((e["message"] for e in events if e.get("event") == "error"), done.stderr[-300:])
            return {"note": f"failed (exit {done.returncode}): {error[:300]}"}
        with open(outputs["CURVES_CSV"], newline="", encoding="utf-8") as curves:
            epochs = list(csv.DictReader(curves))
    logs = [e.get("message", "") for e in events if e.get("event") == "log"]
    peaks = [int(m.group(1).replace(",", "")) for m in (re.search(r"GPU memory: at most ([\d,]+) MiB", t) for t in logs)
             if m]
    precision = next((m.group(1) for m in (re.search(r"mixed precision torch\.(\w+)", t) for t in logs) if m),
                     "float32")
    speed = [float(r["chips_per_second"]) for r in epochs if r.get("chips_per_second")]
    epoch_seconds = [float(r["epoch_seconds"]) for r in epochs if r.get("epoch_seconds")]
    return {"chips_per_s": round(statistics.median(speed), 1) if speed else None, "seconds": round(seconds, 1),
            "peak_mib": max(peaks) if peaks else None, "precision": precision, "engine": True,
            "architecture": outputs.get("architecture"), "device": outputs.get("device"),
            "epochs": outputs.get("epochs_run"), "stopped_by": outputs.get("stopped_by"),
            "epoch_s": round(statistics.median(epoch_seconds), 2) if epoch_seconds else None,
            "heldout_oa": outputs.get("HELDOUT_OA"), "heldout_miou": outputs.get("HELDOUT_MIOU"),
            "note": (f"{outputs.get('architecture')} on {outputs.get('device')}: {outputs.get('epochs_run')} epochs "
                     f"({outputs.get('stopped_by')}), median {statistics.median(epoch_seconds):.2f} s an epoch; "
                     f"{seconds:.0f} s in all with the steps after training; held-out estimate OA "
                     f"{outputs.get('HELDOUT_OA')}, mIoU {outputs.get('HELDOUT_MIOU')}" if epoch_seconds else "")}


def _copy(net):
    import copy

    return copy.deepcopy(net)


def machine(device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "cuda": torch.version.cuda, "device": str(device),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": os.environ.get("GPU_CHECK_COMMIT") or git_commit()}
    try:
        import onnxruntime as ort
        info["onnxruntime"] = f"{ort.__version__} ({', '.join(ort.get_available_providers())})"
    except ImportError:
        info["onnxruntime"] = "not installed"
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = f"{props.name}, {props.total_memory / 2 ** 30:.0f} GiB"
        info["bf16"] = torch.cuda.is_bf16_supported()
    else:
        info["gpu"] = "none used (--device cpu)"
    return info


def table(rows: list, info: dict, size: dict) -> str:
    float32 = next(r for r in rows if r["what"] == "training, trainer step, float32").get("chips_per_s")
    lines = [f"GPU check: {info['gpu']}; torch {info['torch']} (CUDA {info['cuda']}), numpy {info['numpy']}, "
             f"onnxruntime {info['onnxruntime']}, Python {info['python']}; took {info['seconds']} s "
             f"(on {info.get('date')}, commit {info.get('commit') or 'unknown'}).",
             f"U-Net base width 16, {BANDS} bands, {CLASSES} classes, {size['chip']} px chips, batch {size['batch']}, "
             f"{size['steps']} timed steps after {size['warmup']} warm-up.", "",
             "| What | Speed | vs trainer float32 | Precision | Peak GPU memory | Note |", "|---|---|---|---|---|---|"]
    for row in rows:
        if row.get("engine"):  # real chips of another size: no ratio to the synthetic 128 px step
            speed, versus = f"{row['chips_per_s']} chips/s", ""
        elif "chips_per_s" in row:
            speed = f"{row['chips_per_s']} chips/s"
            versus = f"{row['chips_per_s'] / float32:.2f}x" if float32 else ""
        elif "mpx_per_s" in row:
            speed, versus = f"{row['mpx_per_s']} Mpx/s ({row['provider']})", ""
        else:
            speed, versus = "n/a", ""
        peak = f"{row['peak_mib']} MiB" if row.get("peak_mib") is not None else ""
        lines.append(f"| {row['what']} | {speed} | {versus} | {row.get('precision', '')} | {peak} | "
                     f"{row.get('note', '')} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
