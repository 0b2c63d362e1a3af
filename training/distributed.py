"""Training on several processes, on one machine or several, with torch.distributed.

* ``train --nproc N`` (N > 1): the engine re-runs itself under torch's own launcher,
  ``python -m torch.distributed.run --standalone --nproc-per-node N -m landcover_plugin.core.engine train ...``
  (:func:`launch`), forwards rank 0's events, and turns a cancel (SIGTERM) into a file that every rank checks.
* Under torchrun (the engine started with ``WORLD_SIZE`` > 1 in its environment, by :func:`launch` or by a user's
  own ``torchrun --nnodes ... --rdzv-endpoint ...`` on several machines), :func:`join` makes this process a rank of
  the training: gloo on the CPU, NCCL on CUDA (one GPU a rank); on the CPU each rank takes its share of the cores.
  The trainer (loop.py) then runs the same code on every rank: DistributedDataParallel, a DistributedSampler
  over each epoch's chip draw, the batch size shared out among the ranks, validation sharded with its confusion
  matrix and loss summed over the ranks (the same numbers as one process), decisions taken together (cancel,
  time limit), and rank 0 alone writes checkpoints, curves, events, the ONNX model and its card.

A single-process run gets :data:`SINGLE`, whose methods do nothing, so the trainer has one code path.
"""
import math
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler

from landcover_plugin.core.errors import BadInputError, LandcoverError, OutOfMemoryError
from landcover_plugin.core.events import parse_event

CANCEL_FILE = "LANDCOVER_CANCEL_FILE"  # the environment variable naming the file whose presence means cancel
ENGINE = "landcover_plugin.core.engine"
DONE_FILE = "LANDCOVER_RESULT_FILE"  # ... and the file the launcher writes once rank 0's result has reached it
SHUTDOWN_S = 120  # torchrun forwards a Ctrl+C to the ranks: time for rank 0 to export before it kills them


class Group:
    """This process's place in the training: rank, world size, and the collective operations the trainer uses."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, local_world: int = 1):
        self.rank, self.world, self.local_rank, self.local_world = rank, world, local_rank, local_world
        self.device = torch.device("cpu")
        self.cancel_file = os.environ.get(CANCEL_FILE) if world > 1 else None
        self.done_file = os.environ.get(DONE_FILE) if world > 1 else None

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- what each rank takes ----------------------------------------------------------------------
    def per_rank(self, batch_size: int) -> int:
        """Chips per step on this rank: the batch size is the global one, shared out among the ranks."""
        return max(1, math.ceil(batch_size / self.world))

    def shard(self, indices) -> list:
        """This rank's part of ``indices`` (every world-th, no padding: sums over the ranks count each once)."""
        return list(indices)[self.rank::self.world]

    def sampler(self, inner: Sampler) -> Sampler:
        return _Sharded(inner, self.world, self.rank) if self.enabled else inner

    def wrap(self, model, find_unused: bool = False):
        """The module that trains: DistributedDataParallel over ``model`` (which keeps the weights)."""
        if not self.enabled:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)

    # -- decisions and sums taken together ---------------------------------------------------------
    def sync(self, cancel: bool, elapsed: float) -> tuple:
        """(any rank cancelled, the latest clock of all ranks): once a step, so every rank stops at the same
        batch and sets the same learning rate under a time limit. A cancel is this rank's own (SIGTERM) or the
        launcher's cancel file."""
        if not self.enabled:
            return cancel, elapsed
        cancel = cancel or bool(self.cancel_file and os.path.exists(self.cancel_file))
        flag, clock = self._max(float(cancel), float(elapsed))
        return flag > 0, clock

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on one (a decision taken together)."""
        return bool(flag) if not self.enabled else self._max(float(flag))[0] > 0

    def _max(self, *values) -> list:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor.tolist()

    def mean(self, value: float) -> float:
        if not self.enabled:
            return value
        total = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total[0]) / self.world

    def sum_(self, *tensors) -> None:
        """Sum each tensor over the ranks, in place (validation's confusion matrix and loss sums)."""
        if self.enabled:
            for tensor in tensors:
                dist.all_reduce(tensor)

    def share_buffers(self, model) -> None:
        """Rank 0's batch-norm statistics to every rank (each rank updated its own on its last batch), so every
        rank validates, and rank 0 exports, the same model."""
        if self.enabled:
            for buffer in model.buffers():
                dist.broadcast(buffer.data, src=0)

    def finished(self) -> None:
        """Wait until every rank is done (rank 0 exports the model after the others have nothing left to do):
        a rank that tore its process group down while another still used it aborted ("terminate called
        without an active exception") on an idle CI machine."""
        if self.enabled and dist.is_initialized():
            dist.barrier()

    def close(self, wait_for_result: bool = False) -> None:
        """Tear the process group down. After a run that ended well (``wait_for_result``), a rank other than 0
        then waits (at most :data:`SHUTDOWN_S`) until the launcher has rank 0's result. A rank that ended first
        and aborted on its way out ("terminate called without an active exception", seen once under load after
        the barrier) made torchrun kill rank 0 before it reported, and the finished model was thrown away."""
        global _current
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
        if wait_for_result and self.enabled and not self.is_main and self.done_file:
            deadline = time.monotonic() + SHUTDOWN_S
            while not os.path.exists(self.done_file) and time.monotonic() < deadline:
                time.sleep(0.05)
        _current = SINGLE


SINGLE = Group()
_current = SINGLE


def current() -> Group:
    """The group this process trains in (:data:`SINGLE` outside a distributed run)."""
    return _current


def rank() -> int:
    """This process's rank under torchrun (0 outside it)."""
    return int(os.environ.get("RANK", "0")) if under_torchrun() else 0


def under_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def takes_run_lock() -> bool:
    """Whether this process holds the run's lock (run_lock.py): a single run, the engine that launches ``--nproc``
    ranks, or rank 0 of a user's own torchrun; not the ranks that engine started (it holds the lock for them)."""
    return rank() == 0 and not (under_torchrun() and os.environ.get(CANCEL_FILE))


def join(config, events) -> Group:
    """Under torchrun: join the process group (gloo or NCCL), take this rank's device and share of the CPU cores,
    and keep ranks other than 0 quiet. Otherwise: :data:`SINGLE`."""
    global _current
    if not under_torchrun():
        _current = SINGLE
        return SINGLE
    env = os.environ
    group = Group(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                  int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])))
    if not group.is_main:
        _errors_only(events)
    if config.batch_size < group.world:
        raise BadInputError(f"The batch size ({config.batch_size}) is shared out among the {group.world} training "
                            f"processes: it must be at least their number. Raise the batch size.")
    cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if cuda:
        if group.local_world > torch.cuda.device_count():
            raise BadInputError(f"{group.local_world} training processes on this machine but torch sees "
                                f"{torch.cuda.device_count()} GPU(s): run at most one process a GPU.")
        group.device = torch.device("cuda", group.local_rank)
        torch.cuda.set_device(group.device)
    dist.init_process_group("nccl" if cuda else "gloo")
    _current = group
    events.info(f"Distributed training: {group.world} processes ({'NCCL, one GPU each' if cuda else 'gloo, CPU'}); "
                f"this machine runs {group.local_world}; rank 0 writes the model, checkpoints and curves; batches of "
                f"{config.batch_size} chips are shared out, {group.per_rank(config.batch_size)} a process; "
                f"cross-validation folds and the refit each run on all the processes, one after the other.")
    return group


def threads_for(config, group: Group):
    """Torch threads of this process: as set, else on the CPU each rank takes its share of the cores."""
    if config.threads or not group.enabled or group.device.type == "cuda":
        return config.threads
    return max(1, (os.cpu_count() or 1) // group.local_world)


def place(device: torch.device, group: Group) -> torch.device:
    """The device :func:`select_device` chose, as this rank's (``cuda:<local rank>``)."""
    return group.device if group.enabled and device.type == "cuda" else device


def follower_outputs(run: dict, network: dict) -> dict:
    """What a rank other than 0 returns from a run (rank 0 exports): the best epoch and its scores, the same on
    every rank (summed validation), from which a refit after the held-out run is planned."""
    best = run["best"] or {}
    return {"OUTPUT": None, "CURVES_CSV": None, "CURVES_PNG": None, "HELDOUT": None, "cancelled": run["cancelled"],
            "BEST_EPOCH": best.get("epoch"), "BEST_VAL_MIOU": best.get("val_miou"),
            "BEST_VAL_ACCURACY": best.get("val_accuracy"), "epochs_run": run["epoch"],
            "architecture": network["architecture"]}


def _errors_only(events) -> None:
    """Ranks other than 0 emit error events only (rank 0 reports the run)."""
    emit = events.emit

    def quiet(event):
        if event.get("event") == "error":
            emit(dict(event, rank=current().rank))

    events.emit = quiet


class _Sharded(Sampler):
    """Each rank's part of an epoch's draw (an :class:`EpochSampler`), cut by torch's DistributedSampler: padded
    so that every rank takes the same number of steps, which DistributedDataParallel needs."""

    def __init__(self, inner: Sampler, world: int, rank: int):
        self.inner = inner
        self.positions = DistributedSampler(range(len(inner)), num_replicas=world, rank=rank, shuffle=False)

    def __iter__(self):
        drawn = list(self.inner)
        return iter([drawn[i] for i in self.positions])

    def __len__(self):
        return len(self.positions)


# -- the launcher: train --nproc N -----------------------------------------------------------------
def wants_launch(config) -> bool:
    return config.nproc > 1 and not under_torchrun()


def launch(config, events) -> dict:
    """Run ``config`` on ``config.nproc`` processes of this machine under torchrun; rank 0's outputs."""
    from landcover_plugin.core.options import to_argv

    n = config.nproc
    cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    most, what = (torch.cuda.device_count(), "GPU(s)") if cuda else (os.cpu_count() or 1, "CPU cores")
    if n > most:
        raise BadInputError(f"Training processes (--nproc {n}): this machine has {most} {what}, so at most {most} "
                            f"processes (one a {'GPU' if cuda else 'core'}). Choose --nproc {most} or fewer; for "
                            f"more, run on several machines with torchrun (see the user guide).")
    folder = Path(tempfile.mkdtemp(prefix="landcover_ddp_"))
    cancel_file, done_file = folder / "cancel", folder / "result"
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
            f"--shutdown-timeout={SHUTDOWN_S}",
            "-m", ENGINE, "train", *to_argv(replace(config, nproc=None))]  # (torchrun takes --nproc for its own)
    events.info(f"Starting {n} training processes with torch.distributed ({'NCCL' if cuda else 'gloo'}).")
    print("Distributed training: " + " ".join(argv), file=sys.stderr, flush=True)
    env = dict(os.environ, **{CANCEL_FILE: str(cancel_file), DONE_FILE: str(done_file), "PYTHONUNBUFFERED": "1"})
    # The same process group as the engine: a kill of the engine's group (the QGIS side's last resort) ends them.
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env, text=True,
                            encoding="utf-8", errors="replace", bufsize=1)
    lines = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    outputs, error, cancelling = None, None, False
    try:
        while True:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                line = ""
            if events.cancel_requested and not cancelling:
                cancelling = True
                cancel_file.touch()
                events.info(f"Cancelling: the {n} training processes stop at their next batch; rank 0 exports the "
                            f"best weights so far.")
            if line is None:
                break
            event = parse_event(line) if line.strip() else None
            if event is None:
                if line.strip():
                    print(line.rstrip(), file=sys.stderr, flush=True)
            elif event["event"] == "result":
                outputs = event["outputs"]
                done_file.touch()  # the other ranks may now end
            elif event["event"] == "error":
                error = error or event  # the first failure; the others follow from it
            else:
                events.emit(event)
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        shutil.rmtree(folder, ignore_errors=True)
    if error is not None:
        raise _error_of(error)
    if outputs is None:
        raise LandcoverError(f"The distributed training (torchrun, {n} processes) ended with exit code {code} "
                             f"and no result. The engine's log (stderr) has each process's traceback.")
    if code != 0:  # after rank 0 reported: its model and outputs are whole
        events.warning(f"A training process ended with exit code {code} after rank 0 had written the model and "
                       f"reported; the model is complete. The engine's log (stderr) has the process's message.")
    return dict(outputs, nproc=n)


def _pump(stream, lines) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


def _error_of(event) -> LandcoverError:
    kind = event.get("kind", "internal")
    error = {"bad_input": BadInputError, "out_of_memory": OutOfMemoryError}.get(kind, LandcoverError)(
        event["message"])
    error.kind = kind
    return error
