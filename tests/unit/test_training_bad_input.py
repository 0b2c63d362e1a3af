"""Bad input to the trainer ends with a clear BadInputError / OutOfMemoryError, and no model file."""
import json
import shutil

import numpy as np
import pytest
import rasterio
import torch

from landcover_plugin.core.errors import BadInputError, OutOfMemoryError
from landcover_plugin.core.train.options import TrainConfig
from training.device import memory_errors
from training.loop import train

TINY = {"epochs": 1, "batch_size": 4, "base_width": 8, "device": "cpu"}


def copy_of(chips, tmp_path):
    target = tmp_path / "chips"
    shutil.copytree(chips, target)
    return target


def fails(folder, tmp_path, match, **settings):
    out = tmp_path / "model.onnx"
    with pytest.raises(BadInputError, match=match) as info:
        train(TrainConfig(dataset_dir=str(folder), output=str(out), **dict(TINY, **settings)))
    assert not out.exists() and not list(tmp_path.glob("*.onnx"))
    return info.value.message


def test_missing_and_empty_folders(tmp_path):
    fails(tmp_path / "nowhere", tmp_path, "does not exist")
    (tmp_path / "empty").mkdir()
    message = fails(tmp_path / "empty", tmp_path, "dataset.json")
    assert "Export label chips" in message


def test_broken_dataset_json(chips, tmp_path):
    folder = copy_of(chips, tmp_path)
    (folder / "dataset.json").write_text('{"schema_version": 1, "classes": [')
    fails(folder, tmp_path, "JSON")
    meta = json.loads((chips / "dataset.json").read_text())
    del meta["mean"]
    (folder / "dataset.json").write_text(json.dumps(meta))
    fails(folder, tmp_path, "mean")
    meta = json.loads((chips / "dataset.json").read_text())
    del meta["chips"]
    (folder / "dataset.json").write_text(json.dumps(meta))
    fails(folder, tmp_path, "chips")


def test_no_chips_listed(chips, tmp_path):
    folder = copy_of(chips, tmp_path)
    meta = json.loads((folder / "dataset.json").read_text())
    meta["chips"] = []
    (folder / "dataset.json").write_text(json.dumps(meta))
    fails(folder, tmp_path, "holds no chips")


def test_a_missing_or_damaged_chip_file(chips, tmp_path):
    folder = copy_of(chips, tmp_path)
    image = sorted((folder / "images").glob("*.tif"))[3]
    image.unlink()
    message = fails(folder, tmp_path, "cannot be read")
    assert image.name in message and "export the chips again" in message
    image.write_bytes(b"not a tiff")
    fails(folder, tmp_path, "cannot be read")


def test_a_truncated_chip_file(chips, tmp_path):
    """A chip cut short (a copy or a disk that stopped half-way) opens but cannot be read: that was an internal
    error with a traceback ('RasterioIOError: Read or write failed ... IReadBlock failed')."""
    folder = copy_of(chips, tmp_path)
    image = sorted((folder / "images").glob("*.tif"))[0]
    image.write_bytes(image.read_bytes()[:300])
    message = fails(folder, tmp_path, "cannot be read")
    assert image.name in message and "export the chips again" in message


def test_a_chip_of_the_wrong_shape(chips, tmp_path):
    folder = copy_of(chips, tmp_path)
    image = sorted((folder / "images").glob("*.tif"))[0]
    with rasterio.open(image) as src:
        profile, data = src.profile, src.read()
    with rasterio.open(image, "w", **dict(profile, count=3)) as dst:
        dst.write(data[:3])
    fails(folder, tmp_path, "shape")


def test_classes_without_training_pixels(chips, tmp_path):
    folder = copy_of(chips, tmp_path)
    meta = json.loads((folder / "dataset.json").read_text())
    for chip in meta["chips"]:
        if chip["split"] == "train":
            path = folder / chip["label"]
            with rasterio.open(path, "r+") as dst:
                dst.write(np.zeros((1, 32, 32), np.uint8))
    message = fails(folder, tmp_path, "needs at least two")
    assert "0 class(es)" in message and "Digitise" in message
    # One class only (forest everywhere it was labelled) is no better.
    forest = next(c["id"] for c in meta["classes"] if c["name"] == "forest")
    for chip in meta["chips"]:
        if chip["split"] == "train":
            with rasterio.open(chips / chip["label"]) as src:
                label = src.read()
            with rasterio.open(folder / chip["label"], "r+") as dst:
                dst.write(np.where(label > 0, forest, 0).astype(np.uint8))
    assert "(forest)" in fails(folder, tmp_path, "1 class")


def test_bad_settings_name_the_setting(chips, tmp_path):
    fails(chips, tmp_path, r"epochs must be 0 \(automatic\) or more", epochs=-1)  # 0 is automatic
    fails(chips, tmp_path, "batch size", batch_size=0)
    fails(chips, tmp_path, "Unknown architecture", architecture="resnet9000")
    fails(chips, tmp_path, "does not exist", resume=str(tmp_path / "nothing.pt"))
    bad = tmp_path / "weights.pt"
    bad.write_text("not weights")
    message = fails(chips, tmp_path, "is not a PyTorch weights file", initial_weights=str(bad))
    assert "torch.save(model.state_dict(), path)" in message and "weights_only" not in message
    message = fails(chips, tmp_path, "The checkpoint .* is not a PyTorch weights file", resume=str(bad))
    assert "Choose a checkpoint written by this trainer" in message and "weights_only" not in message
    with pytest.raises(BadInputError, match=".onnx"):
        train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "model.tif"), **TINY))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when torch sees no GPU")
def test_cuda_asked_for_without_a_gpu(chips, tmp_path):
    message = fails(chips, tmp_path, "sees no CUDA GPU", device="cuda")
    assert "'auto' or 'cpu'" in message


def test_out_of_memory_becomes_a_clear_error():
    for error in (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                  RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
                  MemoryError()):
        device = torch.device("cuda" if isinstance(error, torch.cuda.OutOfMemoryError) else "cpu")
        with pytest.raises(OutOfMemoryError) as info:
            with memory_errors(device, 32, 256):
                raise error
        assert "smaller batch size (e.g. 16)" in info.value.message and "256x256" in info.value.message
    with pytest.raises(RuntimeError, match="shape mismatch"):  # other errors pass through untouched
        with memory_errors(torch.device("cpu"), 32, 256):
            raise RuntimeError("shape mismatch")
