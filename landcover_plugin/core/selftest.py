"""Engine command ``selftest``: exercise the engine-to-QGIS channel (progress, metric, log, cancel).

A diagnostic for analysts ("does the engine start and talk to QGIS?") and the runner's tests:
it emits progress for ``--seconds`` and stops early, as every engine loop must, when cancelled.
"""
import time
from dataclasses import dataclass

from .errors import Cancelled
from .options import check_bounds, option


@dataclass
class SelftestOptions:
    seconds: float = option(1.0, minimum=0.0, maximum=3600.0, help="how long to run (default 1)")


def selftest(options: SelftestOptions, events) -> dict:
    check_bounds(options)
    events.info("Engine self-test started.")
    events.warning("This is what a warning looks like.")
    steps = max(1, round(options.seconds / 0.05))
    for step in range(steps):
        if events.cancel_requested:
            raise Cancelled("Self-test cancelled.")
        events.progress((step + 1) / steps, f"step {step + 1}/{steps}")
        time.sleep(0.05)
    events.metric(1, {"steps": steps, "seconds": float(options.seconds)})
    return {"steps": steps}
