"""Models that take any height and width run bigger tiles than their training tile when asked (tile size 0: the
automatic choice): fewer overlap pixels and model calls, the same map for a net with a small receptive field
(trained here on the real Zion data; the reference is torch on the whole raster)."""
import sys

import numpy as np
import onnx
import pytest
import rasterio
import torch
from classify_models import card_for, torch_probabilities, train_on_zion

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.classify.tile_size import choose_tile, computed_pixels
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import metadata_props
from landcover_plugin.core.model.session import load_model

TILE = 64


def export_dynamic(net, path, bands, tile, props):
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(net, torch.zeros(1, bands, tile, tile), str(path), input_names=["image"],
                      output_names=["probabilities"], dynamic_axes={"image": axes, "probabilities": axes},
                      dynamo=False)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, props)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def zion(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dynamic")
    net, names, mean, std = train_on_zion(shared_data / "zion")
    card = card_for(names, mean=mean, std=std, tile=TILE, input_dtype="uint16", resolution=[30.0, 30.0],
                    crs="EPSG:32612", nodata=65535, overlap=0.25)
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    model = export_dynamic(net, folder / "dynamic.onnx", 4, TILE, metadata_props(card))
    runs = {}
    for name, tile in (("model tile", None), ("auto", 0)):
        events = RecordingEvents()
        result = classify_raster(ClassifyOptions(image, model, folder / f"{name}.tif", tile_size=tile,
                                                 device="cpu"), events)
        with rasterio.open(result["OUTPUT"]) as src:
            runs[name] = {"result": result, "labels": src.read(1), "events": events}
    reference = torch_probabilities(net, image, mean, std).argmax(axis=0) + 1
    return {"model": model, "image": image, "runs": runs, "reference": reference, "folder": folder}


def test_a_dynamic_model_loads_with_its_card_tile_and_no_assumption(zion):
    events = RecordingEvents()
    model = load_model(zion["model"], device="cpu", events=events)
    assert model.dynamic_size and model.tile == TILE and model.assumptions == []


def test_the_automatic_tile_is_bigger_with_the_same_overlap_in_pixels_and_fewer_calls(zion):
    small, big = zion["runs"]["model tile"]["result"], zion["runs"]["auto"]["result"]
    assert small["TILE"] == TILE and big["TILE"] > TILE and big["TILE"] % TILE == 0
    assert big["OVERLAP"] == small["OVERLAP"] == 16
    assert big["tiles"] * 10 < small["tiles"]
    assert big["BATCH_SIZE"] >= 1 and big["BATCH_SIZE"] * big["TILE"] ** 2 <= max(4 * TILE ** 2, big["TILE"] ** 2)
    height, width = zion["reference"].shape
    assert computed_pixels(height, width, big["TILE"], 16, TILE) < 0.8 * computed_pixels(height, width, TILE, 16)


def test_big_tiles_give_the_map_of_the_model_tile_and_of_torch(zion):
    small, big = zion["runs"]["model tile"]["labels"], zion["runs"]["auto"]["labels"]
    assert (small == big).mean() >= 0.99
    assert (big == zion["reference"]).mean() >= 0.99


def test_a_tile_that_is_not_a_multiple_of_the_model_tile_is_refused(zion):
    with pytest.raises(BadInputError, match="multiple of that"):
        classify_raster(ClassifyOptions(zion["image"], zion["model"], zion["folder"] / "bad.tif", tile_size=100))


def test_a_fixed_size_model_runs_its_own_tile_and_says_so(model, zion_image, tmp_path):
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(zion_image, model, tmp_path / "fixed.tif", tile_size=256), events)
    assert result["TILE"] == 64
    assert any("takes only 64 px tiles" in e["message"] for e in events.of_type("log"))


def test_the_automatic_choice_never_exceeds_the_area_it_covers_and_is_asked_for(zion):
    model = load_model(zion["model"], device="cpu")
    assert choose_tile(model, 100, 90, 0, 4, 0.25)[0] == 128  # 2x2 tiles of 64 would compute more
    assert choose_tile(model, 40, 40, 0, 4, 0.25) == (64, 4, 16)
    assert choose_tile(model, 20000, 20000, None, 4, 0.25) == (64, 4, 16)  # not asked: the model's own
    tile, batch, overlap = choose_tile(model, 20000, 20000, 0, 4, 0.25)
    assert tile == 512 and batch == 1 and overlap == 16
    assert choose_tile(model, 20000, 20000, 128, 8, 0.25) == (128, 2, 16)


def test_the_automatic_tile_keeps_the_blending_strip_within_its_budget():
    """A very wide raster with many classes: a tile whose strip would exceed the budget is not chosen; the model's
    own tile always stays possible."""
    from types import SimpleNamespace

    from landcover_plugin.core.classify.tile_size import STRIP_BUDGET_MB, strip_bytes
    model = SimpleNamespace(tile=64, dynamic_size=True, fixed_batch=None, classes=[{"id": i} for i in range(20)],
                            card={"tile_agreement": {"tile": 512, "agreement": {"512": 0.999}}})
    narrow = choose_tile(model, 20000, 4000, None, 4, 0.25)[0]  # the strip is small: the fewest pixels decide
    assert narrow > 256 and narrow == choose_tile(model, 20000, 4000, 0, 4, 0.25)[0]
    width = 20000
    tile = choose_tile(model, 20000, width, None, 4, 0.25)[0]
    assert strip_bytes(tile, width, 20) <= STRIP_BUDGET_MB * 2 ** 20 < strip_bytes(512, width, 20)
    assert tile > 64
    assert choose_tile(model, 20000, 400_000, None, 4, 0.25)[0] == 64  # even 64 px exceeds it: the model's own


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the resident memory from /proc")
def test_a_dynamic_model_gives_back_its_run_memory_and_still_runs(zion):
    """After a big tile the session's arena holds what the run needed; once its output is let go of,
    give_back_memory returns most of it to the system (the classifier does so beside the last rows' writing,
    without the GIL) and the model runs on, with the same results."""
    model = load_model(zion["model"], device="cpu")
    tile = np.zeros((1, 4, 2048, 2048), np.float32)  # 16 channels x 4 Mpx: 256 MB an activation
    first = model.run(tile[:, :, :64, :64]).copy()
    before = _rss_mb()
    model.run(tile)
    grown = _rss_mb() - before
    assert grown > 300
    assert model.give_back_memory()
    assert _rss_mb() - before < grown / 2
    assert np.array_equal(model.run(tile[:, :, :64, :64]), first)


def test_a_fixed_size_model_keeps_its_memory_until_closed(model):
    loaded = load_model(model, device="cpu")
    assert loaded.run(np.zeros((1, loaded.bands, 64, 64), np.float32)).shape[2:] == (64, 64)
    assert not loaded.give_back_memory()  # a run of a whole tile would cost more than it saves
    loaded.close()
    assert not loaded.give_back_memory()
