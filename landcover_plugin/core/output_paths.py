"""A run's output files: where a GeoTIFF is written before it is renamed into place (:func:`partial_path`), and
the checks made before a run starts (:func:`check_output_path`): a GeoTIFF path, no existing file unless
overwriting is allowed, and no file the run reads, a raster input's own files included (:func:`input_files`,
listed once a run by :class:`RunInputs`).
"""
import os

from osgeo import gdal

from .errors import BadInputError
from .output_folder import partial_path as hidden_partial


def partial_path(path: str) -> str:
    """Where a GeoTIFF is written before it is renamed into place (hidden, this process's own)."""
    return hidden_partial(path, ".tif")


def check_output_path(path: str, *, overwrite: bool, inputs=()) -> str:
    """Refuse inputs as outputs and existing files unless ``overwrite`` (Processing's convention).

    ``inputs``: the run's input paths, or the :class:`RunInputs` shared by all its outputs (listed once)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.splitext(path)[1].lower() not in (".tif", ".tiff"):
        raise BadInputError(f"The output {path} must be a GeoTIFF: give a path ending in .tif.")
    if os.path.exists(path):  # a path that does not exist yet is no input's file: nothing to list
        for other, read_by in (inputs if isinstance(inputs, RunInputs) else RunInputs(inputs)).files():
            if os.path.samefile(path, other):
                how = f" (the raster {read_by} reads it)" if read_by else ""
                raise BadInputError(f"The output {path} is also an input{how}: choose another output path.")
    if os.path.exists(path) and not overwrite:
        raise BadInputError(f"The output {path} already exists: choose another path, or allow overwriting "
                            f"(--overwrite; Processing always overwrites the file you chose).")
    if os.path.isdir(path):
        raise BadInputError(f"The output {path} is a folder: give a file path ending in .tif.")
    return path


def input_files(inputs) -> list:
    """``(file, None)`` for each existing input, and ``(file, input)`` for each other file GDAL reads a raster input
    from: a VRT's sources above all, which an output must not replace either (classifying a mosaic into one of its
    own scenes destroyed that scene)."""
    files = []
    for other in inputs:
        if not other or not os.path.exists(other):
            continue
        files.append((os.fspath(other), None))
        gdal.PushErrorHandler("CPLQuietErrorHandler")  # a model or a vector is no raster: nothing to say
        try:
            dataset = gdal.OpenEx(os.fspath(other), gdal.OF_RASTER)
            listed = (dataset.GetFileList() or []) if dataset is not None else []
            dataset = None
        except RuntimeError:
            listed = []
        finally:
            gdal.PopErrorHandler()
        files += [(f, os.fspath(other)) for f in listed if os.path.exists(f) and not os.path.samefile(f, other)]
    return files


class RunInputs:
    """A run's input paths and the files GDAL reads them from (:func:`input_files`), listed once, when an output
    first needs them: a classify run checks its map, confidence and uncertainty paths against one listing,
    instead of opening every raster input again for each."""

    def __init__(self, inputs):
        self.paths = tuple(inputs)
        self._files = None

    def files(self) -> list:
        if self._files is None:
            self._files = input_files(self.paths)
        return self._files
