"""One classification's pipeline: read, run, blend and write every tile of a grid.

Three stages keep memory bounded:

1. read the next batch of tile windows (rasterio), mark nodata/NaN/outside-mask pixels invalid, skip
   tiles with no valid pixel, standardise the rest with the card's mean/std (:mod:`classify_input`);
2. run the batch through onnxruntime (which releases the GIL), on the CPU ``model.streams`` batches at once
   (:func:`..model.session.cpu_streams`: two one-thread runs side by side beat one two-thread run on 2 cores);
3. blend the probabilities into a strip one tile high (:class:`tiling.StripBlender`) and write finished
   rows (:class:`classified_raster.ClassifiedRasterWriter`), in grid order.

Stages 1 and 3 run in their own threads while the model runs, so reading, blending and writing hide behind
it as far as the cores allow. Measured on 2 cores, trainer's U-Net base width 16 over a 25 Mpx GeoTIFF (512 px
tiles), two batches at once: whole run 10.5-11.8 s against 10.3-11.4 s for bare onnxruntime running the same
tiles one two-thread batch after another, and 9.5-9.8 s for bare onnxruntime running them two at once as the
classifier does. Before streams (one two-thread batch at a time), measured so (whole run against the same run
with the stages in turn, medians of 3-5 alternated runs): trainer's U-Net base width 16 on Zion, 512 px tiles:
1.05 s against 1.12 s; the same over a 25 Mpx raster 11.7 s against 12.4 s; a 64 px-chip model at 64 px tiles
1.05 s against 1.11 s; 256 px tiles 0.73 s against 0.74 s. (An earlier measurement, at 128 px tiles with
onnxruntime's idle threads spinning, found threads slower: 1.5x bare onnxruntime against 1.13x; no longer.)
Tried and left out, same machine: the helper threads at SCHED_IDLE or nice 19 (whole run 1.172x and 1.161x bare
onnxruntime against 1.174x), onnxruntime writing into a preallocated output by IOBinding (16.33 against 16.36 ms a
tile), spinning onnxruntime threads (within noise). What the whole run adds to the model, stages in turn (int8
U-Net, Zion, 256 px tiles): reading the DEFLATE GeoTIFF 37 ms, model load and band preflight 25 ms, labels 11 ms,
blending 10 ms, flushing and overviews 14 ms, against 0.32 s in the model.
"""
import collections
import concurrent.futures as futures
import contextlib
import threading
import time

import numpy as np

from ..errors import BadInputError, Cancelled
from ..events import Events
from ..model.class_shares import weigh
from .tiling import NonFiniteProbabilities, StripBlender


def run_pipeline(source, model, grid, writer, batch_size, confidence, events, pipelined=True,
                  uncertainty=None, weights=None) -> tuple:
    """Read, run, blend and write every tile, ``batch_size`` tiles a run, and finish the outputs; returns
    (stats, the outputs' paths). ``pipelined``: reading and blending/writing in their own threads while the
    model makes ``model.streams`` runs at once; else in turn with it, a run at a time. ``weights``: per class,
    applied to every tile's probabilities (:func:`..model.class_shares.card_weights`)."""
    blender = (uncertainty.blender if uncertainty else StripBlender)(
        grid, [c["id"] for c in model.classes], writer.write_rows, confidence=confidence)
    batches = source.batches(grid, batch_size)
    streams = model.streams if pipelined else 1
    stats = {"tiles": len(grid), "tiles_run": 0, "tiles_skipped": 0, "model_seconds": 0.0,
             "pipelined": pipelined, "streams": streams, "tiles_per_run": batch_size}
    needs_softmax = None
    clock = _BusyClock()
    stage = (lambda name, workers=1: futures.ThreadPoolExecutor(workers, name)) if pipelined else \
        (lambda name, workers=1: _Inline())
    with stage("landcover-read") as reader, stage("landcover-write") as blend_writer, \
            (stage("landcover-model", streams) if streams > 1 else _Inline()) as runner:
        # Leaving this block by an error waits for the read and the runs in flight, so the raster closes after them.
        pending_read = reader.submit(next, batches, None)
        running = collections.deque()  # (batch, its probabilities to come), in grid order
        pending_write = gave_back = probs = None
        with _Preflight(source, reader, events) as preflight:
            while True:
                batch = pending_read.result()
                if batch is not None:
                    pending_read = reader.submit(next, batches, None)  # read ahead while the model runs
                    preflight.start()  # after the reads that start the first runs
                    if events.cancel_requested:
                        raise Cancelled("Classification cancelled; the partial output was removed.")
                    running.append((batch, runner.submit(clock.timed, model.run, batch.x)))
                    if streams > 1 and _tiles_through(batch, grid) == len(grid):
                        # the grid's last run: the next stream to end gives back what the ended runs held beside it
                        gave_back = runner.submit(model.give_back_memory)
                    if len(running) < streams:
                        continue
                elif streams > 1 and running and not gave_back:  # the last tiles were skipped: a stream is free
                    gave_back = runner.submit(model.give_back_memory)
                if not running:
                    break
                batch, run = running.popleft()
                probs = run.result()
                preflight.tell()
                if needs_softmax is None:  # the blender checks every later batch as it labels it
                    _check_finite(probs, batch, len(grid))
                    needs_softmax = _needs_softmax(probs, events)
                if needs_softmax:
                    probs = _softmax(probs)
                if weights is not None:
                    weigh(probs, weights)
                if pending_write is not None:
                    pending_write.result()  # at most one batch waits to be blended: memory stays bounded
                pending_write = blend_writer.submit(_blend, blender, batch, [probs])
                stats["tiles_run"] += len(batch.tiles)
                done = _tiles_through(batch, grid)
                report_progress(events, 0.97 * done / len(grid), f"tile {done}/{len(grid)}")
        # Every run is done: free the session on the idle reader beside the last rows' blending and writing, and
        # the outputs' finishing (flushing, overviews, renaming into place).
        last_outputs, probs, run = [probs], None, None  # the main thread lets go of them: see _close_model
        closing = reader.submit(_close_model, model, pending_write, last_outputs)
        if pending_write is not None:
            pending_write.result()
        blend_writer.submit(_blending, blender.finish).result()
        outputs = writer.finish()
        outputs["uncertainty"] = uncertainty.finish() if uncertainty else None
        closing.result()
    stats["tiles_skipped"] = len(grid) - stats["tiles_run"]
    stats["model_seconds"] = round(clock.seconds, 3)
    stats["softmax_applied"] = bool(needs_softmax)
    return stats, outputs


def _tiles_through(batch, grid) -> int:
    """How many of ``grid``'s tiles come up to and with ``batch``'s last (run or skipped)."""
    return batch.tiles[-1].index + 1 - grid.first_index


class _Preflight:
    """The band statistics' pre-flight check (:mod:`.preflight`), run on the reader thread once it has read the
    tiles of the first runs, so that it is not in the way of the first model run (Zion: 10 ms of the 40 ms
    before it); its warnings are told by the pipeline's thread as soon as they are there (an error in the run
    waits for them: they may say why the run failed)."""

    def __init__(self, source, reader, events):
        self.source, self.reader, self.events = source, reader, events
        self.future, self.started = None, False

    def start(self) -> None:
        if not self.started:
            self.started, self.future = True, self.reader.submit(self.source.statistics_warnings)

    def tell(self, wait: bool = False) -> None:
        if self.future is not None and (wait or self.future.done()):
            future, self.future = self.future, None
            for message in future.result():
                self.events.warning(message)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if kind is None:  # every tile read: check now if no tile was (all skipped), and tell
            self.start()
            self.tell(wait=True)
        else:  # the run failed: tell the warning if it comes, since it may say why
            with contextlib.suppress(Exception):
                self.tell(wait=True)
        return False


class _BusyClock:
    """Seconds during which at least one model run was going (runs side by side overlap: their sum overcounts)."""

    def __init__(self):
        self.seconds, self._running, self._since = 0.0, 0, 0.0
        self._lock = threading.Lock()

    def timed(self, call, *args):
        with self._lock:
            if not self._running:
                self._since = time.perf_counter()
            self._running += 1
        try:
            return call(*args)
        finally:
            with self._lock:
                self._running -= 1
                if not self._running:
                    self.seconds += time.perf_counter() - self._since


class _Inline:
    """An executor that runs each call at once in the calling thread."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def submit(self, call, *args):
        future = futures.Future()
        try:
            future.set_result(call(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future


def _blend(blender, batch, outputs: list):
    """Blend ``batch`` with its probabilities, taken out of ``outputs`` so that no reference outlives the call."""
    _blending(blender.add_batch, batch.tiles, outputs.pop(), batch.valid)


def _close_model(model, blended, last_outputs: list) -> None:
    """Free the model's session once ``blended`` (the last blending, or None) is done with the last outputs.

    Freeing the session's memory (hundreds of MB: 40 ms of a 1.4 s Zion run) with the session would hold the
    GIL, and so stop the last rows' blending and writing: it is given back first without
    (:meth:`OnnxModel.give_back_memory`), once the last outputs, which are views of it, are let go of. With two
    streams, the stream left free when the reading ends gives back what the ended runs held beside the last run.
    Measured on Zion (trainer's U-Net, 512 px tiles, 10 alternated runs): from the last run's end to the
    outputs published 36 ms against 76 ms freeing with the session; whole run 1.51 s against 1.56 s."""
    if blended is not None:
        futures.wait([blended])
    last_outputs.clear()
    model.give_back_memory()
    model.close()


def _blending(call, *args):
    try:
        call(*args)
    except NonFiniteProbabilities as exc:
        raise BadInputError(_non_finite_message(f"first at row {exc.row}, column {exc.col} of the area")) from None


def _check_finite(probs: np.ndarray, batch, tiles: int) -> None:
    """NaN or infinite outputs would all become class 1 (argmax): stop instead of painting a one-class map."""
    if np.isfinite(probs.sum()):  # one pass; a NaN or inf anywhere makes the sum so (or a huge finite sum)
        return
    finite = np.isfinite(probs).all(axis=(1, 2, 3))
    if not finite.all():
        first = batch.tiles[int(np.flatnonzero(~finite)[0])]
        raise BadInputError(_non_finite_message(f"first in tile {first.index + 1} of {tiles}, at row {first.row}, "
                                                f"column {first.col}"))


def _non_finite_message(where: str) -> str:
    return (f"The model returned NaN or infinite values ({where}): its weights are broken (a diverged training?) or "
            f"the input is far outside what it was trained on (check the bands, and the mean and std it "
            f"standardises with). No classified raster was written.")


SOFTMAX_APPLIED = ("The model's outputs are not class probabilities (they do not sum to 1 per pixel): applied a "
                   "softmax to them. Confidence values are that softmax.")


def _needs_softmax(probs: np.ndarray, events: Events) -> bool:
    sums = probs.sum(axis=1)
    if probs.min() >= -1e-4 and np.abs(sums - 1.0).max() <= 1e-2:
        return False
    events.warning(SOFTMAX_APPLIED)
    return True


def _softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits - logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def report_progress(events: Events, fraction: float, message: str) -> bool:
    events.progress(fraction, message)
    return not events.cancel_requested
