"""Start the engine as a subprocess and stream its JSON-lines events into a Processing feedback.

Like GDAL's ``runGdal`` in QGIS's Processing: the child's output is read as it comes, the user sees
progress and log lines live, cancel terminates the child, and every way the child can fail ends in
an :class:`EngineError` whose message names the cause and the fix, with the tail of stderr.

This module does not import qgis: ``feedback`` is anything with QgsProcessingFeedback's methods
(``setProgress``, ``setProgressText``, ``pushInfo``, ``pushWarning``, ``pushDebugInfo``,
``pushConsoleInfo``, ``reportError``, ``isCanceled``), so the same runner serves the algorithms, scripts and tests.
"""
import collections
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..core.events import parse_event
from .log_format import EpochLog, ProgressText, TimeLeft

PLUGIN_DIR = Path(__file__).resolve().parents[1]
ENGINE_MODULE = "landcover_plugin.core.engine"
STDERR_TAIL_LINES = 40
CANCEL_GRACE_S = 120.0  # the trainer exports its best model after SIGTERM: give it time


class EngineError(Exception):
    """The engine failed; ``message`` is user-facing, ``kind`` follows the event contract."""

    def __init__(self, message: str, kind: str = "internal", stderr_tail: str = ""):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.stderr_tail = stderr_tail

    def user_message(self) -> str:
        if self.kind in ("bad_input", "cancelled") or not self.stderr_tail:
            return self.message
        return f"{self.message}\n\nLast lines the engine wrote to stderr:\n{self.stderr_tail}"


class EngineCancelled(EngineError):
    def __init__(self, message="Cancelled by the user.", stderr_tail=""):
        super().__init__(message, "cancelled", stderr_tail)


def engine_pythonpath() -> str:
    """Where the engine's packages are: the folder holding ``landcover_plugin`` and the one holding
    ``training`` (the repository root in a checkout; the plugin folder itself when installed)."""
    paths = [str(PLUGIN_DIR.parent)]
    if (PLUGIN_DIR / "training").is_dir():
        paths.append(str(PLUGIN_DIR))
    return os.pathsep.join(paths)


def engine_cwd() -> str:
    """The folder the engine starts in. ``python -m`` puts its start folder first on ``sys.path``, so a
    stray ``onnxruntime.py`` in QGIS's current folder would run inside the engine: start it in the folder
    that already holds our packages (first on its PYTHONPATH), never wherever QGIS happens to be."""
    return str(PLUGIN_DIR.parent)


CALLER_DIR = "LANDCOVER_CALLER_DIR"  # the folder relative paths are read from (the engine starts elsewhere)


def engine_environment(base=None) -> dict:
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (engine_pythonpath(), env.get("PYTHONPATH")) if p)
    env["PYTHONSAFEPATH"] = "1"  # Python 3.11+: never put the start folder on sys.path (older ones ignore it)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    try:  # relative paths in the command are the caller's (qgis_process run in a data folder): see engine.py
        env[CALLER_DIR] = os.getcwd()
    except OSError:  # the caller's folder was deleted: relative paths cannot mean anything
        env.pop(CALLER_DIR, None)
    env.pop("PYTHONHOME", None)  # QGIS's own Python home must not leak into another interpreter
    return env


def run_engine(python: str, command: str, args, feedback, cancel_grace_s: float = CANCEL_GRACE_S) -> dict:
    """Run ``python -m landcover_plugin.core.engine <command> <args>``; return its result outputs.

    Metric events are also collected and returned under the ``"_metrics"`` key when there are any.
    A result that arrives after a cancel (the trainer's best model) is still returned.
    """
    argv = [python, "-m", ENGINE_MODULE, command, *[str(a) for a in args]]
    feedback.pushDebugInfo("Engine: " + " ".join(_quote(a) for a in argv))
    run = _EngineRun(argv, feedback, cancel_grace_s, command)
    return run.wait()


def stream_process(argv, feedback, on_line=None, env=None, cwd=None) -> int:
    """Run any command (pip, venv), pushing each output line to the feedback; returns the exit code.

    ``on_line(line)`` may update progress. Cancel terminates the process and raises EngineCancelled.
    """
    feedback.pushDebugInfo("Running: " + " ".join(_quote(a) for a in argv))
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                text=True, encoding="utf-8", errors="replace", bufsize=1)
    except OSError as exc:
        raise EngineError(f"Could not start {argv[0]}: {exc.strerror or exc}.", "bad_input") from exc
    lines = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            if feedback.isCanceled():
                _terminate(proc, 10.0)
                proc.stdout.close()
                raise EngineCancelled() from None
            continue
        if line is None:
            break
        line = line.rstrip()
        if line:
            feedback.pushConsoleInfo(line)
            if on_line:
                on_line(line)
    returncode = proc.wait()
    proc.stdout.close()
    return returncode


class _EngineRun:
    def __init__(self, argv, feedback, cancel_grace_s, command=None):
        self.feedback = feedback
        self.cancel_grace_s = cancel_grace_s
        self.outputs = None
        self.error = None
        self.metrics = []
        self.epoch_log, self.progress_text = EpochLog(), ProgressText()
        self.time_left = TimeLeft() if command != "train" else None  # training: the ETA is on each epoch's line
        self.phase_started, self.fraction = None, 0.0
        self.stderr_tail = collections.deque(maxlen=STDERR_TAIL_LINES)
        self.lines = queue.Queue()
        try:
            self.proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                env=engine_environment(), cwd=engine_cwd(), text=True, encoding="utf-8", errors="replace", bufsize=1,
                **_new_process_group())
        except FileNotFoundError as exc:
            raise EngineError(
                f"The engine's Python was not found at '{argv[0]}'. Run the 'Set up engine environment' "
                f"algorithm, or point the LANDCOVER_PYTHON environment variable (or the plugin setting) "
                f"at a Python with torch, onnxruntime and rasterio.", "bad_input") from exc
        except PermissionError as exc:
            raise EngineError(f"The engine's Python '{argv[0]}' is not executable ({exc.strerror}). "
                              f"Point LANDCOVER_PYTHON at a Python interpreter.", "bad_input") from exc
        self._stdout_thread = threading.Thread(target=_pump, args=(self.proc.stdout, self.lines), daemon=True)
        self._stderr_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._stdout_thread.start()
        self._stderr_thread.start()

    def wait(self) -> dict:
        cancelled_at = None
        while True:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line.strip():
                self._handle(line)
            if cancelled_at is None and self.feedback.isCanceled():
                cancelled_at = time.monotonic()
                self.feedback.pushInfo("Cancelling: asking the engine to stop...")
                self.proc.terminate()
            elif cancelled_at is not None and time.monotonic() - cancelled_at > self.cancel_grace_s:
                self.feedback.pushWarning("The engine did not stop in time: killing it.")
                _kill(self.proc)
                cancelled_at = float("inf")
        returncode = self.proc.wait()
        self._stderr_thread.join(timeout=5)
        self._stdout_thread.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):  # else: ResourceWarning: unclosed file
            stream.close()
        return self._conclude(returncode, cancelled=cancelled_at is not None)

    def _conclude(self, returncode: int, cancelled: bool) -> dict:
        tail = "\n".join(self.stderr_tail)
        if self.outputs is not None and returncode == 0:
            if self.metrics:
                self.outputs.setdefault("_metrics", self.metrics)
            return self.outputs
        if cancelled:
            raise EngineCancelled(stderr_tail=tail)
        if self.error is not None:
            raise EngineError(self.error["message"], self.error.get("kind", "internal"), tail)
        raise EngineError(_crash_message(returncode, tail), _crash_kind(returncode), tail)

    def _handle(self, line: str) -> None:
        event = parse_event(line)
        if event is None:
            self.feedback.pushDebugInfo(line.rstrip())
            return
        name, fb = event["event"], self.feedback
        if name == "progress":
            self._progress(float(event.get("fraction", 0.0)), event.get("message") or "")
        elif name == "log":
            (fb.pushWarning if event.get("level") == "warning" else fb.pushInfo)(event.get("message", ""))
        elif name == "metric":
            self.metrics.append(event)
            elapsed = None if self.phase_started is None else time.monotonic() - self.phase_started
            fb.pushInfo(self.epoch_log.render(event, self.fraction, elapsed))
        elif name == "result":
            self.outputs = dict(event.get("outputs") or {})
        elif name == "error":  # raised once the engine exits; Processing shows the exception's message
            self.error = event

    def _progress(self, fraction: float, message: str) -> None:
        """The bar takes every step; the label (which QGIS's dialog also writes to the Log) only each new kind
        of step. A fraction that falls back marks a new phase (the trainer's refit), for the time left."""
        fb = self.feedback
        fb.setProgress(100.0 * fraction)
        if self.phase_started is None or fraction < self.fraction - 0.05:
            self.phase_started = time.monotonic()
        self.fraction = fraction
        label = self.progress_text.label_for(message)
        if label:
            fb.setProgressText(label)
        if self.time_left is not None:
            estimate = self.time_left.update(fraction)
            if estimate:
                fb.pushInfo(estimate)

    def _read_stderr(self):
        for line in self.proc.stderr:
            self.stderr_tail.append(line.rstrip())
            self.feedback.pushDebugInfo(line.rstrip())


def format_metric(event: dict) -> str:
    """The Log text of one metric event on its own (no best marker or time left: see EpochLog)."""
    return EpochLog().render(event)


def _crash_kind(returncode: int) -> str:
    return "out_of_memory" if returncode in (-signal.SIGKILL, 137) else "internal"


def _crash_message(returncode: int, tail: str) -> str:
    missing = _missing_module(tail)
    if missing:
        return (f"The engine environment lacks the Python package '{missing}'. Run the 'Set up engine "
                f"environment' algorithm, or install the project's requirements into the engine's Python.")
    if returncode in (-signal.SIGKILL, 137):
        return ("The engine was killed (SIGKILL), most likely by the system's out-of-memory killer. "
                "Use a smaller batch size or tile size, close other programs, or use a machine with more memory.")
    if returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.Signals._value2member_map_ else returncode
        return f"The engine died from signal {name} without reporting an error."
    return f"The engine stopped with exit code {returncode} without reporting an error (a crash)."


def _missing_module(tail: str):
    for line in reversed(tail.splitlines()):
        if "ModuleNotFoundError: No module named" in line:
            return line.split("No module named", 1)[1].strip().strip("'\"")
    return None


def _pump(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _new_process_group() -> dict:
    if sys.platform == "win32":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def _terminate(proc, grace_s: float) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _kill(proc)


def _kill(proc) -> None:
    """Kill the engine and anything it started (DataLoader workers) on POSIX."""
    if sys.platform != "win32":
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            pass
    proc.kill()


def _quote(text: str) -> str:
    return f'"{text}"' if " " in text else text
