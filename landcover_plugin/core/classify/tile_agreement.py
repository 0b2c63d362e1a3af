"""How far a model's labels stay the same when it runs tiles bigger than its own: measured once, at export.

A U-Net trained on 64 px chips has a receptive field wider than its chips: in training, every pixel's deepest
features saw the chip's zero padding. At 512 px most pixels see none, and labels change all over the tile, not
only near its edges. Zion, U-Net trained 2 epochs on 64 px chips, 64 px vs 512 px tiles: 1.7-1.8 % of the
pixels 8-32 px inside the 64 px tile change class, 0.6-0.8 % of those nearer its edge, so no cropped margin or
blending window can hide it; 128, 256 and 512 px tiles agree with each other on 99.1-99.5 % of the pixels but
with 64 px tiles on 98.3-98.7 % only, and overall accuracy against NLCD goes from 0.744 to 0.739.

Whether bigger tiles are safe is a property of the trained weights, so it is measured on the training image with
the classifier's own tiling and blending: :func:`measure` classifies a window of it at the model's tile and at
2, 4, 8... times it, up to the first size whose labels differ from the model tile's on more than 1 % of the
pixels. The largest size that agrees (with every smaller one) on at least :data:`AGREEMENT` of the pixels is the
largest tile the automatic choice (``--tile-size 0``, :mod:`.tile_size`) may take; it sits in the model card as
``tile_agreement``.
"""
import numpy as np
import rasterio

from ..events import RecordingEvents
from ..model.session import load_model
from .source import open_source
from .tile_size import AUTO_TILE_MAX, choose_tile, model_grid
from .tiling import StripBlender, TileGrid, overlap_pixels

AGREEMENT = 0.99  # share of pixels with the same class as at the model's own tile
AREA = 768  # px: side of the window of the training image classified at each size
DEFAULT_OVERLAP = 0.125  # the classifier's floor (run.py): the overlap users get by default


def measure(model_path, image_path, *, area: int = AREA, max_tile: int = AUTO_TILE_MAX, batch_size: int = 4) -> dict:
    """``{"tile", "agreement": {size: share}, "pixels", "threshold"}`` for the model at ``model_path`` (dynamic
    height and width) over a centred ``area`` x ``area`` px window of ``image_path``; None when the model takes
    one size only, or the image is too small to hold a tile twice the model's."""
    model = load_model(str(model_path), device="cpu", events=RecordingEvents())
    base = int(model.tile)
    if not model.dynamic_size:
        return None
    with rasterio.open(image_path) as src:
        height, width = min(area, src.height), min(area, src.width)
        row, col = (src.height - height) // 2, (src.width - width) // 2
        extent = rasterio.windows.bounds(rasterio.windows.Window(col, row, width, height), src.transform)
        extent = (extent[0], extent[1], extent[2], extent[3])
    sizes = [base]
    while sizes[-1] * 2 <= min(max_tile, height, width):
        sizes.append(sizes[-1] * 2)
    if len(sizes) == 1:
        return None
    overlap = max(model.card.get("overlap") or 0.0, DEFAULT_OVERLAP)
    agreement, largest, pixels = {}, base, 0
    with open_source(str(image_path), model, extent=extent, events=RecordingEvents()) as source:
        reference = label_map(source, model, TileGrid(source.height, source.width, base,
                                                      overlap_pixels(base, overlap)), batch_size)
        pixels = int((reference > 0).sum())
        for size in sizes[1:]:  # up to the first size that changes the labels: bigger ones are not used
            tile, batch, overlap_px = choose_tile(model, source.height, source.width, size, batch_size, overlap)
            labels = label_map(source, model, model_grid(model, source.height, source.width, tile, overlap_px), batch)
            either = (reference > 0) | (labels > 0)
            share = float((labels == reference)[either].mean()) if either.any() else 1.0
            agreement[str(size)] = round(share, 4)
            if share < AGREEMENT:
                break
            largest = size
    return {"tile": largest, "agreement": agreement, "pixels": pixels, "threshold": AGREEMENT}


def label_map(source, model, grid, batch_size: int) -> np.ndarray:
    """The classified labels (class ids, 0 = no data) of ``source`` with ``grid``'s tiles, in memory, through the
    classifier's own reading, standardising and blending (no softmax: our models give probabilities)."""
    rows = []
    blender = StripBlender(grid, [c["id"] for c in model.classes], lambda labels, _: rows.append(labels))
    for batch in source.batches(grid, batch_size):
        blender.add_batch(batch.tiles, model.run(batch.x), batch.valid)
    blender.finish()
    return np.concatenate(rows)
