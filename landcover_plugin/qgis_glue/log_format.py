"""How engine events read in the Processing Log: one compact line per epoch, few progress texts.

QGIS-free (the runner that calls it is too), so the same text shows in the dialog, in ``qgis_process`` and in
tests. The engine's events stay as DESIGN.md says; only their rendering is decided here.

* :class:`EpochLog` turns each training ``metric`` event into two lines: epoch, losses, overall accuracy and
  mIoU in percent, a best marker, the epoch's seconds and the time left; then the IoU of each class. Numbers are
  padded with two no-break spaces a missing digit: the dialog's Log is HTML, which collapses ordinary spaces (and
  Qt also collapses the figure space U+2007), and in the usual sans fonts (DejaVu, Liberation, Arial) a space is
  half a digit wide, so the columns line up in the dialog.
* :class:`ProgressText` decides when a progress message becomes the progress label. QGIS's algorithm dialog
  also appends every ``setProgressText`` to the Log, so a label per batch would bury the metrics: the label
  changes only when a new kind of step starts (counters such as "3/16" do not make a new kind), and per-batch
  and per-tile counts stay in the progress bar.
* :class:`TimeLeft` estimates the time a run has left from its progress, once it has run long enough for the
  estimate to mean something (the classifier's first batches).
"""
import re
import time

PAD = "\u00a0\u00a0"  # two no-break spaces: the width of one digit in the dialog's font
COUNTER = re.compile(r"\d+(/\d+)?")

# Friendly labels for the engine's repeating progress messages (counters replaced by '#').
STAGE_LABELS = {
    "epoch #: batch #": "Training (each batch in the progress bar; each epoch in the log)",
    "epoch #: validating": "Validating each epoch on the validation chips",
    "tile #": "Classifying tiles",
    "window #": "Reading windows",
    "window #, # chips": "Cutting the raster into chips",
    "small training polygons": "Adding chips for small training polygons",
    "building overviews": "Building overviews",
    "step #": "Running",
}
SILENT = {"done", "counted"}  # the end shows in the Log anyway


def pad(text: str, width: int) -> str:
    """Right-align ``text`` in ``width`` digit widths."""
    return PAD * max(0, width - len(text)) + text


def percent(value, width: int = 5) -> str:
    """'56.7 %' right-aligned in ``width`` digits; 'n/a' (no percent sign) in the same width for no value."""
    return pad("n/a", width + 2) if value is None else pad(f"{100.0 * value:.1f}", width) + " %"


def duration(seconds) -> str:
    """'0.4 s', '42 s', '3:05 min', '1:02:03 h'."""
    if seconds is None:
        return "?"
    seconds = max(0.0, float(seconds))
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}:{secs:02d} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d} h"


class EpochLog:
    """Renders the trainer's per-epoch metric events; tracks the best epoch of each phase (held-out run,
    refit) as the trainer does: the highest validation mIoU, ties broken by the lower validation loss."""

    def __init__(self):
        self.best = None
        self.phase = None
        self.last_epoch = 0

    def is_training(self, values: dict) -> bool:
        return "train_loss" in values

    def render(self, event: dict, fraction_done=None, elapsed=None) -> str:
        """The Log text for one metric event. ``fraction_done`` and ``elapsed`` (seconds) of the current
        phase give the time left; without them the line has no ETA."""
        values = dict(event.get("values") or {})
        epoch = int(event.get("epoch") or 0)
        if not self.is_training(values):
            return generic(event)
        phase = values.get("phase") or "train"
        if phase != self.phase or epoch <= self.last_epoch:  # a new phase (the refit) starts over
            self.phase, self.best = phase, None
        self.last_epoch = epoch
        refit = phase == "refit"
        label = "Epoch" if phase == "train" else f"{phase.capitalize()} epoch"  # "Refit epoch", "Fold 2/4 epoch"
        head = f"{label} {epoch}:" + PAD * max(0, 3 - len(str(epoch)))
        parts = [f"loss {values['train_loss']:.3f}" + ("" if refit else f" / {_num(values.get('val_loss'))} val")]
        best_mark = ""
        if not refit:
            parts.append(f"OA {percent(values.get('val_accuracy'))}")
            parts.append(f"mIoU {percent(values.get('val_miou'))}")
            if self._is_better(values):
                self.best = values
                best_mark = "best"
        parts.append((best_mark or PAD * 4) if not refit else "")
        seconds = values.get("epoch_seconds", values.get("train_seconds"))
        parts.append(pad(duration(seconds), 7))
        left = time_left(fraction_done, elapsed)
        if left is not None:
            parts.append(f"ETA {duration(left)}")
        line = head + " " + PAD.join(p for p in parts if p)  # no-break: HTML would make two spaces one
        ious = [(k[len("val_iou_"):], v) for k, v in values.items() if k.startswith("val_iou_")]
        if ious and not refit:
            line += "\n" + PAD * 4 + "IoU: " + ", ".join(f"{name} {percent(v, 0)}" for name, v in ious)
        return line

    def _is_better(self, values) -> bool:
        if self.best is None:
            return True
        score, best = _score(values.get("val_miou")), _score(self.best.get("val_miou"))
        return score > best + 1e-6 or (abs(score - best) <= 1e-6
                                       and (values.get("val_loss") or 0) < (self.best.get("val_loss") or 0))


def generic(event: dict) -> str:
    """Any other command's metric event: ``Epoch N: key value, ...`` with short numbers."""
    values = dict(event.get("values") or {})
    phase = values.pop("phase", None)
    parts = []
    for key, value in values.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        elif isinstance(value, (int, str)):
            parts.append(f"{key} {value}")
    label = f"{phase.capitalize()} epoch" if phase else "Epoch"
    return f"{label} {event.get('epoch')}: " + ", ".join(parts)


def time_left(fraction_done, elapsed):
    """Seconds left at a steady rate, or None when the fraction or elapsed time is unknown or too small."""
    if not fraction_done or elapsed is None or fraction_done <= 0 or fraction_done >= 1 or elapsed <= 0:
        return None
    return elapsed * (1.0 - fraction_done) / fraction_done


class ProgressText:
    """Which progress messages become the label (and so, in the dialog, a Log line): one per kind of step."""

    def __init__(self):
        self.seen = set()

    def label_for(self, message: str):
        """The label to show for this message, or None to leave the label as it is."""
        if not message:
            return None
        key = COUNTER.sub("#", message.strip())
        if key in self.seen or key in SILENT:
            return None
        self.seen.add(key)
        if key in STAGE_LABELS:
            return STAGE_LABELS[key]
        text = re.sub(r"\s+([,:;])", r"\1", " ".join(COUNTER.sub("", message).split()))
        return text.strip(" ,:;") or None


class TimeLeft:
    """A one-time estimate of the run's duration from its first progress ("about 3:10 min left")."""

    def __init__(self, min_seconds: float = 5.0, min_fraction: float = 0.02, clock=time.monotonic):
        self.clock = clock
        self.min_seconds, self.min_fraction = min_seconds, min_fraction
        self.started = None
        self.told = False

    def elapsed(self):
        return None if self.started is None else self.clock() - self.started

    def update(self, fraction: float):
        """Feed each progress fraction; returns the estimate's text once, when it first becomes sound."""
        if self.started is None:
            self.started = self.clock()
            return None
        elapsed = self.elapsed()
        if self.told or fraction < self.min_fraction or elapsed < self.min_seconds:
            return None
        self.told = True  # one chance: later, the end is near enough to need no estimate
        if fraction > 0.5 or time_left(fraction, elapsed) < 10:
            return None
        return (f"Estimated time left: about {duration(time_left(fraction, elapsed))} (from the first "
                f"{100 * fraction:.0f} % in {duration(elapsed)}).")


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _score(value) -> float:
    return -1.0 if value is None else float(value)
