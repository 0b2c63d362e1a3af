"""onnxruntime's optimised graphs kept per machine: used when the model is the same, never when it changed, and a
damaged file or an unwritable folder only costs the optimisation."""
import os

import numpy as np
import onnxruntime as ort
import pytest
import rasterio
from classify_models import export, tiny_net
from rasterio.windows import Window

from landcover_plugin.core.model import optimised_graphs
from landcover_plugin.core.model.session import load_model

LEVEL = ort.GraphOptimizationLevel


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(optimised_graphs.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def zion_tiles(shared_data):
    """Two standardised 64 px tiles of the real Zion image."""
    with rasterio.open(shared_data / "zion" / "landsat8_2015_b2345.tif") as src:
        data = src.read(window=Window(300, 400, 128, 64)).astype(np.float32)
    data = (data - data.mean(axis=(1, 2), keepdims=True)) / data.std(axis=(1, 2), keepdims=True)
    return np.stack([data[:, :, :64], data[:, :, 64:]])


def model_file(folder, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    return export(tiny_net(4, 5, seed=seed), folder / "model.onnx", 4, 64)


def plain_run(path, tiles):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: tiles})[0]


def kept(cache):
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_a_model_is_optimised_once_and_loaded_optimised_after(cache, tmp_path, zion_tiles):
    path = model_file(tmp_path / "m")
    first = load_model(path, device="cpu")
    assert len(kept(cache)) == 1 and kept(cache)[0].endswith(".onnx")  # written whole, no part left
    second = load_model(path, device="cpu")
    assert second.session.get_session_options().graph_optimization_level == LEVEL.ORT_DISABLE_ALL  # from the file
    assert first.session.get_session_options().graph_optimization_level == LEVEL.ORT_ENABLE_ALL
    expected = plain_run(path, zion_tiles)
    np.testing.assert_array_equal(first.run(zion_tiles), expected)
    np.testing.assert_array_equal(second.run(zion_tiles), expected)
    assert second.card == first.card and second.classes == first.classes  # the metadata came along


def test_a_changed_model_is_optimised_again_not_taken_from_the_old_graph(cache, tmp_path, zion_tiles):
    path = model_file(tmp_path / "m", seed=0)
    load_model(path, device="cpu")
    before = kept(cache)
    os.replace(model_file(tmp_path / "other", seed=1), path)  # new weights under the same name
    model = load_model(path, device="cpu")
    np.testing.assert_array_equal(model.run(zion_tiles), plain_run(path, zion_tiles))
    assert len(kept(cache)) == 1 and kept(cache) != before  # the old version's graph went


def test_a_damaged_graph_is_optimised_again_and_replaced(cache, tmp_path, zion_tiles):
    path = model_file(tmp_path / "m")
    load_model(path, device="cpu")
    damaged = cache / kept(cache)[0]
    damaged.write_bytes(b"not an onnx graph")
    model = load_model(path, device="cpu")
    np.testing.assert_array_equal(model.run(zion_tiles), plain_run(path, zion_tiles))
    assert damaged.stat().st_size > 1000  # optimised again and kept


def test_off_or_an_unwritable_folder_only_costs_the_optimisation(tmp_path, monkeypatch, zion_tiles):
    path = model_file(tmp_path / "m")
    monkeypatch.setenv(optimised_graphs.CACHE_ENV, "off")
    model = load_model(path, device="cpu")
    assert model.session.get_session_options().graph_optimization_level == LEVEL.ORT_ENABLE_ALL
    blocked = tmp_path / "a file, not a folder"
    blocked.write_text("")
    monkeypatch.setenv(optimised_graphs.CACHE_ENV, str(blocked / "cache"))
    model = load_model(path, device="cpu")
    np.testing.assert_array_equal(model.run(zion_tiles), plain_run(path, zion_tiles))


def test_the_least_recently_used_graphs_go(cache, tmp_path, monkeypatch):
    monkeypatch.setattr(optimised_graphs, "MAX_FILES", 2)
    paths = [model_file(tmp_path / f"m{i}", seed=i) for i in range(3)]
    load_model(paths[0], device="cpu")
    load_model(paths[1], device="cpu")
    first = set(kept(cache))
    os.utime(cache / sorted(first)[0], (1, 1))  # one of the two long unused
    load_model(paths[2], device="cpu")
    assert len(kept(cache)) == 2 and sorted(first)[0] not in kept(cache)


def test_a_broken_model_is_still_refused_and_leaves_nothing(cache, tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07garbage")
    with pytest.raises(Exception, match="not a usable ONNX model"):
        load_model(str(path), device="cpu")
    assert kept(cache) == []


def test_a_graph_that_cannot_be_saved_still_loads_the_model(cache, tmp_path, zion_tiles):
    path = model_file(tmp_path / "m")
    key = optimised_graphs.cache_key(path)
    (cache / f"{key}.onnx.{os.getpid()}.part").mkdir(parents=True)  # onnxruntime cannot write its graph there
    model = load_model(path, device="cpu")
    np.testing.assert_array_equal(model.run(zion_tiles), plain_run(path, zion_tiles))
    assert not (cache / f"{key}.onnx").exists()
