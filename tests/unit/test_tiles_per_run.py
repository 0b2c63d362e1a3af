"""How the classifier shares a batch between the model runs it makes at once."""
import pytest

from landcover_plugin.core.classify.run import SMALL_RUN_PIXELS, tiles_per_run


@pytest.mark.parametrize("batch,streams,tile,expected", [
    (4, 2, 256, 2),  # shared: the model holds 4 tiles at once, as one run of 4 did
    (16, 2, 256, 8),
    (1, 2, 512, 1),  # never less than a tile
    (4, 1, 256, 4),  # one run: the whole batch
    (4, 2, 64, 4),  # small tiles keep the whole batch: a run of 2 x 64 px pays per call
    (8, 2, 128, 4),  # shared down to SMALL_RUN_PIXELS, no further
])
def test_a_batch_is_shared_between_runs_down_to_a_small_run(batch, streams, tile, expected):
    per_run = tiles_per_run(batch, streams, tile)
    assert per_run == expected
    # The model never holds more pixels at once than the whole batch did, or than small runs do.
    assert streams * per_run * tile * tile <= max(batch * tile * tile, streams * SMALL_RUN_PIXELS) or per_run == 1


def test_a_fixed_batch_model_runs_its_batch():
    assert tiles_per_run(4, 2, 256, fixed_batch=3) == 3
