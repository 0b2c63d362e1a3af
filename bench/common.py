"""What every benchmark case shares: paths, medians, figures with baselines and targets, subprocess peak
memory, the engine command, cProfile summaries, and the machine the run is on."""
import cProfile
import json
import os
import platform
import pstats
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from landcover_plugin.core.events import parse_event

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO.parent / "shared" / "data").resolve()
ZION_IMAGE = DATA / "zion" / "landsat8_2015_b2345.tif"
ZION_LABELS = DATA / "zion" / "nlcd2011_8class.tif"
RSTOOLBOX_IMAGE = DATA / "rstoolbox" / "landsat5_1988_7band.tif"
RSTOOLBOX_POLYGONS = DATA / "rstoolbox" / "training_polygons.gpkg"
WORK = REPO / "bench" / "work"


class Settings:
    """What a run was asked for: ``quick`` shrinks every case (for smoke tests), ``runs`` = N per median."""

    def __init__(self, quick: bool = False, runs: int = None, work: Path = WORK):
        self.quick = quick
        self.runs = runs or (1 if quick else 3)
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)

    def folder(self, name: str) -> Path:
        path = self.work / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def paired_ratio(ours, baseline):
    """Median over the rounds of ours / the baseline, each round having run the two back to back: a slow spell
    of the shared machine then weighs on one pair, not on one side (the ratio of the two medians paired a slow
    bare run with a fast one of ours: 0.94x for a round-by-round 1.05x, bench tiles, 64 px)."""
    return median([a / b for a, b in zip(ours, baseline) if a is not None and b])


# -- figures --------------------------------------------------------------------------------------
def figure(key: str, label: str, value, unit: str, *, runs=None, baseline=None, ratio=None, target=None,
           note: str = None, digits: int = 3) -> dict:
    """One row of the results: the median ``value`` of ``runs``; ``baseline`` = {label, value, unit, runs};
    ``ratio`` = our time / the baseline's time (above 1 = slower than the baseline); ``target`` from
    :func:`target`."""
    row = {"key": key, "label": label, "value": _round(value, digits), "unit": unit,
           "runs": [_round(r, digits) for r in runs] if runs else None}
    if baseline is not None:
        row["baseline"] = dict(baseline, value=_round(baseline.get("value"), digits),
                               runs=[_round(r, digits) for r in baseline.get("runs") or []] or None)
    if ratio is not None:
        row["ratio"] = _round(ratio, 3)
    if target is not None:
        row["target"] = target
    if note:
        row["note"] = note
    return row


def versus(key: str, label: str, value, baseline_label: str, baseline, *, target=None, note: str = None) -> dict:
    """A quality row: the score ``value`` beside the ``baseline`` score (unitless), the *Ratio* column their
    difference (ours minus the baseline; none where either is not measured)."""
    return figure(key, label, value, "", baseline={"label": baseline_label, "value": baseline, "unit": ""},
                  ratio=None if value is None or baseline is None else value - baseline, target=target, note=note)


def target(value, op: str, limit, unit: str = "", what: str = None) -> dict:
    """``value op limit`` checked; a miss says by how much (absolute and percent of the limit)."""
    text = what or f"{op} {_fmt(limit)}{unit}"
    if value is None:
        return {"text": text, "met": None, "miss": "not measured"}
    met = {"<=": value <= limit, "<": value < limit, ">=": value >= limit, ">": value > limit}[op]
    target_row = {"text": text, "met": bool(met), "limit": limit, "op": op}
    if not met:
        gap = abs(value - limit)
        share = f" ({100 * gap / abs(limit):.0f} %)" if limit else ""
        target_row["miss"] = f"missed by {_fmt(gap)}{unit}{share}"
    return target_row


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _round(value, digits):
    if isinstance(value, float):
        return round(value, digits) if abs(value) >= 1 else float(f"{value:.{digits}g}")
    return value


# -- subprocesses ---------------------------------------------------------------------------------
# A tiny launcher forks the command and reports its rusage: a child forked straight from this (big) process
# would inherit our memory high-water mark into its ru_maxrss (Linux keeps it across exec).
_LAUNCHER = """import json, os, sys
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"maxrss_kb": usage.ru_maxrss}, f)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(cmd, *, timeout: float = 1800, env=None, cwd=REPO) -> dict:
    """Run ``cmd``; returns returncode, wall seconds, peak RSS (MB, this command's process alone, from
    ``wait4`` in a small launcher), the engine events parsed from stdout and the stderr tail."""
    WORK.mkdir(parents=True, exist_ok=True)
    stem = WORK / f".measured_{os.getpid()}_{threading.get_ident()}"
    out_path, err_path, usage_path = (stem.with_suffix(s) for s in (".out", ".err", ".json"))
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [full_env.get("PYTHONPATH")] if p])
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        tick = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-S", "-c", _LAUNCHER, str(usage_path)] + [str(c) for c in cmd],
                                stdout=out, stderr=err, cwd=cwd, env=full_env, start_new_session=True)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        seconds = time.perf_counter() - tick
    stdout = out_path.read_text(errors="replace")
    stderr = err_path.read_text(errors="replace")
    peak_kb = json.loads(usage_path.read_text())["maxrss_kb"] if usage_path.exists() else None
    for path in (out_path, err_path, usage_path):
        path.unlink(missing_ok=True)
    events = [e for e in map(parse_event, stdout.splitlines()) if e is not None]
    result = next((e.get("outputs") for e in events if e.get("event") == "result"), None)
    error = next((e.get("message") for e in events if e.get("event") == "error"), None)
    return {"returncode": proc.returncode, "seconds": seconds,
            "peak_rss_mb": peak_kb / 1024.0 if peak_kb is not None else None,
            "events": events, "result": result, "error": error, "stderr_tail": stderr[-3000:]}


def engine(command: str, *args, timeout: float = 1800, env=None) -> dict:
    """``python -m landcover_plugin.core.engine <command> ...`` as a user runs it; raises when it fails."""
    measured = run_measured([sys.executable, "-m", "landcover_plugin.core.engine", command, *args],
                            timeout=timeout, env=env)
    if measured["returncode"] != 0 or measured["result"] is None:
        raise RuntimeError(f"engine {command} failed (exit {measured['returncode']}): "
                           f"{measured['error'] or measured['stderr_tail'][-1500:]}")
    return measured


def python_baseline_rss(imports: str) -> float:
    """Peak RSS (MB) of a Python that only imports ``imports``: the floor a subprocess pays before working."""
    measured = run_measured([sys.executable, "-c", f"import {imports}"])
    return measured["peak_rss_mb"]


# -- profiling ------------------------------------------------------------------------------------
def profile_call(fn, top: int = 15, threads: bool = True):
    """Run ``fn`` under cProfile (in every thread it starts, too); returns (result, top entries by own time,
    total profiled seconds). Threads are profiled with their own profiler and merged."""
    main = cProfile.Profile()
    others, lock = [], threading.Lock()

    def start_thread_profiler(*_):
        profiler = cProfile.Profile()
        with lock:
            others.append(profiler)
        profiler.enable()  # replaces this hook for the rest of the thread

    if threads:
        threading.setprofile(start_thread_profiler)
    main.enable()
    try:
        result = fn()
    finally:
        main.disable()
        threading.setprofile(None)
    stats = pstats.Stats(main)
    for profiler in others:
        try:
            stats.add(profiler)
        except TypeError:  # a thread that never recorded a call
            pass
    return result, profile_rows(stats, top)


def profile_rows(stats: pstats.Stats, top: int) -> list:
    rows = []
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():
        rows.append({"function": f"{_short(filename)}:{line}({name})", "calls": calls,
                     "own_s": round(own, 3), "cumulative_s": round(cumulative, 3)})
    rows.sort(key=lambda r: r["own_s"], reverse=True)
    return rows[:top]


def _short(filename: str) -> str:
    for marker in ("site-packages/", "dist-packages/", str(REPO) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# -- the machine ----------------------------------------------------------------------------------
def machine_info() -> dict:
    info = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": _cpu_model(),
            "cores": os.cpu_count(), "usable_cores": _usable_cores(), "ram_gb": _ram_gb(), "os": _os_name(),
            "python": platform.python_version(), "versions": _versions(), "gpu": gpu_info(),
            "git_commit": git_commit(), "load_average": _load()}
    return info


def gpu_info() -> dict:
    found = {"torch_cuda": False, "onnxruntime_cuda": False, "name": None}
    try:
        import torch
        if torch.cuda.is_available():
            found.update(torch_cuda=True, name=torch.cuda.get_device_name(0))
    except Exception:  # noqa: BLE001 - no torch is "no GPU" here
        pass
    try:
        import onnxruntime
        found["onnxruntime_cuda"] = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except Exception:  # noqa: BLE001
        pass
    found["summary"] = found["name"] or "no GPU"
    return found


def _load():
    """1-minute load average: other work on the machine slows every figure down."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def _ram_gb():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))}, Linux {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def _versions() -> dict:
    versions = {}
    for module in ("numpy", "torch", "onnxruntime", "rasterio", "sklearn"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - report what is there
            versions[module] = None
    try:
        from osgeo import gdal
        versions["gdal"] = gdal.__version__
    except Exception:  # noqa: BLE001
        versions["gdal"] = None
    return versions


def git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None
