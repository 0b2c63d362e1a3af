"""Probe findings on the trainer (issue 12): a resume onto another class schema, and a diverged run."""
import json
import shutil

import pytest

from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.train.options import TrainConfig
from training import checkpoint
from training.loop import train

TINY = {"batch_size": 4, "base_width": 8, "learning_rate": 3e-3, "patience": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def first_run(chips, tmp_path_factory):
    out = tmp_path_factory.mktemp("first")
    return train(TrainConfig(dataset_dir=str(chips), output=str(out / "a.onnx"), epochs=1, **TINY))


def edited_copy(chips, tmp_path, edit):
    folder = tmp_path / "chips"
    shutil.copytree(chips, folder)
    meta = json.loads((folder / "dataset.json").read_text())
    edit(meta)
    (folder / "dataset.json").write_text(json.dumps(meta))
    return folder


def resume(folder, tmp_path, first_run, **settings):
    return train(TrainConfig(dataset_dir=str(folder), output=str(tmp_path / "b.onnx"), epochs=2,
                             resume=first_run["LAST_CHECKPOINT"], **dict(TINY, **settings)))


def test_resume_refuses_the_same_ids_with_other_names(chips, tmp_path, first_run):
    def rename(meta):
        meta["classes"][0]["name"] = "vineyard"
    folder = edited_copy(chips, tmp_path, rename)
    with pytest.raises(BadInputError, match="Cannot resume.*class names differ.*'vineyard'"):
        resume(folder, tmp_path, first_run)
    assert not (tmp_path / "b.onnx").exists()


def test_resume_refuses_other_band_statistics(chips, tmp_path, first_run):
    def rescale(meta):
        meta["mean"] = [m / 255.0 for m in meta["mean"]]
    folder = edited_copy(chips, tmp_path, rescale)
    with pytest.raises(BadInputError, match="Cannot resume.*band mean differs"):
        resume(folder, tmp_path, first_run)


def test_initial_weights_from_another_schema_are_still_allowed(chips, tmp_path, first_run):
    def rename(meta):
        meta["classes"][0]["name"] = "vineyard"
    folder = edited_copy(chips, tmp_path, rename)
    events = RecordingEvents()
    events.cancel_requested = True  # only the start matters here
    out = train(TrainConfig(dataset_dir=str(folder), output=str(tmp_path / "c.onnx"), epochs=1,
                            initial_weights=first_run["CHECKPOINT"], **TINY), events)
    assert any("Initial weights: loaded" in e["message"] for e in events.of_type("log"))
    assert out["OUTPUT"]


def test_a_diverging_run_stops_with_the_fix_and_keeps_the_last_good_checkpoint(chips, tmp_path, first_run):
    work = tmp_path / "work"
    shutil.copytree(first_run["LAST_CHECKPOINT"].rsplit("/", 1)[0], work)
    with pytest.raises(BadInputError, match="diverged.*Lower the learning rate") as info:
        train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), epochs=3, work_dir=str(work),
                          resume=str(work / checkpoint.LAST), **dict(TINY, learning_rate=1e10)))
    assert "last good checkpoint (epoch 1)" in info.value.message
    assert checkpoint.load(work / checkpoint.LAST)["epoch"] == 1  # untouched by the diverged epochs
    assert not (tmp_path / "m.onnx").exists()


def test_a_fresh_run_at_an_absurd_learning_rate_says_lower_it(chips, tmp_path):
    with pytest.raises(BadInputError, match="Lower the learning rate"):
        train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), epochs=3,
                          **dict(TINY, learning_rate=1e10)))
    assert not (tmp_path / "m.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nor an empty checkpoints folder, nor a lock file
