"""One training run at a time into a model and its checkpoints folder.

Two runs into one model at once shared its checkpoints folder (``<model>_checkpoints``): each wrote its
``last.pt`` and ``best.pt`` over the other's, and one could resume from or export the other's weights. A run now
holds an exclusive lock on a file in its checkpoints folder and on one beside its model for as long as it runs, and
a second run into either fails at once, before anything is trained, naming the first. The checkpoints folder stays
shared by design: resume reads ``last.pt`` and ``best.pt`` from it, one run after the other.

The lock is the operating system's (``flock`` on POSIX, ``msvcrt.locking`` on Windows), held by an open file, so it
ends with the process however that ends (a crash, SIGTERM, SIGKILL): a lock file left by a killed run never blocks
the next one. The file says which process holds it, for the message.
"""
import datetime as _dt
import json
import os
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path

from landcover_plugin.core.errors import BadInputError

FOLDER_LOCK = ".landcover-training.lock"  # in the checkpoints folder


def model_lock(output) -> Path:
    """The lock file beside the model (hidden: no file picker lists it)."""
    output = Path(output)
    return output.with_name(f".{output.name}.lock")


@contextmanager
def exclusive_run(config):
    """Hold the locks of ``config``'s model and checkpoints folder (both exist: see writing.check_writable) while the
    block runs; a BadInputError naming the run that holds one."""
    with ExitStack() as stack:
        for path, what in ((model_lock(config.output), f"the model '{config.output}'"),
                           (config.checkpoint_dir / FOLDER_LOCK, f"the checkpoints folder '{config.checkpoint_dir}'")):
            stack.enter_context(_locked(path, what, config))
        yield


@contextmanager
def _locked(path: Path, what: str, config):
    handle = _acquire(path, what, config)
    try:
        yield
    finally:
        _release(handle, path)


def _acquire(path: Path, what: str, config) -> int:
    while True:
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise BadInputError(f"Cannot create the lock file '{path}' of this training run ({exc.strerror or exc}). "
                                f"Choose an output folder you can write to: nothing was trained.") from exc
        if not _try_lock(handle):
            holder = _holder(handle)
            os.close(handle)
            raise BadInputError(
                f"Another training run{holder} is writing into {what}: two runs at once would overwrite each "
                f"other's checkpoints, and one could resume from or export the other's weights. Wait for that run to "
                f"end (or cancel it), or choose another model file or checkpoint folder: nothing was trained.")
        try:  # the run that held it may have removed the file just before: then lock the file now there
            if os.path.samestat(os.fstat(handle), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        os.close(handle)
    record = {"pid": os.getpid(), "started": _dt.datetime.now().isoformat(timespec="seconds"),
              "output": str(config.output)}
    try:
        os.ftruncate(handle, 0)
        os.write(handle, json.dumps(record).encode())
    except OSError:
        pass  # the lock holds without the note (Windows: the locked byte cannot be written)
    return handle


def _release(handle: int, path: Path) -> None:
    try:
        if os.path.samestat(os.fstat(handle), os.stat(path)):
            os.unlink(path)  # before the unlock: a run waiting on this file then takes a new one
    except OSError:
        pass  # gone already, or Windows (an open file cannot be removed): an unlocked file blocks nothing
    finally:
        os.close(handle)


def _try_lock(handle: int) -> bool:
    if sys.platform == "win32":
        import msvcrt
        try:
            msvcrt.locking(handle, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # EWOULDBLOCK: held by another open file
        return False
    return True


def _holder(handle: int) -> str:
    """' (process 1234, started 2024-05-01T10:00:00)', or '' when the lock file does not say."""
    try:
        record = json.loads(os.pread(handle, 4096, 0) or b"{}")
        return f" (process {int(record['pid'])}, started {record['started']})"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # AttributeError: no os.pread (Windows)
        return ""
