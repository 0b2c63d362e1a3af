"""Engine command ``selftest``: exercise the engine-to-QGIS channel (progress, metric, log, cancel).

A diagnostic for analysts ("does the engine start and talk to QGIS?") and the runner's tests:
it emits progress for ``--seconds`` and stops early, as every engine loop must, when cancelled.
"""
import time

from .errors import Cancelled


def add_arguments(parser):
    parser.add_argument("--seconds", type=float, default=1.0, help="how long to run (default 1)")


def run(args, events):
    events.info("Engine self-test started.")
    events.warning("This is what a warning looks like.")
    steps = max(1, round(args.seconds / 0.05))
    for step in range(steps):
        if events.cancel_requested:
            raise Cancelled("Self-test cancelled.")
        events.progress((step + 1) / steps, f"step {step + 1}/{steps}")
        time.sleep(0.05)
    events.metric(1, {"steps": steps, "seconds": float(args.seconds)})
    return {"steps": steps}
