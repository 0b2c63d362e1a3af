"""Reaching the Dask cluster a classification runs on, and checking that its workers see the files.

- ``local:N`` starts a ``LocalCluster`` of N worker processes (one thread each) and closes it at the end; an
  address connects to a running scheduler. Nothing else starts one. Connecting takes about 10 s at most and
  stops on a cancel; an address where something else answers is named as not a Dask scheduler
  (:func:`handshake`).
- Shared storage: the raster, the model and the output folder are opened by every worker at the same paths.
  Before any shard runs, each worker is asked (``client.run``) whether it sees them and can write the shards
  folder; a worker that cannot is named, with the fix (:func:`check_shared_storage`).

The shards themselves: :mod:`.on_dask`.
"""
import contextlib
import logging
import os
import time

from ..errors import BadInputError, Cancelled, LandcoverError

CONNECT_SECONDS = 10  # how long to try reaching a scheduler address
POLL_SECONDS = 0.2


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
