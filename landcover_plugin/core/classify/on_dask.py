"""``classify --dask local:N | tcp://host:8786``: classify a raster in shards on a Dask cluster.

The area is cut into shards of whole tile rows (:func:`.shards.plan_shards`). Each shard is one task: a worker
runs the single-process classifier on it (:func:`.run.classify_raster` with ``rows``), which runs the tile
rows that touch the shard's rows (the one above it too, for the overlap) with the same tiling, blending and
nodata handling, so every pixel equals a single-process run's. The shard writes its own GeoTIFF into the
shards folder; the engine then writes a VRT over them and, when asked, one Cloud-Optimised GeoTIFF
(:mod:`.shards`).

- ``local:N`` starts a ``LocalCluster`` (onnxruntime threads = usable CPUs / N); an address connects to a
  running scheduler; every worker must see the raster, the model and the output folder (:mod:`.dask_cluster`).
- Progress: the shards done, plus the running shards' own progress (worker events, twice a second). Cancel
  stops queued shards and tells running ones (a ``distributed.Event`` they check between batches); finished
  shards are kept for a rerun.
- A shard that fails (an error, or its worker killed) is retried once, then reported by name. Errors of the
  input (a :class:`BadInputError` in a shard) are reported at once: a retry cannot fix them. A local cluster
  fails a killed worker's task at once (``allowed-failures`` 0); a scheduler of your own may first rerun it
  itself, as its ``distributed.scheduler.allowed-failures`` says.
- Resume: a rerun with the same settings skips the shards already complete (see :mod:`.shards`).

Reaching the cluster and checking what its workers see: :mod:`.dask_cluster`.

Test hook (real behaviour, used by tests/engine/test_classify_dask.py): ``LANDCOVER_TEST_FAIL_SHARD=I`` kills
the worker process running shard I on its first attempt; ``I:every`` makes shard I raise on every attempt.
"""
import dataclasses
import os
import time
import uuid

from ..errors import BadInputError, Cancelled, LandcoverError
from ..events import RecordingEvents
from ..model.session import usable_cpus
from ..options import parse_floats
from .dask_cluster import check_shared_storage, connect
from .pipeline import SOFTMAX_APPLIED
from .run import blank_reason, classify_raster, map_weights, prepared_run
from .shards import assemble, fingerprint, output_paths, plan_shards, prepare_folder, shard_name, write_json_atomic
from .source import open_source
from .tile_size import model_grid

FAIL_HOOK = "LANDCOVER_TEST_FAIL_SHARD"
POLL_SECONDS = 0.2


def classify_on_dask(o, events) -> dict:
    """Classify ``o.raster`` on the Dask cluster ``o.dask``; returns the outputs as a single-process run does,
    plus VRT, SHARDS, the shard counts and timings (VRT_SECONDS, COG_SECONDS, per-shard seconds); ``tiles_run``
    and ``model_seconds`` count the shards run this time (not those kept from a cancelled run)."""
    started = time.perf_counter()
    if o.confidence or o.uncertainty:
        raise BadInputError("Confidence and uncertainty rasters are not made on Dask yet: leave them out, or run "
                            "without --dask.")
    # workers open every file by its absolute path (their working folder is not this process's)
    o = dataclasses.replace(o, **{name: os.path.abspath(os.fspath(getattr(o, name)))
                                  for name in ("raster", "model", "mask", "output") if getattr(o, name)})
    paths = output_paths(o)
    if not os.path.exists(o.model):
        raise BadInputError(f"The model {o.model} does not exist.")
    with prepared_run(dataclasses.replace(o, threads=1), events) as (model, source, tile, batch, overlap_px):
        grid = model_grid(model, source.height, source.width, tile, overlap_px)
        width, height, classes = source.width, source.height, model.classes
        device = "cuda" if model.uses_cuda else "cpu"
        _weights, tags = map_weights(o, model, events)  # the shards' own logs of them stay on the workers
    settings = fingerprint(o, tile, overlap_px)
    tick = time.perf_counter()
    with connect(o.dask, events) as (client, workers, local):
        cluster_seconds = time.perf_counter() - tick
        check_shared_storage(client, o, paths["shards"], events)
        shards, done = prepare_folder(paths["shards"], settings, int(o.dask_shard_rows or 0),
                                      lambda: plan_shards(grid.row_offsets, height, workers, o.dask_shard_rows),
                                      events)
        events.info(f"Classifying {width}x{height} px in {len(shards)} shards of whole tile rows ({tile} px tiles "
                    f"overlapping by {overlap_px} px) on {workers} Dask worker(s)"
                    f"{f' ({len(done)} done before)' if done else ''}.")
        threads = o.threads or (max(1, usable_cpus() // workers) if local else None)
        base = dataclasses.replace(o, dask=None, cog=False, overwrite=True, threads=threads)
        specs = [{"options": _as_dict(dataclasses.replace(base, output=_shard_path(paths, i), rows=list(rows))),
                  "index": i, "rows": list(rows), "settings": settings, "attempt": 1}
                 for i, rows in enumerate(shards) if i not in done]
        summaries = run_shards(client, specs, len(shards), len(done), events)
    softmax_applied = any(s["softmax_applied"] for s in summaries)
    if softmax_applied:  # the shards' own warning stays on the workers
        events.warning(SOFTMAX_APPLIED)
    shard_files = [_shard_path(paths, i) for i in range(len(shards))]
    tiles_run = sum(s["tiles_run"] for s in summaries)
    outputs = assemble(paths, shard_files, classes, events, tags)
    seconds = time.perf_counter() - started
    megapixels = width * height / 1e6
    result = {"OUTPUT": paths["output"], "QML": outputs["QML"], "VRT": outputs["VRT"], "SHARDS": paths["shards"],
              "CLASSES": classes, "DEVICE": device, "SECONDS": round(seconds, 3), "MEGAPIXELS": round(megapixels, 3),
              "MEGAPIXELS_PER_SECOND": round(megapixels / seconds, 3), "TILE": tile, "OVERLAP": overlap_px,
              "BATCH_SIZE": batch, "WORKERS": workers, "shards": len(shards), "shards_run": len(summaries),
              "shards_reused": len(done), "tiles": len(grid), "tiles_run": tiles_run,
              "model_seconds": round(sum(s["model_seconds"] for s in summaries), 3),
              "shard_seconds": [s["seconds"] for s in summaries],
              "shard_megapixels": [s["megapixels"] for s in summaries],
              "shard_tiles": [s["tiles"] for s in summaries],
              "CLUSTER_SECONDS": round(cluster_seconds, 3), "VRT_SECONDS": outputs["VRT_SECONDS"],
              "softmax_applied": softmax_applied}
    if outputs.get("COG"):
        result["COG"], result["COG_SECONDS"] = outputs["COG"], outputs["COG_SECONDS"]
    if not done and tiles_run == 0:
        with open_source(os.fspath(o.raster), model, extent=parse_floats(o.extent, "extent", 4), mask_path=o.mask,
                         resample=o.resample, events=RecordingEvents(), bands=o.bands) as source:
            result["BLANK"] = blank_reason(source)
        events.warning(result["BLANK"])
    events.progress(1.0, "done")
    cog = f", COG {outputs['COG_SECONDS']:.1f} s" if outputs.get("COG") else ""
    events.info(f"Classified {megapixels:.1f} Mpx in {seconds:.1f} s on {workers} Dask worker(s) "
                f"({megapixels / seconds:.2f} Mpx/s): {len(summaries)} shards run, {len(done)} kept from before; "
                f"VRT {outputs['VRT_SECONDS']:.1f} s{cog}.")
    return result


def _shard_path(paths: dict, index: int) -> str:
    return os.path.join(paths["shards"], f"{shard_name(index)}.tif")


def _as_dict(options) -> dict:
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


# -- the shards -------------------------------------------------------------------------------------
def run_shards(client, specs: list, total: int, done_before: int, events) -> list:
    """Run the shard tasks; retry a failed one once; report progress per shard; stop on cancel."""
    from distributed import Event

    token = uuid.uuid4().hex[:8]
    cancel = Event(f"landcover-cancel-{token}", client=client)
    topic = f"landcover-progress-{token}"
    partial = {}  # shard index -> fraction done, from the workers' progress messages
    client.subscribe_topic(topic, lambda event: partial.__setitem__(event[1]["index"], event[1]["fraction"]))
    pending = {}

    def submit(spec):
        spec = dict(spec, cancel=cancel.name, topic=topic)
        key = f"landcover-{shard_name(spec['index'])}-try{spec['attempt']}-{token}"
        pending[client.submit(_shard_task(), spec, key=key, pure=False)] = spec

    for spec in specs:
        submit(spec)
    summaries, shown = [], 0.0

    def tell_progress(message: str) -> None:
        # the shards done and the running shards' own progress, never less than told before: a shard's share moves
        # from its last report to done when it ends, and a retried shard starts again from 0
        nonlocal shown
        running = sum(partial.get(spec["index"], 0.0) for spec in pending.values())
        shown = max(shown, 0.95 * (done_before + len(summaries) + running) / total)
        events.progress(shown, message)

    try:
        while pending:
            if events.cancel_requested:
                cancel.set()
                client.cancel(list(pending))
                raise Cancelled(f"Classification cancelled: {done_before + len(summaries)} of {total} shards are "
                                f"complete and kept; run the same command again to resume.")
            finished = [f for f in pending if f.done()]
            if not finished:
                tell_progress(f"shard {done_before + len(summaries)}/{total} done, {len(pending)} running or queued")
                time.sleep(POLL_SECONDS)
                continue
            for future in finished:
                spec = pending.pop(future)
                name = f"{shard_name(spec['index'])} (rows {spec['rows'][0]}..{spec['rows'][1]})"
                if future.status == "finished":
                    summaries.append(future.result())
                    tell_progress(f"shard {done_before + len(summaries)}/{total}")
                    continue
                error = future.exception()
                if isinstance(error, LandcoverError):
                    raise type(error)(f"Shard {name}: {error.message}") from error
                reason = f"{type(error).__name__}: {str(error)[:300]}"
                if spec["attempt"] == 1:
                    events.warning(f"Shard {name} failed ({reason}); retrying it once.")
                    submit(dict(spec, attempt=2))
                    continue
                raise LandcoverError(f"Shard {name} failed twice ({reason}). The {done_before + len(summaries)} "
                                     f"shards complete are kept: fix the cause (the workers' logs have the details) "
                                     f"and run the same command again to resume.") from error
    finally:
        if pending:
            client.cancel(list(pending))
    return summaries


def _shard_task():
    """:func:`run_shard` behind a lambda, which cloudpickle sends by value: the scheduler unpickles tasks, and so
    needs no land-cover package of its own (the workers do)."""
    return lambda spec: __import__("importlib").import_module(__name__).run_shard(spec)


def run_shard(spec: dict) -> dict:
    """On a worker: classify one shard into its GeoTIFF, then mark it done."""
    _test_failure(spec)
    events = _ShardEvents(spec.get("cancel"), spec.get("topic"), spec["index"])
    tick = time.perf_counter()
    result = classify_raster(_options(spec["options"]), events)
    summary = {"index": spec["index"], "rows": spec["rows"], "tiles": result["tiles"],
               "tiles_run": result["tiles_run"], "model_seconds": result["model_seconds"],
               "megapixels": result["MEGAPIXELS"], "seconds": round(time.perf_counter() - tick, 3),
               "softmax_applied": result["softmax_applied"]}
    write_json_atomic(os.path.splitext(spec["options"]["output"])[0] + ".json",
                      {"settings": spec["settings"], "rows": spec["rows"], **summary})
    return summary


def _options(values: dict):
    from .options import ClassifyOptions
    return ClassifyOptions(**values)


def _test_failure(spec: dict) -> None:
    hook = os.environ.get(FAIL_HOOK, "")
    index, _, mode = hook.partition(":")
    if not index or index != str(spec["index"]):
        return
    if mode == "every":
        raise RuntimeError(f"{FAIL_HOOK} made shard {spec['index']} fail")
    if spec["attempt"] == 1:
        os._exit(13)  # the worker process dies, as when the OOM killer or a node failure takes it


class _ShardEvents(RecordingEvents):
    """A shard's events: its progress goes to the engine as a worker event on ``topic`` (at most twice a second);
    its logs are kept quietly; cancel is the run's ``distributed.Event``, checked at most once a second."""

    def __init__(self, cancel_name, topic=None, index=None):
        self._cancel_name, self._checked, self._cancelled = cancel_name, 0.0, False
        self._topic, self._index, self._sent = topic, index, 0.0
        super().__init__()

    def progress(self, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if self._topic and now - self._sent > 0.5:
            self._sent = now
            from distributed import get_worker
            try:
                get_worker().log_event(self._topic, {"index": self._index, "fraction": float(fraction)})
            except ValueError:  # not on a worker (a shard run in-process): nobody to tell
                self._topic = None

    @property
    def cancel_requested(self):
        now = time.monotonic()
        if self._cancel_name and not self._cancelled and now - self._checked > 1.0:
            self._checked = now
            from distributed import Event
            try:
                self._cancelled = Event(self._cancel_name).is_set()
            except Exception:  # noqa: BLE001 - the scheduler gone: the task is being torn down anyway
                self._cancelled = True
        return self._cancelled

    @cancel_requested.setter
    def cancel_requested(self, value):
        self._cancelled = bool(value)

    def emit(self, event: dict) -> None:
        if event.get("event") == "log":
            super().emit(event)

