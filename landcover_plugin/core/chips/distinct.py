"""Distinct labelled pixels per class in the kept chips: each source pixel counted once, however many
overlapping chips (stride below the chip size) hold it.

The chips' own ``class_counts`` count a pixel once per chip, as training sees it (and the class weights
use them); the analyst asks how many pixels are labelled. Chip windows lie on a grid, so the source is cut
into *cells* along every window edge: a chip covers whole cells, and a cell already counted for its split
is not counted again. A chip whose cells are all new adds its ``class_counts`` as they are (every chip when
chips do not overlap: nothing is read); only a chip that overlaps counted cells has its label chip read.

Within a split, two chips agree on a pixel's label (both burn or read the same labels), except validation
chips of a polygon split, which label only the pixels no earlier window labelled; in scan order (the order
of the chip list) the cells they leave unlabelled are therefore never counted before the chip that labels
them.
"""
import numpy as np
import rasterio


def distinct_class_pixels(chips: list, folder, schema) -> dict:
    """``{split: {"<id>": pixels}}`` for "train" and "val" (and every schema class), each labelled source pixel
    of ``chips`` counted once per split. ``folder`` holds the chips' label files."""
    totals = {split: {str(c.id): 0 for c in schema} for split in ("train", "val")}
    if not chips:
        return totals
    rows = _edges(chips, "row_off", "height")
    cols = _edges(chips, "col_off", "width")
    counted = {split: np.zeros((len(rows) - 1, len(cols) - 1), dtype=bool) for split in totals}
    for chip in chips:
        split = chip.get("split", "train")
        w = chip["window"]
        r0, r1 = np.searchsorted(rows, [w["row_off"], w["row_off"] + w["height"]])
        c0, c1 = np.searchsorted(cols, [w["col_off"], w["col_off"] + w["width"]])
        done = counted[split][r0:r1, c0:c1]
        if not done.any():
            counts = chip["class_counts"].items()
        elif done.all():
            continue
        else:
            new = np.repeat(np.repeat(~done, np.diff(rows[r0:r1 + 1]), axis=0), np.diff(cols[c0:c1 + 1]), axis=1)
            with rasterio.open(folder / chip["label"]) as src:
                label = src.read(1)
            found = np.bincount(label[new], minlength=256)
            counts = ((str(i), int(found[i])) for i in np.flatnonzero(found[1:]) + 1)
        for key, value in counts:
            totals[split][str(key)] += int(value)
        done[...] = True
    return totals


def _edges(chips: list, offset: str, size: str) -> np.ndarray:
    """Every chip window's start and end along one axis, sorted: the cell boundaries."""
    return np.unique([edge for chip in chips for edge in (chip["window"][offset],
                                                          chip["window"][offset] + chip["window"][size])])
