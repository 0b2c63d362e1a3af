"""Writing a result folder so that a failure or cancel never leaves something that looks valid.

Work happens in a hidden sibling ``.<name>.partial-<pid>``; :func:`commit` moves it into place
(replacing a previous result of the same kind) and :func:`discard` removes it. An existing folder
that holds anything but a previous result is refused, never emptied.
"""
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from .errors import BadInputError, write_failure


def check_output_folder(folder, is_previous_result, what: str = "chip dataset") -> Path:
    """Refuse an output path that is a file, or a non-empty folder that is not a previous result."""
    folder = Path(folder).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise BadInputError(f"The output {folder} is a file, not a folder. Choose a new or empty folder.")
    if folder.is_dir():
        entries = sorted(p.name for p in folder.iterdir())
        if entries and not is_previous_result(folder):
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            raise BadInputError(f"The output folder {folder} already holds other files ({shown}). Choose a new or "
                                f"empty folder: nothing in it was changed or deleted.")
    return folder


def remove_stale(target) -> list:
    """Remove what killed runs left beside ``target``: hidden ``.<name>.partial-<pid>...`` and
    ``.<name>.old-<pid>`` files or folders whose process is gone (a SIGKILL leaves them forever otherwise).
    Those of live processes (a run in progress) are kept. Returns the paths removed."""
    target = Path(target)
    pattern = re.compile(r"^\." + re.escape(target.name) + r"\.(?:partial|old)-(\d+)(?:\..*)?$")
    removed = []
    try:
        entries = list(target.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if not match or process_alive(int(match.group(1))):
            continue
        try:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            removed.append(entry)
        except OSError:
            pass  # someone else's file we cannot remove: harmless, it stays hidden
    return removed


def process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftover from an earlier run that reused this PID
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or cannot tell: keep its files
    return True


def start_staging(folder: Path) -> Path:
    """Create and return the hidden staging folder beside ``folder`` (after removing stale ones)."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        remove_stale(folder)
        staging = folder.parent / f".{folder.name}.partial-{os.getpid()}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
    except OSError as exc:
        raise BadInputError(f"Cannot write into {folder.parent} ({write_failure(exc, folder.parent)}). Choose a "
                            f"folder you can write to.") from exc
    return staging


def commit(staging: Path, folder: Path) -> None:
    """Move the finished staging folder to ``folder``, replacing an empty folder or a previous result."""
    if folder.exists():
        old = folder.parent / f".{folder.name}.old-{os.getpid()}"
        os.rename(folder, old)
        try:
            os.rename(staging, folder)
        except OSError:
            os.rename(old, folder)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, folder)


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def partial_path(path, suffix: str = "") -> str:
    """Where ``path`` is written before it is renamed into place: ``.<name>.partial-<pid><suffix>`` beside it,
    hidden (a run killed in between leaves nothing that file pickers or layer lists show, and
    :func:`remove_stale` clears it later) and this process's own (two runs writing one file never share it).
    ``suffix``: an extension for writers that choose the format by it (GDAL, matplotlib)."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".{name}.partial-{os.getpid()}{suffix}")


@contextmanager
def replaced_in_place(path, suffix: str = ""):
    """Yield :func:`partial_path` of ``path`` to write; renamed onto ``path`` when the block ends normally and
    removed otherwise (a failed write leaves neither a half-written file nor a temporary one). Errors pass
    through as they are: the caller says what failed."""
    temporary = partial_path(path, suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            try:
                os.remove(temporary)
            except OSError:
                pass  # hidden and ours: remove_stale clears it once this process is gone


@contextmanager
def file_in_place(path, what: str, suffix: str = ""):
    """Write one file so that a failure never leaves it half-written: yields a hidden temporary path beside
    ``path`` (:func:`partial_path`), renamed onto ``path`` when the block ends normally and removed otherwise.
    OSError and GDAL's RuntimeError become a BadInputError naming ``what`` and the path."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        with replaced_in_place(path, suffix) as temporary:
            yield temporary
    except (OSError, RuntimeError) as exc:
        raise BadInputError(f"Cannot write {what}{path}: {write_failure(exc, folder)}. Choose a folder "
                            "you can write to.") from exc
