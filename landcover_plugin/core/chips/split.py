"""Chip windows over a raster grid and the spatial train/val split.

Windows: a regular grid with a given stride; the last row and column of windows are shifted inward
so every chip is full size. The split is spatial: chips are grouped into square blocks (by window
centre); whole blocks go to validation until the requested share is reached; then every training
chip whose window overlaps a validation chip is dropped, so no source pixel is in both splits.
"""
import random

import numpy as np

from ..errors import BadInputError


def window_offsets(length: int, chip_size: int, stride: int) -> list:
    """Offsets along one axis: 0, stride, 2*stride, ... and a last one at ``length - chip_size``."""
    if chip_size > length:
        raise ValueError("chip larger than the axis")
    offsets = list(range(0, length - chip_size + 1, stride))
    if offsets[-1] + chip_size < length:
        offsets.append(length - chip_size)
    return offsets


def unique_spans(offsets: list, chip_size: int) -> list:
    """For each offset, the (start, stop) span of the axis that no earlier window covered, relative
    to the window. With stride <= chip size the spans tile the axis exactly once."""
    spans, covered_to = [], 0
    for offset in offsets:
        start = max(offset, covered_to)
        spans.append((start - offset, offset + chip_size - offset))
        covered_to = offset + chip_size
    return spans


def spatial_split(windows, chip_size: int, val_fraction: float, seed: int = 0, block_size: int = None):
    """Assign each window (row_off, col_off) to "train", "val" or None (dropped: overlaps val).

    Blocks are ``block_size`` pixels a side (default two chips); when that leaves no training chip
    (few chips, large overlap) smaller blocks are tried. Returns ``(splits, info)``; ``info``
    describes what was done. With fewer than two windows, or when no honest split exists (every
    training chip would overlap a validation chip), all windows go to training and
    ``info["warning"]`` says why.
    """
    n = len(windows)
    if not 0.0 <= val_fraction < 1.0:
        raise BadInputError(f"The validation share must be at least 0 and below 1 (got {val_fraction}).")
    info = {"method": "blocks", "val_fraction_requested": float(val_fraction), "seed": int(seed)}
    if n < 2 or val_fraction == 0.0:
        if val_fraction > 0.0:
            info["warning"] = (f"Only {n} chip(s): all used for training, none for validation. Use a smaller "
                               f"chip size or stride, or more labels, to get a validation split.")
        return ["train"] * n, info
    rows = np.array([w[0] for w in windows], dtype=np.int64)
    cols = np.array([w[1] for w in windows], dtype=np.int64)
    size = int(block_size or 2 * chip_size)
    while size >= 1:
        is_val = _choose_val_blocks(rows, cols, chip_size, size, val_fraction, seed)
        dropped = overlaps_any(rows, cols, is_val, chip_size)
        if (~is_val & ~dropped).any():
            info.update(block_size=size, dropped_overlapping=int(dropped.sum()))
            return ["val" if v else (None if d else "train") for v, d in zip(is_val, dropped)], info
        if block_size:
            break
        size //= 2
    info["warning"] = (f"The {n} chips overlap too much for an honest spatial split: all used for "
                       f"training, none for validation. Use a smaller chip size or a larger stride.")
    return ["train"] * n, info


def _choose_val_blocks(rows, cols, chip_size, block_size, val_fraction, seed) -> np.ndarray:
    """Shuffle the blocks (by window centre) and take whole blocks while that brings the number of
    validation chips closer to ``val_fraction`` of all chips; at least one block."""
    blocks = {}
    centres = zip((rows + chip_size // 2) // block_size, (cols + chip_size // 2) // block_size)
    for index, key in enumerate(centres):
        blocks.setdefault((int(key[0]), int(key[1])), []).append(index)
    order = sorted(blocks)
    random.Random(seed).shuffle(order)
    target = val_fraction * len(rows)
    is_val = np.zeros(len(rows), dtype=bool)
    chosen = 0
    for key in order:
        members = blocks[key]
        if chosen == 0 or abs(chosen + len(members) - target) < abs(chosen - target):
            is_val[members] = True
            chosen += len(members)
    return is_val


def overlaps_any(rows: np.ndarray, cols: np.ndarray, is_val: np.ndarray, chip_size: int) -> np.ndarray:
    """True for each non-val window whose pixels overlap some val window (same square size)."""
    val_rows, val_cols = rows[is_val], cols[is_val]
    result = np.zeros(len(rows), dtype=bool)
    candidates = np.flatnonzero(~is_val)
    for start in range(0, len(candidates), 1024):
        part = candidates[start:start + 1024]
        near = ((np.abs(rows[part, None] - val_rows[None, :]) < chip_size)
                & (np.abs(cols[part, None] - val_cols[None, :]) < chip_size))
        result[part] = near.any(axis=1)
    return result
