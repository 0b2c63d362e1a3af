"""The tile the classifier runs: the model's own, or a bigger one where measured safe or asked for.

A fully convolutional network can run at more than its training chip size. With 64 px tiles overlapping by
16 px, every pixel is computed 1.8 times and a 20000 x 20000 px raster is 174,000 model calls. For a model
whose input has dynamic height and width, ``tile_size`` may be a multiple of the model's tile (so a multiple
of the network's stride: a U-Net halves the size four times), or 0: the multiple up to
:data:`AUTO_TILE_MAX` px that computes the fewest pixels over the area in whole tiles (overlaps and the last
tiles shifted inward count; the bigger on a tie). The grid then ends each row and column with the smallest
multiple of the model's tile that reaches the edge (:func:`.tiling.tile_spans`). The overlap stays what it is at
the model's own tile, in pixels: the blending hides edge effects whose width is the network's receptive field,
not a share of the tile. The batch shrinks so a batch holds about as many pixels as the asked batch of model-sized
tiles (at least one tile): the model's memory stays where it was. Measured on 2 cores, onnxruntime's throughput
per pixel is about the same from 64 to 512 px tiles (0.7-1.1 Mpx/s, trainer's U-Net base width 16): the saving
is the overlap.

Bigger tiles are not always safe: a U-Net trained on 64 px chips has always seen the tile's zero padding
in its deepest layers; at 512 px most pixels see none, and its labels change (Zion, U-Net trained briefly on
64 px chips: 92-98 % of pixels keep their class, overall accuracy against NLCD 0.722 at 256 px against 0.725
at 64 px). A net with a small receptive field gives the same map (>= 99 %, tests/engine/
test_classify_dynamic_tiles.py). So the trainer measures, at export, the largest tile whose labels agree with
the model's own on >= 99 % of the pixels of the training image (:mod:`.tile_agreement`, the card's
``tile_agreement``). When no tile size is given, a model with that entry runs the tile up to it that computes
the fewest pixels (U-Nets trained on Zion's 128 px chips keep 99.4-99.7 % of the labels up to 512 px, and over
the 1128 x 1428 px scene run 256 px tiles, the last row of them 128 px high: 28 % fewer pixels computed than with
128 px tiles); a model without
it (foreign, or exported before it was measured) runs its own tile unless 0 (automatic) is asked. A bigger tile
than measured, asked for, is run with a warning. The automatic tile also keeps the blending strip (classes x
tile x raster width floats) within :data:`STRIP_BUDGET_MB`. bench/tiles.py measures the time saved and the
agreement.
"""
from ..errors import BadInputError
from .tiling import TileGrid, overlap_pixels

AUTO_TILE_MAX = 512
STRIP_BUDGET_MB = 512  # the automatic tile keeps the blending strip under this (a 20000 px wide raster, 12 classes)


def choose_tile(model, height: int, width: int, requested: int = None, batch_size: int = 4,
                overlap: float = 0.125, events=None) -> tuple:
    """``(tile, batch_size, overlap_px)`` to classify a ``height`` x ``width`` area with ``model``.

    ``requested``: a tile size the user asked for; None (not asked): the model's tile, or for a model whose card
    holds the trainer's ``tile_agreement`` the automatic choice within it; 0: automatic (for any model with
    dynamic height and width, within ``tile_agreement`` when the card has it); ``overlap``: a fraction
    of the model's tile. A model with a fixed input size always runs that size (asking another is reported).
    """
    base = int(model.tile)
    overlap_px = overlap_pixels(base, overlap)
    if requested is None:  # not asked: bigger tiles only where the trainer measured that they keep the labels
        agreed = _agreed_tile(model) if getattr(model, "dynamic_size", False) else None
        if agreed is None or agreed["tile"] <= base or getattr(model, "fixed_batch", None):
            return base, batch_size, overlap_px
        tile = _fewest_pixels(height, width, base, agreed["tile"], overlap_px, len(model.classes))
        if tile != base and events is not None:
            pixels = [computed_pixels(height, width, size, overlap_px, base) for size in (tile, base)]
            saved = 1 - pixels[0] / pixels[1]
            if round(saved, 2) > 0:  # a bigger tile that saves nothing (a tie) is not worth a line
                events.info(f"Tiles of {tile} px instead of the model's {base} px: the trainer measured at export "
                            f"that tiles up to {agreed['tile']} px give the same class on {_kept_text(agreed)} of the "
                            f"pixels, and they compute {saved:.0%} fewer pixels.")
        return tile, _batch_for(tile, base, batch_size), overlap_px
    if not getattr(model, "dynamic_size", False):
        if requested and int(requested) != base and events is not None:
            events.warning(f"The model takes only {base} px tiles (its input size is fixed): ran {base} px tiles, "
                           f"not the {int(requested)} px asked for.")
        return base, batch_size, overlap_px
    agreed = _agreed_tile(model)
    if requested:
        tile = int(requested)
        if tile < base or tile % base:
            raise BadInputError(f"Tile size {tile} px does not suit this model: it was trained on {base} px "
                                f"tiles and runs tiles of a multiple of that ({base}, {2 * base}, {4 * base}, ...). "
                                f"Give one of those, or leave the tile size empty for the automatic choice.")
        if agreed and tile > agreed["tile"] and events is not None:
            events.warning(f"{tile} px tiles may change the labels: at export, bigger tiles than {agreed['tile']} px "
                           f"gave the same class as the model's {base} px tiles on only "
                           f"{_agreement_text(agreed)} of the pixels.")
    else:
        tile = _fewest_pixels(height, width, base, agreed["tile"] if agreed else AUTO_TILE_MAX, overlap_px,
                              len(model.classes))
        if agreed and agreed["tile"] < AUTO_TILE_MAX and events is not None:
            events.info(f"Automatic tile: {tile} px. Bigger tiles than {agreed['tile']} px were not used: at export "
                        f"they gave the same class as the model's {base} px tiles on only {_agreement_text(agreed)} "
                        f"of the pixels (less than {agreed.get('threshold', 0.99):.0%}).")
    if getattr(model, "fixed_batch", None):
        return tile, batch_size, overlap_px
    return tile, _batch_for(tile, base, batch_size), overlap_px


def _batch_for(tile: int, base: int, batch_size: int) -> int:
    """About as many pixels a batch as ``batch_size`` tiles of ``base`` px (at least one tile)."""
    return batch_size if tile == base else max(1, (batch_size * base * base) // (tile * tile))


def _fewest_pixels(height: int, width: int, base: int, largest: int, overlap_px: int, classes: int) -> int:
    """The multiple of ``base`` up to ``largest`` (and :data:`AUTO_TILE_MAX`) px that computes the fewest pixels
    over the area (the bigger on a tie), among those whose blending strip (classes x tile x width floats) stays
    within :data:`STRIP_BUDGET_MB`, or the model's own tile's strip where that is already bigger."""
    budget = max(STRIP_BUDGET_MB * 2 ** 20, strip_bytes(base, width, classes))
    largest = min(AUTO_TILE_MAX, largest)
    sizes = [size for size in range(base, max(base, largest // base * base) + 1, base)
             if size == base or strip_bytes(size, width, classes) <= budget]
    # Compared as whole tiles, though the grid then ends each row and column with a smaller one: counting those
    # made Zion run 512 px tiles (fewest pixels) 7-13 % slower than 256 px ones on 2 cores (nine runs for two
    # streams, and a 512 px tile's activations outgrow the caches).
    return min(sizes, key=lambda size: (computed_pixels(height, width, size, overlap_px), -size))


def strip_bytes(tile: int, width: int, classes: int) -> int:
    """Bytes of the float32 probability strip one tile high that blending holds (tiling.StripBlender)."""
    return 4 * classes * tile * width


def computed_pixels(height: int, width: int, tile: int, overlap_px: int, step: int = None) -> int:
    """Pixels the model computes to cover the area with ``tile`` px tiles overlapping by ``overlap_px``, the last
    of each row and column a multiple of ``step`` (:func:`tiling.tile_spans`)."""
    overlap_px = min(overlap_px, tile - 1)
    return TileGrid(height, width, tile, overlap_px, step=step).computed_pixels()


def model_grid(model, height: int, width: int, tile: int, overlap_px: int, rows=None) -> TileGrid:
    """The grid of ``tile`` px tiles ``model`` runs over a ``height`` x ``width`` area (``rows``: see TileGrid): the
    last tile of each row and column a multiple of the model's own tile for a model that takes any size
    (:func:`tiling.tile_spans`), else a whole tile shifted inward."""
    base = int(model.tile)
    step = base if getattr(model, "dynamic_size", False) and tile % base == 0 else int(tile)
    return TileGrid(height, width, tile, overlap_px, rows=rows, step=step)


def _agreed_tile(model):
    """The card's ``tile_agreement`` (see :mod:`.tile_agreement`) when it is usable, else None (models exported
    before it was measured, and foreign models: the automatic choice is then not limited)."""
    agreed = (getattr(model, "card", None) or {}).get("tile_agreement")
    if not isinstance(agreed, dict) or not isinstance(agreed.get("tile"), int) or agreed["tile"] < int(model.tile):
        return None
    return agreed


def _kept_text(agreed) -> str:
    shares = [share for size, share in (agreed.get("agreement") or {}).items() if int(size) <= agreed["tile"]]
    return f"at least {min(shares):.1%}" if shares else "at least 99 %"


def _agreement_text(agreed) -> str:
    shares = {int(size): share for size, share in (agreed.get("agreement") or {}).items() if int(size) > agreed["tile"]}
    return ", ".join(f"{share:.1%} at {size} px" for size, share in sorted(shares.items())) or "too few"
