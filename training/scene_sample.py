"""The map's side of the held-out estimate: the trained model's class probabilities over a spread sample of tiles
of the source raster (:func:`scene_sample`), and what the estimate reads from them: the map's class shares, its
top-class probabilities and its expected error matrix (:func:`scene_summary`; see :mod:`.heldout`)."""
from pathlib import Path

import numpy as np

from landcover_plugin.core.classify.source import open_source
from landcover_plugin.core.classify.tiling import TileGrid
from landcover_plugin.core.errors import LandcoverError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.session import load_model

SAMPLE_TILES = 64      # tiles of the source raster classified to learn the map's class shares
PIXELS_PER_TILE = 4096  # pixels of a sample tile kept (every 4th valid one, or sparser in big tiles)


def scene_sample(model_path, raster_path, max_tiles: int = SAMPLE_TILES):
    """The model's class probabilities over an evenly spread sample of tiles of the raster: (n, K) float32, every
    4th valid pixel (at most :data:`PIXELS_PER_TILE` a tile); None when the raster cannot be read here."""
    if not raster_path or not Path(raster_path).exists():
        return None
    try:
        model = load_model(model_path, device="cpu", events=RecordingEvents())
        pixels = []
        for batch in spread_batches(model, raster_path, max_tiles):
            probs = model.run(batch.x)
            for tile_probs, valid in zip(probs, batch.valid):
                found = np.moveaxis(tile_probs, 0, -1)[valid]  # (valid pixels, K)
                pixels.append(found[::max(4, -(-len(found) // PIXELS_PER_TILE))])
    except LandcoverError:
        return None
    pixels = np.concatenate(pixels) if pixels else np.zeros((0, 0), np.float32)
    return pixels if len(pixels) else None


def spread_batches(model, raster_path, max_tiles: int, batch_size: int = 8):
    """Batches (:class:`landcover_plugin.core.classify.source.Batch`) of about ``max_tiles`` tiles spread evenly over
    the raster, read and standardised as the classifier reads them for ``model``."""
    with open_source(str(raster_path), model, events=RecordingEvents()) as source:
        tiles = list(TileGrid(source.height, source.width, model.tile, 0))
        step = max(1, len(tiles) // max_tiles)
        yield from source.batches(tiles[step // 2::step], batch_size)


def scene_summary(pixels, num_classes: int, chances=None) -> tuple:
    """What the held-out estimate needs of the map from (n, K) pixel probabilities: ``(class shares, top-class
    probabilities, expected error matrix)``. The expected error matrix (rows reference, columns mapped, summing to
    1) takes each pixel's class probabilities as the chances of its reference classes: p_ij = the mean over the
    pixels of the probability of class i where the map says j (:func:`expected_matrix`); ``chances``: other (n, K)
    probabilities to take as those chances (the map is still ``pixels``' argmax)."""
    expected = expected_matrix(pixels, num_classes, chances)
    expected /= expected.sum()
    return expected.sum(axis=0), pixels.max(axis=1), expected


def expected_matrix(pixels, num_classes: int, chances=None) -> np.ndarray:
    """(K, K) sums over (n, K) pixel probabilities: row i, column j = the probability of class i (in ``chances``,
    by default ``pixels`` themselves) summed over the pixels mapped as j (``pixels``' argmax); its column sums
    count the pixels mapped as each class."""
    labels = np.asarray(pixels).argmax(axis=1)
    chances = np.asarray(pixels if chances is None else chances, dtype=np.float64)
    matrix = np.zeros((num_classes, num_classes), dtype=np.float64)
    for j in np.unique(labels):
        if j < num_classes:
            matrix[:, j] = chances[labels == j, :num_classes].sum(axis=0)
    return matrix
