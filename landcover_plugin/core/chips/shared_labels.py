"""Labelled pixels that two exports of one raster share: labels added to a chip dataset a second time, whole or in
part (the same polygons again, or a layer whose older polygons were exported before and whose new ones are added).

Such pixels would count twice in training and could be trained on in one export's chips and scored in the other's.
Both exports cut their chips on the raster's own pixel grid, so their label chips are compared pixel for pixel:
the grid is cut into square blocks, each export's labelled pixels (label values other than 0, unlabelled, and 255)
are gathered per block, and only blocks where the new export labels something are read from the older one.
"""
import numpy as np
import rasterio

from ..errors import BadInputError

UNLABELLED = (0, 255)


def labelled_blocks(chips, folder, block: int, only=None) -> dict:
    """``{(block row, block col): bool array}`` of the pixels ``chips`` label, on blocks of ``block`` px of the
    raster's grid; with ``only``, just those blocks."""
    blocks = {}
    for chip in chips:
        w = chip["window"]
        row, col, height, width = w["row_off"], w["col_off"], w["height"], w["width"]
        keys = [(r, c) for r in range(row // block, (row + height - 1) // block + 1)
                for c in range(col // block, (col + width - 1) // block + 1)]
        if only is not None:
            keys = [key for key in keys if key in only]
        if not keys:
            continue
        try:
            with rasterio.open(folder / chip["label"]) as src:
                labelled = ~np.isin(src.read(1), UNLABELLED)
        except rasterio.errors.RasterioError as exc:
            raise BadInputError(f"The label chip {chip['label']} of {folder} cannot be read ({exc}): export the chip "
                                f"dataset again.") from exc
        for r, c in keys:
            top, left = max(row, r * block), max(col, c * block)
            bottom, right = min(row + height, (r + 1) * block), min(col + width, (c + 1) * block)
            mask = blocks.setdefault((r, c), np.zeros((block, block), dtype=bool))
            mask[top - r * block:bottom - r * block, left - c * block:right - c * block] |= \
                labelled[top - row:bottom - row, left - col:right - col]
    return blocks


def shared_pixels(new_chips, new_folder, old_chips, old_folder, block: int) -> tuple:
    """``(labelled pixels of new_chips that old_chips label too, labelled pixels of new_chips)``, each pixel once;
    both lists of chips cut from one raster."""
    new = labelled_blocks(new_chips, new_folder, block)
    new = {key: mask for key, mask in new.items() if mask.any()}
    old = labelled_blocks(old_chips, old_folder, block, only=new)
    shared = sum(int((mask & old[key]).sum()) for key, mask in new.items() if key in old)
    return shared, sum(int(mask.sum()) for mask in new.values())
