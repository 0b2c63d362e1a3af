"""All user-facing engine errors live here.

Each error carries a ``kind`` from the engine-event contract (DESIGN.md):
``bad_input`` (the user can fix the input), ``out_of_memory`` and ``internal``.
Messages name the problem and the fix, in words an analyst understands.
"""
import os


class LandcoverError(Exception):
    """Base class: an error with a clear, user-facing message."""

    kind = "internal"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadInputError(LandcoverError):
    """The input is wrong (CRS, band count, missing field, ...); the message says how to fix it."""

    kind = "bad_input"


class OutOfMemoryError(LandcoverError):
    """Ran out of RAM or GPU memory; the message suggests a smaller batch or tile."""

    kind = "out_of_memory"


class Cancelled(LandcoverError):
    """The user cancelled (SIGTERM from the QGIS side)."""

    kind = "cancelled"


def write_failure(exc: OSError, folder) -> str:
    """Why writing into ``folder`` failed, in an analyst's words. A file standing where a folder of the path should
    be is named: errno's 'File exists' or 'Not a directory' read as if the output itself already existed."""
    place = os.path.abspath(os.fspath(folder))
    while not os.path.lexists(place) and os.path.dirname(place) != place:
        place = os.path.dirname(place)
    if os.path.lexists(place) and not os.path.isdir(place):
        return f"{place} is a file, not a folder"
    return getattr(exc, "strerror", None) or str(exc)
