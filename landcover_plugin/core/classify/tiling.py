"""Tile grids with overlap, and the blending window that hides tile seams.

A grid covers a ``height`` x ``width`` area with square tiles of ``tile`` pixels placed every
``stride = tile - overlap`` pixels. The last tile of a row or column ends on the area's edge (never past it):
the smallest multiple of ``step`` that still overlaps the tile before it by ``overlap`` pixels, shifted inward.
``step`` is the tile itself for a model of one input size (the last tile is then a whole tile shifted inward);
for a model that takes any size it is the model's own tile, so a 512 px grid over Zion's 1128 x 1428 px ends each
row and column with a 256 px tile instead of a 512 px one mostly over pixels already computed (2.29 Mpx computed
instead of 3.15). Only an area smaller than a tile is padded (the tile starts at 0 and its part beyond the edge
is filled by the reader).

Blending: each tile's probabilities are multiplied by a separable window that ramps linearly from a
small floor at the tile's edge up to 1 across the overlap, summed per pixel, and divided by the summed
weights. Two neighbouring tiles overlapping by exactly ``overlap`` pixels then weigh each pixel
``w`` and ``1 - w``: the result slides from one tile's view to the other with no step, and pixels next
to a tile's edge (where the network sees zero padding) count for little when another tile sees them
from its centre. The floor keeps every pixel's weight sum above zero.
"""
from dataclasses import dataclass

import numpy as np

EDGE_FLOOR = 1e-3
LABEL_ROWS = 32  # rows labelled at a time (tiling.StripBlender._labels)


def tile_offsets(length: int, tile: int, overlap: int, step: int = None) -> list:
    """Start offsets of tiles along one axis: every ``tile - overlap`` pixels, the last shifted inward."""
    return [offset for offset, _size in tile_spans(length, tile, overlap, step)]


def tile_spans(length: int, tile: int, overlap: int, step: int = None) -> list:
    """``(offset, size)`` of the tiles along one axis: ``tile`` px every ``tile - overlap`` pixels; the last ends on
    the edge, the smallest multiple of ``step`` (default ``tile``) up to ``tile`` that overlaps the one before it
    by at least ``overlap`` px. An axis shorter than a tile has one tile of ``tile`` px at 0 (padded)."""
    step = int(step or tile)
    if tile <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in 0..{tile - 1} for tile size {tile}, got {overlap}")
    if step <= 0 or tile % step:
        raise ValueError(f"tile size {tile} is not a multiple of the step {step}")
    if length <= tile:
        return [(0, tile)]
    stride = tile - overlap
    spans = [(offset, tile) for offset in range(0, length - tile, stride)]
    covered_from = spans[-1][0] + stride  # the last tile overlaps the one before it from there on
    size = min(tile, -(-(length - covered_from) // step) * step)
    spans.append((length - size, size))
    return spans


@dataclass(frozen=True)
class Tile:
    """One tile: its row/col offset in the area, the part of it inside the area (``rows``/``cols``) and the size
    the model runs (``height`` x ``width``)."""

    index: int
    grid_row: int
    row: int
    col: int
    rows: int
    cols: int
    height: int
    width: int


class TileGrid:
    """Row-major tiles covering a ``height`` x ``width`` area."""

    def __init__(self, height: int, width: int, tile: int, overlap: int, rows=None, step: int = None):
        self.height, self.width, self.tile, self.overlap = int(height), int(width), int(tile), int(overlap)
        self.row_spans = tile_spans(self.height, self.tile, self.overlap, step)
        self.col_spans = tile_spans(self.width, self.tile, self.overlap, step)
        self.row_offsets = [offset for offset, _size in self.row_spans]
        self.col_offsets = [offset for offset, _size in self.col_spans]
        r0, r1 = (0, self.height) if rows is None else (int(rows[0]), int(rows[1]))
        if not 0 <= r0 < r1 <= self.height:
            raise ValueError(f"rows {r0}..{r1} are not inside the area's {self.height} rows")
        self.rows = (r0, r1)
        # the tile rows that touch area rows r0..r1 (contiguous: offsets and tile ends both increase)
        touching = [g for g, (row, size) in enumerate(self.row_spans) if row < r1 and row + size > r0]
        self.grid_rows = range(touching[0], touching[-1] + 1)
        self.first_row = self.row_offsets[touching[0]]  # the first area row a tile of this grid covers
        self.first_index = touching[0] * len(self.col_offsets)

    def __len__(self) -> int:
        return len(self.grid_rows) * len(self.col_offsets)

    def __iter__(self):
        columns = len(self.col_offsets)
        for grid_row in self.grid_rows:
            row, height = self.row_spans[grid_row]
            for c, (col, width) in enumerate(self.col_spans):
                yield Tile(grid_row * columns + c, grid_row, row, col, min(height, self.height - row),
                           min(width, self.width - col), height, width)

    def computed_pixels(self) -> int:
        """Pixels the model computes over the whole grid (every tile at its size, padding included)."""
        return sum(size for _, size in self.row_spans) * sum(size for _, size in self.col_spans)

    def rows_final_before(self, grid_row: int) -> int:
        """First area row still open while tiles of ``grid_row`` onwards are not blended.

        Rows above the returned row are covered only by tile rows before ``grid_row``: once those are
        blended, the rows are final and can be written.
        """
        if grid_row >= len(self.row_offsets):
            return self.height
        return self.row_offsets[grid_row]


def ramp_1d(tile: int, overlap: int, floor: float = EDGE_FLOOR) -> np.ndarray:
    """1-D weights: a linear ramp over ``overlap`` pixels at each end, 1 in the middle, never below ``floor``."""
    weights = np.ones(tile, dtype=np.float32)
    if overlap > 0:
        ramp = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        weights[:overlap] = ramp
        weights[tile - overlap:] = np.minimum(weights[tile - overlap:], ramp[::-1])
    return np.maximum(weights, np.float32(floor))


def blend_window(tile: int, overlap: int, floor: float = EDGE_FLOOR, width: int = None) -> np.ndarray:
    """(tile, ``width`` or tile) float32 separable blending window, ramps of ``overlap`` px (at most the side less
    one) at every side; every value is in [floor, 1]."""
    width = width or tile
    return np.outer(ramp_1d(tile, min(overlap, tile - 1), floor),
                    ramp_1d(width, min(overlap, width - 1), floor)).astype(np.float32)


def overlap_pixels(tile: int, fraction: float) -> int:
    """Overlap in pixels for an overlap given as a fraction of the tile (0.25 = a quarter)."""
    return max(0, min(int(round(float(fraction) * tile)), tile - 1))


class NonFiniteProbabilities(ValueError):
    """The model gave NaN or infinite probabilities; ``row``, ``col``: the first such pixel of the area."""

    def __init__(self, row: int, col: int):
        super().__init__(f"non-finite probabilities at row {row}, column {col}")
        self.row, self.col = int(row), int(col)


class StripBlender:
    """Blends tiles' probabilities into a buffer one tile high and the area's width; emits finished rows.

    Tiles must be added in row-major grid order. Before a tile of grid row ``g`` is added, every area row
    above that grid row's offset is final: it is turned into labels (argmax of the blended probabilities,
    class id, 0 where no input pixel was valid) and confidence (top probability, percent) and handed to
    ``emit(labels, confidence)``; NaN or infinite probabilities there raise :class:`NonFiniteProbabilities`.
    Memory is O(classes x tile x width), whatever the area's height.
    A grid limited to rows ``r0..r1`` emits only those rows (the rows above ``r0`` its first tiles also cover
    are blended, then dropped: they lack the tiles above them).
    """

    def __init__(self, grid: TileGrid, class_ids, emit, *, confidence: bool = False, floor: float = EDGE_FLOOR):
        self.grid = grid
        self.class_ids = np.asarray(class_ids, dtype=np.uint8)
        self.emit = emit
        self.confidence = confidence
        self.floor = floor
        self._windows = {}  # blending windows by tile height and width (a grid's last tiles may be smaller)
        rows = min(grid.tile, grid.height)
        self.acc = np.zeros((len(self.class_ids), rows, grid.width), dtype=np.float32)
        # Weights matter only for confidence: the argmax of a weighted sum needs no division.
        self.weight = np.zeros((rows if confidence else 0, grid.width), dtype=np.float32)
        self.valid = np.zeros((rows, grid.width), dtype=bool)
        self.top = grid.first_row  # area row held in buffer row 0
        self.used = 0  # buffer rows touched by a tile so far

    def add(self, tile: Tile, probs: np.ndarray, valid: np.ndarray) -> None:
        """Blend one tile's (K, T, T) probabilities (modified in place) and (T, T) validity."""
        part = probs[:, :tile.rows, :tile.cols]
        np.multiply(part, self.window_for(*probs.shape[1:])[:tile.rows, :tile.cols], out=part)
        self._accumulate(tile, probs, valid)

    def add_batch(self, tiles, probs: np.ndarray, valid: np.ndarray) -> None:
        """:meth:`add` for a batch of tiles of one size: (N, K, H, W) probabilities (modified in place), (N, H, W)
        validity. The window multiplies the whole batch in one pass (a tile cut by the area's edge uses the
        window's top-left part, as :meth:`add` does)."""
        np.multiply(probs, self.window_for(*probs.shape[2:]), out=probs)
        for tile, tile_probs, tile_valid in zip(tiles, probs, valid):
            self._accumulate(tile, tile_probs, tile_valid)

    def window_for(self, height: int, width: int) -> np.ndarray:
        """The blending window of a ``height`` x ``width`` px tile (ramps of the grid's overlap at every side)."""
        window = self._windows.get((height, width))
        if window is None:
            window = self._windows[(height, width)] = blend_window(height, self.grid.overlap, self.floor, width)
        return window

    def _accumulate(self, tile: Tile, weighted: np.ndarray, valid: np.ndarray) -> None:
        self.release(self.grid.rows_final_before(tile.grid_row))
        r0, rows, c0, cols = tile.row - self.top, tile.rows, tile.col, tile.cols
        if r0 < 0 or r0 + rows > self.acc.shape[1]:
            raise ValueError(f"tile at row {tile.row} is outside the blending buffer (rows {self.top}..)")
        window = self.window_for(*weighted.shape[1:])[:rows, :cols]
        self.acc[:, r0:r0 + rows, c0:c0 + cols] += weighted[:, :rows, :cols]
        if self.confidence:
            self.weight[r0:r0 + rows, c0:c0 + cols] += window
        self.valid[r0:r0 + rows, c0:c0 + cols] |= valid[:rows, :cols]
        self.used = max(self.used, r0 + rows)

    def finish(self) -> None:
        self.release(self.grid.rows[1])

    def release(self, until: int) -> None:
        """Emit area rows [top, until): from the buffer where tiles ran, empty (0) rows past it."""
        take = min(until - self.top, self.used)
        if take > 0:
            self._emit(*self._labels(take))
            keep = self.used - take
            for array in (self.acc, self.weight[None], self.valid[None]):
                if array.shape[1] == 0:
                    continue
                _move_up(array, take, self.used)
                array[:, keep:self.used] = 0
            self.used, self.top = keep, self.top + take
        while self.top < until:  # rows that only skipped (all-nodata) tiles covered
            rows = min(until - self.top, 256)
            empty = np.zeros((rows, self.grid.width), dtype=np.uint8)
            self._emit(empty, empty if self.confidence else None)
            self.top += rows

    def _emit(self, labels, confidence) -> None:
        """Hand rows starting at area row ``top`` to ``emit``, less those above the grid's first row asked for."""
        drop = self.grid.rows[0] - self.top
        if drop >= labels.shape[0]:
            return
        if drop > 0:
            labels, confidence = labels[drop:], None if confidence is None else confidence[drop:]
        self.emit(labels, confidence)

    def _labels(self, rows: int) -> tuple:
        probs, valid = self.acc[:, :rows], self.valid[:rows]
        best = np.empty(valid.shape, dtype=np.float32)
        index = np.zeros(valid.shape, dtype=np.uint8)
        better = np.empty((LABEL_ROWS, valid.shape[1]), dtype=bool)
        step = np.empty((LABEL_ROWS, valid.shape[1]), dtype=np.uint8)
        for r in range(0, rows, LABEL_ROWS):  # a few rows at a time: their class planes stay in the core's cache
            part, top, at = probs[:, r:r + LABEL_ROWS], best[r:r + LABEL_ROWS], index[r:r + LABEL_ROWS]
            is_better, by = better[:top.shape[0]], step[:top.shape[0]]
            top[...] = part[0]
            for k in range(1, part.shape[0]):
                np.greater(part[k], top, out=is_better)
                np.maximum(top, part[k], out=top)  # carries NaN: one check on ``best`` covers every class
                np.subtract(np.uint8(k), at, out=by)  # index becomes k where better: add (k - index) there,
                np.multiply(by, is_better, out=by)  # branch-free (a masked store is twice as slow)
                at += by
        if not np.isfinite(best.sum()):
            row, col = np.argwhere(~np.isfinite(best))[0]
            raise NonFiniteProbabilities(self.top + row, col)
        labels = self.class_ids[index]
        np.multiply(labels, valid, out=labels)  # 0 where no input pixel was valid
        confidence = None
        if self.confidence:
            with np.errstate(invalid="ignore", divide="ignore"):
                percent = np.rint(100.0 * best / self.weight[:rows])
            confidence = np.clip(np.nan_to_num(percent), 1, 100).astype(np.uint8)
            np.multiply(confidence, valid, out=confidence)
        return labels, confidence


def _move_up(array: np.ndarray, take: int, used: int) -> None:
    """(C, rows, W) ``array``: rows [take, used) to [0, used - take), in blocks of ``take`` rows that never overlap.
    numpy copies overlapping rows through a temporary: the last tile row, shifted inward, keeps 504 of 512 rows,
    an 80 MB temporary and 0.19 s for a 5000 px wide strip of 8 classes (4.6 ms in blocks)."""
    for start in range(0, used - take, take):
        stop = min(start + take, used - take)
        array[:, start:stop] = array[:, start + take:stop + take]
