"""Where a training run writes (the model, its curves beside it, the checkpoints folder): checked before the
first epoch, so a folder that cannot be written fails at once instead of after the training; and a write that
fails later (a full disk) is a clear error naming the file, not an internal error."""
import os
from contextlib import contextmanager
from pathlib import Path

from landcover_plugin.core.errors import BadInputError, write_failure
from landcover_plugin.core.output_folder import remove_stale

CHOOSE = "Choose an output folder you can write to (with free space) for the model"


def check_writable(config) -> None:
    """Create the model's folder and the checkpoints folder (``<model>_checkpoints`` beside it) and write a
    probe file in each; a BadInputError naming the folder when that fails. Nothing is trained before. Also removes
    the hidden half-files that killed runs left beside the model and its curves (their processes are gone)."""
    places = [(Path(config.output).absolute().parent, "the model's folder"),
              (config.checkpoint_dir.absolute(), "the checkpoints folder")]
    for folder, what in places:
        probe = folder / f".landcover-write-check-{os.getpid()}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            reason = write_failure(exc, folder)
            raise BadInputError(f"Cannot write into {what} {folder} ({reason}). {CHOOSE}: nothing was "
                                f"trained.") from exc
    for target in (config.output, *config.curves_paths()):  # hidden half-files of killed runs into this model
        remove_stale(target)


@contextmanager
def disk_errors(what: str, path, kept=None):
    """Turn a failed write (OSError) of ``what`` at ``path`` into a BadInputError that names the file and the
    fix; ``kept``: a checkpoint that still holds the trained weights, named when it exists."""
    try:
        yield
    except (OSError, RuntimeError) as raised:
        exc = _os_error(raised)
        if exc is None:
            raise
        keep = ""
        if kept is not None and Path(kept).is_file():
            keep = (f" The trained weights are kept in '{kept}': train again with it as the checkpoint to resume "
                    f"from and a model file you can write to, to export them without training again.")
        reason = write_failure(exc, Path(path).absolute().parent)
        raise BadInputError(f"Cannot write {what} '{path}' ({reason}). {CHOOSE}.{keep}") from raised


def _os_error(exc):
    """The OSError behind ``exc``: itself, or the one a RuntimeError was raised over (torch's zip writer, closing
    a file whose write failed half-way, raises 'unexpected pos' over the 'No space left on device')."""
    while exc is not None and not isinstance(exc, OSError):
        exc = exc.__cause__ or exc.__context__
    return exc
