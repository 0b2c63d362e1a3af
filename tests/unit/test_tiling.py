"""Tile grids, the blending window and the strip blender, against brute-force references."""
import numpy as np
import pytest

from landcover_plugin.core.classify.tiling import (
    NonFiniteProbabilities,
    StripBlender,
    TileGrid,
    blend_window,
    overlap_pixels,
    ramp_1d,
    tile_offsets,
    tile_spans,
)


@pytest.mark.parametrize("length,tile,overlap", [(1000, 256, 32), (256, 256, 32), (257, 256, 32), (100, 256, 32),
                                                 (1000, 64, 0), (513, 128, 63), (1, 8, 2)])
def test_offsets_cover_every_pixel_and_stay_inside(length, tile, overlap):
    offsets = tile_offsets(length, tile, overlap)
    covered = np.zeros(length, dtype=int)
    for offset in offsets:
        covered[offset:offset + tile] += 1
        assert offset >= 0
        assert offset + tile <= length or (offset == 0 and length < tile)  # only a short axis is padded
    assert covered.min() >= 1
    assert offsets == sorted(set(offsets))
    steps = np.diff(offsets)
    assert (steps <= tile - overlap).all()  # neighbours overlap by at least ``overlap``


def test_last_tile_is_shifted_inward():
    assert tile_offsets(1000, 256, 32) == [0, 224, 448, 672, 744]
    assert tile_offsets(256, 256, 32) == [0]


def test_with_a_step_the_last_tile_is_the_smallest_multiple_that_still_overlaps():
    """Zion's 1128 x 1428 px in 512 px tiles of a model trained on 256 px: the last column and row are 256 px
    tiles ending on the edge, not 512 px ones over pixels already computed."""
    assert tile_spans(1128, 512, 64, 256) == [(0, 512), (448, 512), (872, 256)]
    assert tile_spans(1428, 512, 64, 256) == [(0, 512), (448, 512), (896, 512), (1172, 256)]
    assert tile_spans(1128, 512, 64) == [(0, 512), (448, 512), (616, 512)]  # one input size: whole tiles
    assert TileGrid(1428, 1128, 512, 64, step=256).computed_pixels() == 1792 * 1280
    assert TileGrid(1428, 1128, 512, 64).computed_pixels() == 2048 * 1536
    with pytest.raises(ValueError, match="multiple"):
        tile_spans(1000, 512, 64, 200)


@pytest.mark.parametrize("length", [1, 63, 64, 65, 300, 511, 512, 513, 1000, 1128, 1428, 4097])
@pytest.mark.parametrize("tile,overlap,step", [(512, 64, 256), (512, 16, 64), (256, 32, 32), (128, 0, 64)])
def test_spans_cover_the_axis_and_neighbours_overlap_enough(length, tile, overlap, step):
    spans = tile_spans(length, tile, overlap, step)
    covered = np.zeros(length, dtype=int)
    for offset, size in spans:
        assert size % step == 0 and 0 < size <= tile and offset >= 0
        assert offset + size <= length or (offset == 0 and length < tile)  # only a short axis is padded
        covered[offset:offset + size] += 1
    assert covered.min() >= 1
    assert [size for _, size in spans[:-1]] == [tile] * (len(spans) - 1)  # only the last may be smaller
    for (a, size_a), (b, _) in zip(spans, spans[1:]):
        assert a + size_a - b >= overlap


def test_bad_tiling_arguments_are_refused():
    with pytest.raises(ValueError):
        tile_offsets(100, 0, 0)
    with pytest.raises(ValueError):
        tile_offsets(100, 64, 64)


def test_overlap_from_a_fraction():
    assert overlap_pixels(256, 0.125) == 32
    assert overlap_pixels(256, 0) == 0
    assert overlap_pixels(64, 5.0) == 63  # never a whole tile


def test_ramps_of_neighbours_sum_to_one_across_the_overlap():
    tile, overlap = 64, 16
    ramp = ramp_1d(tile, overlap)
    assert ramp.min() > 0 and ramp.max() == 1.0
    # The right edge of one tile meets the left edge of the next over ``overlap`` pixels.
    np.testing.assert_allclose(ramp[tile - overlap:] + ramp[:overlap], 1.0, atol=1e-6)
    window = blend_window(tile, overlap)
    np.testing.assert_allclose(window, np.outer(ramp, ramp))
    assert window.shape == (tile, tile) and window.dtype == np.float32


def _brute_force(grid, probs_for, valid_for, class_ids):
    """Blend every tile into whole-area arrays at once: the reference the strip blender must equal."""
    k = len(class_ids)
    acc = np.zeros((k, grid.height, grid.width))
    weight = np.zeros((grid.height, grid.width))
    valid = np.zeros((grid.height, grid.width), bool)
    for tile in grid:
        probs, ok = probs_for(tile), valid_for(tile)
        if probs is None:
            continue
        rows, cols = tile.rows, tile.cols
        height, width = probs.shape[1:]
        window = np.outer(ramp_1d(height, min(grid.overlap, height - 1)),
                          ramp_1d(width, min(grid.overlap, width - 1))).astype(np.float64)
        acc[:, tile.row:tile.row + rows, tile.col:tile.col + cols] += probs[:, :rows, :cols] * window[:rows, :cols]
        weight[tile.row:tile.row + rows, tile.col:tile.col + cols] += window[:rows, :cols]
        valid[tile.row:tile.row + rows, tile.col:tile.col + cols] |= ok[:rows, :cols]
    labels = np.asarray(class_ids, np.uint8)[acc.argmax(axis=0)]
    labels[~valid] = 0
    with np.errstate(invalid="ignore"):
        confidence = np.clip(np.rint(100 * acc.max(axis=0) / weight), 1, 100)
    confidence[~valid] = 0
    return labels, confidence.astype(np.uint8)


@pytest.mark.parametrize("height,width,tile,overlap,step", [(300, 270, 64, 16, None), (50, 300, 64, 8, None),
                                                             (130, 129, 32, 0, None), (300, 270, 64, 16, 16),
                                                             (260, 333, 128, 24, 32)])
def test_strip_blender_equals_whole_area_blending(height, width, tile, overlap, step):
    """With a ``step``, the last tiles of each row and column are smaller: each is weighed by its own window."""
    rng = np.random.default_rng(height)
    class_ids = [3, 7, 9, 12]
    grid = TileGrid(height, width, tile, overlap, step=step)
    assert (step is None) == all((t.height, t.width) == (tile, tile) for t in grid)
    # A smooth "truth" plus per-tile noise, so tiles disagree near their edges as a real net does.
    truth = rng.random((len(class_ids), height // 8 + 2, width // 8 + 2)).repeat(8, 1).repeat(8, 2)
    per_tile = {}
    skipped = {t.index for t in grid if (t.index * 7) % 5 == 0}  # some tiles are "all nodata"
    for t in grid:
        if t.index in skipped:
            continue
        p = np.zeros((len(class_ids), t.height, t.width), np.float32)
        p[:, :t.rows, :t.cols] = truth[:, t.row:t.row + t.rows, t.col:t.col + t.cols]
        p += rng.random(p.shape).astype(np.float32) * 0.3
        p /= p.sum(axis=0, keepdims=True)
        ok = rng.random((t.height, t.width)) > 0.02
        per_tile[t.index] = (p, ok)
    expected_labels, expected_conf = _brute_force(
        grid, lambda t: per_tile.get(t.index, (None, None))[0].copy() if t.index in per_tile else None,
        lambda t: per_tile.get(t.index, (None, None))[1], class_ids)

    out_labels, out_conf = [], []
    blender = StripBlender(grid, class_ids, lambda lab, conf: (out_labels.append(lab.copy()),
                                                                out_conf.append(conf.copy())), confidence=True)
    for t in grid:
        if t.index in per_tile:
            p, ok = per_tile[t.index]
            blender.add(t, p.copy(), ok)
    blender.finish()
    labels, conf = np.concatenate(out_labels), np.concatenate(out_conf)
    assert labels.shape == (height, width)
    np.testing.assert_array_equal(labels, expected_labels)
    assert np.abs(conf.astype(int) - expected_conf).max() <= 1  # float32 vs float64 rounding
    assert blender.acc.shape[1] <= tile  # memory: one tile high, whatever the height
    # Without confidence no weights are summed (argmax needs none): the same labels.
    plain = []
    blender = StripBlender(grid, class_ids, lambda lab, conf: plain.append(lab.copy()))
    for t in grid:
        if t.index in per_tile:
            blender.add(t, per_tile[t.index][0].copy(), per_tile[t.index][1])
    blender.finish()
    np.testing.assert_array_equal(np.concatenate(plain), expected_labels)
    # The classifier adds a batch at a time (the window weighs the whole batch in one pass): the same bits.
    batched_labels, batched_conf = [], []
    blender = StripBlender(grid, class_ids, lambda lab, conf: (batched_labels.append(lab.copy()),
                                                                batched_conf.append(conf.copy())), confidence=True)
    tiles = [t for t in grid if t.index in per_tile]
    batches = []  # up to 3 tiles of one size a batch, as the reader makes them
    for t in tiles:
        if batches and len(batches[-1]) < 3 and (batches[-1][0].height, batches[-1][0].width) == (t.height, t.width):
            batches[-1].append(t)
        else:
            batches.append([t])
    for batch in batches:
        blender.add_batch(batch, np.stack([per_tile[t.index][0] for t in batch]),
                          np.stack([per_tile[t.index][1] for t in batch]))
    blender.finish()
    np.testing.assert_array_equal(np.concatenate(batched_labels), labels)
    np.testing.assert_array_equal(np.concatenate(batched_conf), conf)


def test_rows_only_skipped_tiles_covered_come_out_as_nodata():
    grid = TileGrid(200, 40, 32, 8)
    rows = []
    blender = StripBlender(grid, [1, 2], lambda lab, conf: rows.append(lab))
    for t in grid:
        if t.row >= 150:  # everything above row 150 is "all nodata": never run
            p = np.zeros((2, 32, 32), np.float32)
            p[1] = 1.0
            blender.add(t, p, np.ones((32, 32), bool))
    blender.finish()
    labels = np.concatenate(rows)
    assert labels.shape == (200, 40)
    first_run_row = min(t.row for t in grid if t.row >= 150)
    assert (labels[:first_run_row] == 0).all()
    assert (labels[first_run_row:] == 2).all()


@pytest.mark.parametrize("row,col", [(40, 40), (60, 20), (190, 100)])  # inside one tile; under two; the last rows
def test_non_finite_probabilities_are_reported_where_they_are(row, col):
    grid = TileGrid(200, 200, 64, 16)
    blender = StripBlender(grid, [1, 2], lambda lab, conf: None)
    with pytest.raises(NonFiniteProbabilities) as caught:
        for t in grid:
            p = np.full((2, 64, 64), 0.5, np.float32)
            if t.row <= row < t.row + 64 and t.col <= col < t.col + 64:
                p[1, row - t.row, col - t.col] = np.nan
            blender.add(t, p, np.ones((64, 64), bool))
        blender.finish()
    assert (caught.value.row, caught.value.col) == (row, col)


def test_a_last_tile_row_shifted_far_inward_keeps_the_rows_it_shares():
    grid = TileGrid(520, 40, 512, 64)  # the last tile row starts 8 rows below the first: 504 rows shared
    rng = np.random.default_rng(3)
    probs = {t.index: rng.random((3, 512, 512)).astype(np.float32) for t in grid}
    rows = []
    blender = StripBlender(grid, [1, 2, 3], lambda lab, conf: rows.append(lab.copy()))
    for t in grid:
        blender.add(t, probs[t.index].copy(), np.ones((512, 512), bool))
    blender.finish()
    expected, _ = _brute_force(grid, lambda t: probs[t.index], lambda t: np.ones((512, 512), bool), [1, 2, 3])
    np.testing.assert_array_equal(np.concatenate(rows), expected)
