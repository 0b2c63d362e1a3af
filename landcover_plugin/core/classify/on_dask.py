"""``classify --dask local:N | tcp://host:8786``: classify a raster in shards on a Dask cluster.

The area is cut into shards of whole tile rows (:func:`.shards.plan_shards`). Each shard is one task: a worker
runs the single-process classifier on it (:func:`.run.classify_raster` with ``rows``), which runs the tile
rows that touch the shard's rows (the one above it too, for the overlap) with the same tiling, blending and
nodata handling, so every pixel equals a single-process run's. The shard writes its own GeoTIFF into the
shards folder; the engine then writes a VRT over them and, when asked, one Cloud-Optimised GeoTIFF
(:mod:`.shards`).

- ``local:N`` starts a ``LocalCluster`` of N worker processes (one thread each, onnxruntime threads = usable
  CPUs / N) and closes it at the end; an address connects to a running scheduler. Nothing else starts one.
  Connecting takes about 10 s at most and stops on a cancel; an address where something else answers is
  named as not a Dask scheduler (:func:`handshake`).
- Shared storage: the raster, the model and the output folder are opened by every worker at the same paths.
  Before any shard runs, each worker is asked (``client.run``) whether it sees them and can write the shards
  folder; a worker that cannot is named, with the fix.
- Progress: the shards done, plus the running shards' own progress (worker events, twice a second). Cancel
  stops queued shards and tells running ones (a ``distributed.Event`` they check between batches); finished
  shards are kept for a rerun.
- A shard that fails (an error, or its worker killed) is retried once, then reported by name. Errors of the
  input (a :class:`BadInputError` in a shard) are reported at once: a retry cannot fix them. A local cluster
  fails a killed worker's task at once (``allowed-failures`` 0); a scheduler of your own may first rerun it
  itself, as its ``distributed.scheduler.allowed-failures`` says.
- Resume: a rerun with the same settings skips the shards already complete (see :mod:`.shards`).

Test hook (real behaviour, used by tests/engine/test_classify_dask.py): ``LANDCOVER_TEST_FAIL_SHARD=I`` kills
the worker process running shard I on its first attempt; ``I:every`` makes shard I raise on every attempt.
"""
import contextlib
import dataclasses
import logging
import os
import time
import uuid

from ..errors import BadInputError, Cancelled, LandcoverError
from ..events import RecordingEvents
from ..model.class_shares import card_weights
from ..model.session import usable_cpus
from ..options import parse_floats
from .run import SOFTMAX_APPLIED, blank_reason, classify_raster, prepared_run
from .shards import assemble, fingerprint, output_paths, plan_shards, prepare_folder, shard_name, write_json_atomic
from .source import open_source
from .tile_size import model_grid

FAIL_HOOK = "LANDCOVER_TEST_FAIL_SHARD"
CONNECT_SECONDS = 10  # how long to try reaching a scheduler address
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
        if o.class_shares != "off":  # the shards weigh alike, but their logs stay on the workers: say it here
            card_weights(model, events, o.raster)
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
    outputs = assemble(paths, shard_files, classes, events)
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


# -- the cluster ------------------------------------------------------------------------------------
@contextlib.contextmanager
def connect(address: str, events):
    """Yields ``(client, workers, local)``: a LocalCluster for ``local:N`` (closed at the end) or a client
    of the scheduler at ``address``."""
    address = str(address).strip()
    local = address.lower().startswith("local:")
    if local:
        count = address.split(":", 1)[1].strip()
        if not count.isdigit() or int(count) < 1:
            raise BadInputError(f"The Dask address '{address}' asks for no workers: give local:N with N >= 1 "
                                f"(worker processes on this machine), or a scheduler address (tcp://host:8786).")
    elif "://" not in address and ":" not in address:
        raise BadInputError(f"'{address}' is not a Dask address: give local:N (N worker processes on this "
                            f"machine) or a scheduler address such as tcp://host:8786.")
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise BadInputError(f"Classifying on Dask needs the 'dask' and 'distributed' packages in the engine's "
                            f"environment ({exc}). Run 'Set up engine environment' (Install or update), or "
                            f"install the project's requirements.") from exc
    if local:
        # allowed-failures 0: a killed worker fails its task at once, and this module retries it once
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = LocalCluster(n_workers=int(count), threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
        events.info(f"Started a local Dask cluster of {count} worker process(es).")
        try:
            yield client, int(count), True
        finally:
            client.close()
            cluster.close()
        return
    handshake(address, events)
    try:
        client = Client(address, timeout=f"{CONNECT_SECONDS}s")
    except Exception as exc:  # noqa: BLE001 - any failure to connect is the address's: say so, with the fix
        raise connect_error(address, exc) from exc
    try:
        wait_for_workers(client, address, events)
        workers = len(client.scheduler_info()["workers"])
        events.info(f"Connected to the Dask scheduler at {address}: {workers} worker(s).")
        yield client, workers, False
    finally:
        client.close()


def handshake(address: str, events, seconds: float = CONNECT_SECONDS) -> None:
    """Reach ``address`` and exchange Dask's handshake, within about ``seconds`` and stopping on a cancel.

    ``Client(address, timeout=...)`` bounds only the TCP connection: a peer that accepts it and then never
    answers (another service on that port) held the engine for ever, deaf to a cancel, and one that answers
    other bytes made Dask read them as a frame length (an allocation of exabytes: a MemoryError). This runs
    Dask's own ``connect`` (the same handshake) in an event loop of ours that checks the cancel and a deadline
    every ``POLL_SECONDS``, and turns any failure into a message naming the address."""
    import asyncio

    from distributed.comm import connect as dask_connect

    async def attempt():
        # connect() gives up reaching the address after `seconds`; the handshake after it has no limit of its own
        task = asyncio.ensure_future(dask_connect(address, timeout=seconds))
        deadline = time.monotonic() + seconds + 2
        try:
            while not task.done():
                if events.cancel_requested:
                    raise Cancelled(f"Classification cancelled while connecting to the Dask scheduler at {address}.")
                if time.monotonic() > deadline:
                    raise BadInputError(f"{address} is not a Dask scheduler (it accepted the connection but did "
                                        f"not answer in Dask's protocol within {seconds:g} s): give the "
                                        f"scheduler's address (tcp://host:8786; 8787 is its dashboard), or "
                                        f"use local:N to start N workers here.")
                await asyncio.wait({task}, timeout=POLL_SECONDS)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        comm = task.result()
        await comm.close()

    try:
        asyncio.run(attempt())
    except LandcoverError:
        raise
    except Exception as exc:  # noqa: BLE001 - MemoryError included: it is the peer's bytes, not this machine
        raise connect_error(address, exc) from exc


def connect_error(address: str, exc: BaseException) -> BadInputError:
    """The message for a failure to connect to ``address``: unreachable (Dask's connect gives up with a plain
    OSError, or the address is malformed), or something that answered but not as a Dask scheduler."""
    from distributed.comm import CommClosedError

    if isinstance(exc, (OSError, TimeoutError, ValueError)) and not isinstance(exc, CommClosedError):
        return BadInputError(f"Cannot reach the Dask scheduler at {address} ({type(exc).__name__}: "
                             f"{str(exc)[:200]}). Check the address (tcp://host:8786), that the scheduler runs and "
                             f"that this machine can reach it; or use local:N to start N workers here.")
    # the exception's name is left out: a MemoryError here is the peer's bytes read as a length, not this machine
    return BadInputError(f"{address} is not a Dask scheduler (it answered, but not in Dask's protocol): give the "
                         f"scheduler's address (tcp://host:8786; 8787 is its dashboard), or use local:N to start N "
                         f"workers here.")


def wait_for_workers(client, address: str, events, seconds: float = CONNECT_SECONDS) -> None:
    """Wait up to ``seconds`` for the scheduler to have a worker, stopping on a cancel."""
    deadline = time.monotonic() + seconds
    while True:
        if events.cancel_requested:
            raise Cancelled(f"Classification cancelled while waiting for the Dask scheduler at {address} to have "
                            f"workers.")
        try:
            client.wait_for_workers(1, timeout=POLL_SECONDS * 5)
            return
        except (TimeoutError, OSError) as exc:
            if time.monotonic() > deadline:
                raise BadInputError(f"The Dask scheduler at {address} has no workers: start some (dask worker "
                                    f"{address}) and run again.") from exc


def paths_seen(paths: dict) -> dict:
    """On a worker: for each named path, whether it exists and (for folders) is writable."""
    return {name: {"exists": os.path.exists(path),
                   "writable": os.path.isdir(path) and os.access(path, os.W_OK)} for name, path in paths.items()}


def check_shared_storage(client, o, shards_folder: str, events) -> None:
    """Ask every worker whether it sees the raster, the model and the shards folder (and can write there)."""
    os.makedirs(shards_folder, exist_ok=True)
    paths = {"raster": os.path.abspath(os.fspath(o.raster)), "model": os.path.abspath(os.fspath(o.model)),
             "shards folder": os.path.abspath(shards_folder)}
    if o.mask:
        paths["mask"] = os.path.abspath(os.fspath(o.mask))
    try:
        seen = client.run(paths_seen, paths)
    except Exception as exc:  # noqa: BLE001 - a worker without our package, or gone: say which, with the fix
        raise BadInputError(f"The Dask workers could not run the land-cover engine's code ({type(exc).__name__}: "
                            f"{str(exc)[:200]}). Start the workers with the engine's Python environment and this "
                            f"plugin's folder on PYTHONPATH.") from exc
    problems = []
    for worker, found in sorted(seen.items()):
        missing = [f"{name} {paths[name]}" for name, state in found.items() if not state["exists"]]
        if not found["shards folder"]["writable"] and found["shards folder"]["exists"]:
            missing.append(f"write access to {paths['shards folder']}")
        if missing:
            problems.append(f"worker {worker} cannot see " + ", ".join(missing))
    if problems:
        raise BadInputError("Every Dask worker must reach the raster, the model and the output folder at the same "
                            "paths (shared storage: NFS, a cluster file system, or a mount at the same path): "
                            + "; ".join(problems) + ". Put them on storage every worker mounts, or run with "
                            "local:N.")


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

