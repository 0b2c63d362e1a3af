"""Polygon-grouped cross-validation folds over a chip store (the held-out estimate, issue 11).

With a few dozen polygons, one held-out split scores a model on a handful of polygons (on the Zion sparse case,
10 polygons, one per class): its estimate of the map's accuracy swings by +-0.2 with the draw. Cross-validation
holds out every polygon once, each by a model that never saw it, and pools the confusion matrices.

The chips do not name their polygons, but their labels lie on one source grid (each chip's window offsets):
labelled pixels are put back on that grid, and pixels of a class within a few pixels of each other (the same
polygon, or neighbouring ones of that class) form a group. Groups of each class are dealt to the folds in
turn, so each fold holds out some of every class that has two or more groups and keeps at least one for
training; a class with a single group is never held out (it cannot be validated) and is named. Each source
pixel is scored once, in the first chip that holds it.
"""
from dataclasses import dataclass

import numpy as np

from .dataset import IGNORE

CELL = 2  # pixels in cells that touch (8-neighbours) belong to one group: gaps of up to 2-3 px are bridged


@dataclass
class FoldPlan:
    """Where each labelled pixel occurrence is, and which fold holds its group out (-1: never)."""
    folds: int
    chip: np.ndarray        # per occurrence: chip index, row, col in the chip
    row: np.ndarray
    col: np.ndarray
    fold: np.ndarray        # per occurrence: the fold that holds it out, or -1
    scored: np.ndarray      # per occurrence: True for the one occurrence of each source pixel that is scored
    groups: int             # groups held out over all folds
    unsplit_classes: list   # class channels with a single group: never held out

    def training_chip_count(self, fold: int) -> int:
        """How many chips keep a labelled pixel without ``fold``'s groups (those that fold trains on), as
        :meth:`labels` would leave them, without building the arrays."""
        return int(np.unique(self.chip[self.fold != fold]).size)

    def labels(self, store_labels: np.ndarray, fold: int):
        """``(train, val)`` label arrays for one fold: ``train`` without the fold's groups, ``val`` only their
        pixels, each source pixel once."""
        out = self.fold == fold
        train = store_labels.copy()
        train[self.chip[out], self.row[out], self.col[out]] = IGNORE
        val = np.full_like(store_labels, IGNORE)
        take = out & self.scored
        val[self.chip[take], self.row[take], self.col[take]] = store_labels[self.chip[take], self.row[take],
                                                                            self.col[take]]
        return train, val


def plan_folds(labels: np.ndarray, windows, folds: int, seed: int = 0):
    """Plan ``folds``-fold cross-validation over chip labels ``(N, H, W)`` (class channels, IGNORE unlabelled)
    with window offsets ``[(row_off, col_off), ...]``. Returns None when fewer than two folds are possible
    (no class has two groups)."""
    chip, row, col = np.nonzero(labels != IGNORE)
    if chip.size == 0:
        return None
    offsets = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    grid_r = offsets[chip, 0] + row
    grid_c = offsets[chip, 1] + col
    width = int(grid_c.max()) + 1
    keys = grid_r * width + grid_c
    pixels, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    classes = labels[chip[first], row[first], col[first]]
    group = _groups(pixels // width, pixels % width, classes)
    group_class = _majority(group, classes)
    fold_of_group, unsplit = _deal(group_class, folds, seed)
    if fold_of_group is None:
        return None
    k = int(fold_of_group.max()) + 1
    scored = np.zeros(chip.size, dtype=bool)
    scored[first] = True
    return FoldPlan(folds=k, chip=chip, row=row, col=col, fold=fold_of_group[group][inverse], scored=scored,
                    groups=int((fold_of_group >= 0).sum()), unsplit_classes=unsplit)


def _groups(rows: np.ndarray, cols: np.ndarray, classes: np.ndarray = None) -> np.ndarray:
    """Group id per pixel: connected cells of CELL x CELL px (8-neighbours) of one class (``classes``: per
    pixel; pixels of other classes between them do not join them, so wall-to-wall labels are not one group), by
    label propagation with pointer jumping over the cell graph (no scipy in the engine's environment)."""
    cell_r, cell_c = rows // CELL, cols // CELL
    width = int(cell_c.max()) + 3
    if classes is not None:  # each class on a plane of its own, a padding row apart: no neighbour across planes
        cell_r = cell_r + np.asarray(classes, dtype=np.int64) * (int(cell_r.max()) + 3)
    cell_keys = (cell_r + 1) * width + (cell_c + 1)
    cells, pixel_cell = np.unique(cell_keys, return_inverse=True)
    src, dst = [], []
    for dr, dc in ((0, 1), (1, -1), (1, 0), (1, 1)):
        neighbour = cells + dr * width + dc
        at = np.searchsorted(cells, neighbour)
        found = (at < cells.size) & (cells[np.minimum(at, cells.size - 1)] == neighbour)
        src.append(np.flatnonzero(found))
        dst.append(at[found])
    src, dst = np.concatenate(src), np.concatenate(dst)
    label = np.arange(cells.size)
    while True:
        low = np.minimum(label[src], label[dst])
        new = label.copy()
        np.minimum.at(new, src, low)
        np.minimum.at(new, dst, low)
        new = new[new]
        if np.array_equal(new, label):
            break
        label = new
    _, compact = np.unique(label, return_inverse=True)
    return compact[pixel_cell]


def _majority(group: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The class most of each group's pixels have."""
    count = np.zeros((int(group.max()) + 1, 256), dtype=np.int64)
    np.add.at(count, (group, classes.astype(np.int64)), 1)
    return count.argmax(axis=1)


def _deal(group_class: np.ndarray, folds: int, seed: int):
    """Fold per group (-1: kept for training in every fold) and the classes that cannot be split. Each class's
    groups, shuffled, go to the folds in turn, starting where the previous class stopped (balanced folds)."""
    rng = np.random.default_rng(seed)
    fold = np.full(group_class.size, -1, dtype=np.int64)
    members = {int(c): np.flatnonzero(group_class == c) for c in np.unique(group_class)}
    splittable = [len(m) for m in members.values() if len(m) >= 2]
    if folds < 2 or not splittable:
        return None, []
    k = min(folds, max(splittable))
    unsplit, start = [], 0
    for class_channel, groups in sorted(members.items()):
        if len(groups) < 2:
            unsplit.append(class_channel)
            continue
        order = rng.permutation(groups)
        fold[order] = (start + np.arange(len(order))) % k
        start = (start + len(order)) % k
    return fold, unsplit
