"""onnxruntime's optimised graphs kept on disk, so a model is optimised once per machine rather than at every run.

onnxruntime optimises a model's graph each time it makes a session. On the CPU most of that time goes to the layout
transformation (convolutions in blocks sized for this CPU's vector units), which makes runs 30-50 % faster: measured
on 2 cores, a ResNet-34 U-Net takes 0.09-0.12 s to optimise (about 5 % of classifying Zion) against 0.03 s to load
the graph optimised before; the trainer's U-Net 0.012 s against 0.005 s. The outputs are the same to the bit.

The optimised graph holds this CPU's layout, so it is kept per machine: its key is the model file (path, size,
modification time, inode), the onnxruntime version and the CPU (model name and instruction-set flags). The files
live in ``$LANDCOVER_CACHE_DIR`` (default: the user's cache folder, ``landcover_plugin/onnxruntime`` in it); a
model rewritten in place replaces its graph, and the least recently used go beyond :data:`MAX_FILES`.
``LANDCOVER_CACHE_DIR=off`` turns the cache off. A cache never stops a run: a file it cannot read or write means
optimising at load, as without it.
"""
import functools
import hashlib
import os
import platform
import sys

import onnxruntime as ort

CACHE_ENV = "LANDCOVER_CACHE_DIR"
MAX_FILES = 8
MAX_MODEL_BYTES = 1 << 30  # onnxruntime saves a graph as one protobuf (2 GB at most, weights included)


def cache_folder():
    """The folder for optimised graphs, or None when the cache is off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "0", "no") else chosen
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "landcover_plugin", "onnxruntime")


@functools.lru_cache(maxsize=1)
def cpu_signature() -> str:
    """The CPU's model name and instruction-set flags (what the optimised layout depends on); read once a process."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as info:
            lines = [line for line in info if line.startswith(("model name", "flags", "Features"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def cache_key(path: str, stat: os.stat_result = None) -> str:
    """``<the file's place>-<its version, onnxruntime's and the CPU's>``: a model rewritten in place (a new version)
    keeps the first part, so its old graph can go."""
    stat = stat or os.stat(path)
    place = _digest(os.path.realpath(path))
    version = _digest("\n".join([str(stat.st_size), str(stat.st_mtime_ns), str(stat.st_ino), ort.__version__,
                                  cpu_signature()]))
    return f"{place}-{version}"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def optimised_session(path: str, options: ort.SessionOptions, providers: list) -> ort.InferenceSession:
    """``ort.InferenceSession(path, options, providers)``, from this machine's optimised graph of ``path`` when one
    is kept (else optimised now and kept). Errors of the model itself are onnxruntime's, as without a cache."""
    kept = _kept_path(path, options, providers)
    if kept is None:
        return _session(path, options, providers)
    if os.path.exists(kept):
        session = _from_kept(kept, options, providers)
        if session is not None:
            return session
    return _optimise_and_keep(path, kept, options, providers)


def _session(path: str, options, providers) -> ort.InferenceSession:
    return ort.InferenceSession(path, sess_options=options, providers=providers)


def _kept_path(path: str, options, providers):
    """Where this machine's optimised graph of ``path`` is kept, or None when the cache does not apply."""
    folder = cache_folder()
    if folder is None or providers != ["CPUExecutionProvider"] or \
            options.graph_optimization_level != ort.GraphOptimizationLevel.ORT_ENABLE_ALL:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None  # onnxruntime says what is wrong with the path
    if stat.st_size > MAX_MODEL_BYTES:
        return None
    return os.path.join(folder, cache_key(path, stat) + ".onnx")


def _from_kept(kept: str, options, providers):
    saved_level = options.graph_optimization_level
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # optimised already
    try:
        session = _session(kept, options, providers)
        os.utime(kept)  # recently used: kept longest
        return session
    except Exception:  # noqa: BLE001 - a damaged or foreign file: optimise again, and replace it
        _remove(kept)
        return None
    finally:
        options.graph_optimization_level = saved_level


def _optimise_and_keep(path: str, kept: str, options, providers):
    part = f"{kept}.{os.getpid()}.part"
    try:
        os.makedirs(os.path.dirname(kept), exist_ok=True)
    except OSError:
        return _session(path, options, providers)
    options.optimized_model_filepath = part
    try:
        session = _session(path, options, providers)
    except Exception:  # noqa: BLE001 - saving failed (a read-only folder, a full disk) or the model is bad
        session = None
    finally:
        options.optimized_model_filepath = ""
    if session is None:
        _remove(part)
        return _session(path, options, providers)  # a bad model raises here, as without a cache
    try:
        os.replace(part, kept)
        _prune(kept)
    except OSError:
        _remove(part)  # not kept: this run is as fast as without a cache
    return session


def _prune(kept: str) -> None:
    """Remove the graphs of earlier versions of ``kept``'s model, and the least recently used beyond
    :data:`MAX_FILES`."""
    folder, name = os.path.split(kept)
    place = name.split("-")[0] + "-"
    entries = []
    for entry in os.scandir(folder):
        if not entry.name.endswith(".onnx") or entry.name == name:
            continue
        if entry.name.startswith(place):
            _remove(entry.path)  # the same file, rewritten since
        else:
            entries.append((entry.stat().st_mtime, entry.path))
    for _, stale in sorted(entries, reverse=True)[MAX_FILES - 1:]:
        _remove(stale)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass
