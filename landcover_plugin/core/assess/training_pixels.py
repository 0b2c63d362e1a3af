"""Which reference pixels the model that made the map was trained on (QGIS-free).

Assessing a map against the polygons it was trained on is the classic way to a 99 % that means little: there the
map is scored on what it was taught. A map made by 'Classify raster with model' records its model's chip dataset and
which of its chips the exported model trained on (:mod:`..model.map_record`); while that folder is there, the
label chips say which pixels the model was taught. :class:`TrainingPixels` gives them as a mask on any window of
the classified raster's grid (the chips are warped onto it by nearest neighbour, so the two need not share a grid
or a CRS); :mod:`.counting` counts the reference pixels that fall on them and the report warns above
:data:`WARN_SHARE`. Sample points are not checked: a probability sample of the map may fall anywhere in it.
"""
import math
from collections import OrderedDict

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform_bounds

from ..chips.dataset import load_dataset
from ..errors import LandcoverError
from ..rasters import open_raster, read

WARN_SHARE = 0.01  # of the assessed reference pixels: above it the report and the log warn
KEPT = 512  # label chips kept read (512 chips of 256 px: 32 MB)


class TrainingPixels:
    """The labelled pixels of the chips a model trained on, as masks on windows of another grid."""

    def __init__(self, chips: list, dst_crs, folder):
        self.chips = chips  # [(label path, transform, CRS, bounds in dst_crs)]
        self.boxes = np.array([bounds for *_, bounds in chips], dtype=np.float64).reshape(-1, 4)
        self.dst_crs, self.folder = dst_crs, folder
        self._masks = OrderedDict()

    @classmethod
    def from_record(cls, entry, dst_crs):
        """The training pixels of the model a map's record names, or None (no record, the chip dataset is gone or
        unreadable, or a map of a model trained before records named its chips). The chips of every raster of the
        dataset count: a place taught from another raster (another date of it) is taught all the same."""
        source = (entry or {}).get("chips")
        if not source or entry.get("chips_trained") not in ("all", "train"):
            return None
        try:
            data = load_dataset(source)
            chosen = [c for c in data["chips"] if entry["chips_trained"] == "all" or c["split"] == "train"]
            rasters = data.get("sources") or [data]
            chips = []
            for index, raster in enumerate(rasters):
                own = [chip for chip in chosen if int(chip.get("source") or 0) == index]
                crs = CRS.from_wkt(raster["crs"]) if raster.get("crs") else None
                if own and (crs is None) == (dst_crs is None):
                    chips += _placed(own, crs, dst_crs)
        except (LandcoverError, OSError, ValueError, KeyError, IndexError):
            return None
        return cls(chips, dst_crs, str(data["folder"])) if chips else None

    def mask(self, window_transform, box, shape) -> np.ndarray:
        """Where on the window (``window_transform``, ``box`` its bounds, ``shape``) the model was taught a class."""
        taught = np.zeros(shape, dtype=np.uint8)
        b = self.boxes
        near = np.flatnonzero((b[:, 0] < box[2]) & (box[0] < b[:, 2]) & (b[:, 1] < box[3]) & (box[1] < b[:, 3]))
        for index in near:
            path, transform, crs, _bounds = self.chips[index]
            labelled = self._labelled(index, path)
            if labelled is None:
                continue
            offset = _offset(transform, window_transform) if crs == self.dst_crs else None
            if offset is not None:  # the map's own grid (the usual case): placed, not warped
                _paste(taught, labelled, *offset)
                continue
            here = np.zeros(shape, dtype=np.uint8)
            reproject(labelled, here, src_transform=transform, src_crs=crs or _LOCAL,
                      dst_transform=window_transform, dst_crs=self.dst_crs or _LOCAL, resampling=Resampling.nearest,
                      src_nodata=None, dst_nodata=None)
            taught |= here
        return taught.astype(bool)

    def _labelled(self, index, path):
        """The chip's labelled pixels (uint8 0/1), or None where the chip is gone; the last :data:`KEPT` are kept
        (the windows go row by row, so a chip's few windows come close together)."""
        if index in self._masks:
            self._masks.move_to_end(index)
            return self._masks[index]
        try:
            with open_raster(path, "label chip") as src:
                labelled = (read(src, 1) > 0).astype(np.uint8)
        except LandcoverError:  # a chip deleted since: its pixels cannot be told
            labelled = None
        self._masks[index] = labelled
        if len(self._masks) > KEPT:
            self._masks.popitem(last=False)
        return labelled


def _placed(chips, crs, dst_crs) -> list:
    """``(label path, transform, crs, bounds in dst_crs)`` of chips cut from one raster (in ``crs``): the raster's
    grid is found from its first label chip and each chip's window in it."""
    with open_raster(chips[0]["label_path"], "label chip") as first:
        window = chips[0]["window"]
        origin = first.transform * Affine.translation(-window["col_off"], -window["row_off"])
    placed = []
    for chip in chips:
        w = chip["window"]
        transform = origin * Affine.translation(w["col_off"], w["row_off"])
        left, top = transform * (0, 0)
        right, bottom = transform * (w["width"], w["height"])
        bounds = (min(left, right), min(top, bottom), max(left, right), max(top, bottom))
        if crs is not None and crs != dst_crs:
            bounds = transform_bounds(crs, dst_crs, *bounds, densify_pts=21)
        placed.append((chip["label_path"], transform, crs, bounds))
    return placed


def _offset(chip, window):
    """(row, col) of the chip's first pixel on the window's grid where both grids are the same (same pixel size and
    whole-pixel offsets, north up); None otherwise."""
    if chip.b or chip.d or window.b or window.d or not (math.isclose(chip.a, window.a, rel_tol=1e-9)
                                                      and math.isclose(chip.e, window.e, rel_tol=1e-9)):
        return None
    col, row = (chip.c - window.c) / window.a, (chip.f - window.f) / window.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return int(round(row)), int(round(col))


def _paste(target, chip, row, col) -> None:
    """``target |= chip`` with the chip's first pixel at (row, col) of ``target``, clipped to it."""
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + chip.shape[0], target.shape[0]), min(col + chip.shape[1], target.shape[1])
    if r0 < r1 and c0 < c1:
        target[r0:r1, c0:c1] |= chip[r0 - row:r1 - row, c0 - col:c1 - col]


_LOCAL = CRS.from_epsg(3857)  # stands in for "no CRS" on both sides (then the grids are compared as they are)


def summary(trained: int, trained_right: int, assessed: int, assessed_right: int, folder: str) -> dict:
    """The report's ``reference_on_training_pixels`` entry: how many of the ``assessed`` reference pixels (of which
    ``assessed_right`` mapped right) are training pixels (``trained``, ``trained_right``), the overall accuracy on
    them and elsewhere, and the warning (``warning``) above :data:`WARN_SHARE`."""
    share = trained / assessed if assessed else 0.0
    elsewhere = assessed - trained
    entry = {"pixels": int(trained), "share": round(share, 4), "chip_dataset": folder,
             "overall_accuracy_on_them": round(trained_right / trained, 4) if trained else None,
             "pixels_elsewhere": int(elsewhere),
             "overall_accuracy_elsewhere": round((assessed_right - trained_right) / elsewhere, 4) if elsewhere
             else None, "warning": None}
    if share > WARN_SHARE:
        where = (f"the map scores {entry['overall_accuracy_on_them']:.1%} on them and "
                 f"{entry['overall_accuracy_elsewhere']:.1%} on the other {elsewhere:,}" if elsewhere else
                 f"the map scores {entry['overall_accuracy_on_them']:.1%} on them, and no other reference pixel is "
                 f"left to check it")
        entry["warning"] = (
            f"{trained:,} of the {assessed:,} reference pixels ({share:.0%}) are pixels the model that made this "
            f"map was trained on (its chip dataset {folder}): there the map is scored on what it was taught, which "
            f"usually flatters it; {where}. Assess against reference data the model did not learn from: polygons "
            f"held out of the chip export, or a reference sample ('Create reference sample').")
    return entry
