"""Engine events: JSON lines on stdout, one object a line (DESIGN.md, "Engine events").

Engine commands report through an :class:`Events` object and never print to stdout themselves:
the engine's entry point points ``sys.stdout`` at stderr so stray prints from libraries cannot
corrupt the event stream. :class:`RecordingEvents` keeps events in memory for library use and tests.
"""
import json
import signal
import sys
import time

EVENT_NAMES = ("progress", "metric", "log", "result", "error")


def parse_event(line: str):
    """The event a line of engine output holds (a dict with a known ``"event"`` name), or None for any
    other line. The one reader of the event stream: the QGIS side's runner and the benchmarks use it."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if isinstance(event, dict) and event.get("event") in EVENT_NAMES:
        return event
    return None


class Events:
    """Writes engine events to a text stream and tracks cancellation.

    ``cancel_requested`` turns true when the QGIS side terminates the engine (SIGTERM), once
    :meth:`install_cancel_handler` has been called; long loops check it and stop cleanly.
    """

    def __init__(self, stream=None, progress_interval: float = 0.2):
        self._stream = stream if stream is not None else sys.stdout
        self._progress_interval = progress_interval
        self._last_progress = 0.0
        self.cancel_requested = False

    # -- emitters ---------------------------------------------------------------------------
    def emit(self, event: dict) -> None:
        self._stream.write(json.dumps(event, default=_json_default) + "\n")
        self._stream.flush()

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1]; throttled so a fast loop does not flood the pipe."""
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_progress < self._progress_interval:
            return
        self._last_progress = now
        self.emit({"event": "progress", "fraction": round(max(0.0, min(1.0, float(fraction))), 4),
                   "message": message})

    def metric(self, epoch: int, values: dict) -> None:
        self.emit({"event": "metric", "epoch": int(epoch), "values": values})

    def info(self, message: str) -> None:
        self.emit({"event": "log", "level": "info", "message": message})

    def warning(self, message: str) -> None:
        self.emit({"event": "log", "level": "warning", "message": message})

    def result(self, outputs: dict) -> None:
        self.emit({"event": "result", "outputs": outputs})

    def error(self, message: str, kind: str = "internal") -> None:
        self.emit({"event": "error", "message": message, "kind": kind})

    # -- cancellation -----------------------------------------------------------------------
    def install_cancel_handler(self) -> None:
        """Turn SIGTERM (and Ctrl+C) into ``cancel_requested`` instead of an abrupt death."""

        def _handler(signum, frame):  # noqa: ARG001 - signal handler signature
            self.cancel_requested = True

        signal.signal(signal.SIGTERM, _handler)
        signal.signal(signal.SIGINT, _handler)


class RecordingEvents(Events):
    """Keeps events in a list instead of writing them; for library use and tests."""

    def __init__(self):
        super().__init__(stream=_NullStream(), progress_interval=0.0)
        self.events = []

    def emit(self, event: dict) -> None:
        self.events.append(json.loads(json.dumps(event, default=_json_default)))

    def of_type(self, name: str) -> list:
        return [e for e in self.events if e["event"] == name]


class _NullStream:
    def write(self, _text):
        pass

    def flush(self):
        pass


def _json_default(value):
    """Serialise numpy scalars and arrays, and paths, without importing numpy here."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "__fspath__"):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
