"""Chip windows over a raster grid and the train/val split: spatial blocks, or whole polygons.

Windows: a regular grid with a given stride; the last row and column of windows are shifted inward
so every chip is full size.

Labels from a raster are split by spatial blocks: chips are grouped into square blocks (by window
centre); whole blocks go to validation until the requested share is reached; then every training
chip whose window overlaps a validation chip is dropped, so no source pixel is in both splits.

Polygon labels are split by polygon: neighbouring polygons of a class form groups (polygons of other classes
between them do not join them: wall-to-wall polygons would all be one group), and whole groups of each class go
to validation (:func:`polygon_split`), so validation measures the map on places the model never saw
labelled, and every class with two or more groups is scored. The chips then hold the labels of one
split only (see chips/export.py).
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
    if _stride_overlaps(rows, chip_size) or _stride_overlaps(cols, chip_size):
        fix = "a smaller chip size, or a stride of at least the chip size"
    else:  # a larger stride changes nothing: the windows shifted to the raster's edge are what overlap
        fix = (f"a smaller chip size: the raster holds few {chip_size} px windows, and the last of each row and "
               f"column is shifted to end at the raster's edge, overlapping the one before")
    info["warning"] = (f"The {n} chips overlap too much for an honest spatial split: all used for "
                       f"training, none for validation. Use {fix}.")
    return ["train"] * n, info


def _stride_overlaps(offsets, chip_size: int) -> bool:
    """Whether windows along one axis overlap by the stride (not only the last, shifted to the raster's edge)."""
    steps = np.diff(np.unique(offsets))[:-1]
    return bool((steps < chip_size).any())


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


# -- polygon labels: whole polygons (or groups of neighbouring ones) per split, stratified by class ------------
def polygon_groups(boxes: np.ndarray, gap: float, classes=None) -> np.ndarray:
    """Group id per polygon: polygons (of one class, with ``classes``) whose bounding boxes come within ``gap``
    (CRS units) of each other, directly or through others, share a group (neighbouring training areas of a class
    are not split apart). Without ``classes`` polygons of any class chain: wall-to-wall polygons (a land-cover
    map made polygons) then all form one group, and none can be held out."""
    n = len(boxes)
    if classes is not None:
        classes = np.asarray(classes)
        groups = np.zeros(n, dtype=np.int64)
        start = 0
        for class_id in dict.fromkeys(classes.tolist()):  # in order of first polygon
            members = np.flatnonzero(classes == class_id)
            inner = polygon_groups(np.asarray(boxes)[members], gap)
            groups[members] = inner + start
            start += int(inner.max()) + 1
        return _numbered_by_first(groups)
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(n):
        near = np.flatnonzero((boxes[i + 1:, 0] <= boxes[i, 2] + gap) & (boxes[i + 1:, 2] >= boxes[i, 0] - gap)
                              & (boxes[i + 1:, 1] <= boxes[i, 3] + gap) & (boxes[i + 1:, 3] >= boxes[i, 1] - gap))
        for j in near + i + 1:
            parent[root(int(j))] = root(i)
    roots = [root(i) for i in range(n)]
    labels = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return np.array([labels[r] for r in roots], dtype=np.int64)


def _numbered_by_first(groups: np.ndarray) -> np.ndarray:
    """The same groups, numbered 0, 1, ... in the order of their first polygon."""
    labels = {g: k for k, g in enumerate(dict.fromkeys(groups.tolist()))}
    return np.array([labels[g] for g in groups.tolist()], dtype=np.int64)


def polygon_split(classes, groups, val_fraction: float, seed: int = 0):
    """``(is_val per polygon, info)``: for each class, whole groups (by the class most of their polygons
    have) go to validation, about ``val_fraction`` of them and at least one, always leaving one for
    training. A class with a single group cannot be validated: it is named in ``info["unsplit_classes"]``."""
    classes, groups = np.asarray(classes), np.asarray(groups)
    group_class = {}
    for g in np.unique(groups):
        values, counts = np.unique(classes[groups == g], return_counts=True)
        group_class[int(g)] = int(values[np.argmax(counts)])
    rng = random.Random(seed)
    val_groups, unsplit = set(), []
    for class_id in sorted(set(group_class.values())):
        members = sorted(g for g, c in group_class.items() if c == class_id)
        if len(members) < 2:
            unsplit.append(class_id)
            continue
        rng.shuffle(members)
        take = min(len(members) - 1, max(1, round(val_fraction * len(members))))
        val_groups.update(members[:take])
    is_val = np.isin(groups, sorted(val_groups))
    info = {"method": "polygons", "val_fraction_requested": float(val_fraction), "seed": int(seed),
            "polygon_groups": len(group_class), "val_polygons": int(is_val.sum()),
            "train_polygons": int((~is_val).sum()), "unsplit_classes": unsplit}
    return is_val, info


def no_holdout_reason(classes, groups, names: dict, gap_pixels: float = 2) -> str:
    """Why :func:`polygon_split` could hold no polygon out (every class's polygons form one group), class by
    class, and what to digitise; ``names``: class id -> name."""
    classes, groups = np.asarray(classes), np.asarray(groups)
    found = []
    for class_id in sorted(set(classes.tolist())):
        polygons = int((classes == class_id).sum())
        found.append(f"{names.get(class_id, class_id)} " + (
            "1 polygon" if polygons == 1 else f"{polygons} polygons in {len(set(groups[classes == class_id]))} "
                                             f"group"))
    return (f"No polygon can be held out for validation: each class's polygons form a single group (polygons of a "
            f"class whose extents touch or come within {gap_pixels:g} pixels of each other are held out together, "
            f"so the model is never scored right beside a polygon of that class it trained on): "
            f"{'; '.join(found)}. Validation uses spatial blocks of chips instead, which measures the map less "
            f"honestly. To hold polygons out, digitise at least two polygons of a class away from each other.")
