"""Training into a folder that cannot be written fails before the first epoch, with the fix; a write that fails
at the end (a full disk: /dev/full) is a clear error naming the file, with no model left and the checkpoint to
export from named; and that checkpoint exports the model without training again."""
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.train.options import TrainConfig
from training.loop import train
from training.run_lock import FOLDER_LOCK

TINY = {"epochs": 1, "batch_size": 4, "base_width": 8, "device": "cpu", "refit": False, "cv_folds": 1}
FULL = Path("/dev/full")  # every write to it fails with 'No space left on device'


def fails_before_training(chips, out, match):
    events = RecordingEvents()
    with pytest.raises(BadInputError, match=match) as info:
        train(TrainConfig(dataset_dir=str(chips), output=str(out), **TINY), events)
    assert not events.of_type("metric") and not events.of_type("progress")  # nothing trained
    assert "Choose an output folder you can write to" in info.value.message and "nothing was trained" in \
        info.value.message
    return info.value.message


def test_a_model_folder_that_cannot_exist_fails_before_training(chips, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    message = fails_before_training(chips, blocker / "m.onnx", "model's folder")
    assert f"{blocker} is a file, not a folder" in message
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_a_read_only_model_folder_fails_before_training(chips, tmp_path):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        fails_before_training(chips, folder / "m.onnx", "Permission denied")
        assert not list(folder.iterdir())
    finally:
        folder.chmod(0o755)


def test_a_checkpoints_folder_that_cannot_be_made_fails_before_training(chips, tmp_path):
    (tmp_path / "m_checkpoints").write_text("in the way")  # where the checkpoints folder goes, beside the model
    fails_before_training(chips, tmp_path / "m.onnx", "checkpoints folder")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.skipif(not FULL.exists(), reason="no /dev/full")
def test_a_full_disk_at_the_end_is_a_clear_error_and_the_checkpoint_still_exports(chips, tmp_path):
    out = tmp_path / "m.onnx"
    partial = tmp_path / f".m.onnx.partial-{os.getpid()}.onnx"
    events = FillsTheDisk(partial)  # from the first epoch on, the model's temporary file cannot be written
    with pytest.raises(BadInputError, match="Cannot write the model") as info:
        train(TrainConfig(dataset_dir=str(chips), output=str(out), **TINY), events)
    last = tmp_path / "m_checkpoints" / "last.pt"
    assert "No space left on device" in info.value.message and str(last) in info.value.message
    assert [m["epoch"] for m in events.of_type("metric")] == [1]  # it failed after training, not before
    assert not out.exists() and not partial.exists()
    # the fix the message gives: resume from that checkpoint into a model file that can be written
    again = RecordingEvents()
    outputs = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "again.onnx"), resume=str(last),
                                **TINY), again)
    assert Path(outputs["OUTPUT"]).is_file() and not again.of_type("metric")


class FillsTheDisk(RecordingEvents):
    """Events that, at the first epoch's metrics, turn ``path`` into a file every write to fails (a run clears
    hidden half-files of its own before it trains: planted then, it would be removed)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def emit(self, event: dict) -> None:
        if event.get("event") == "metric" and not self.path.is_symlink():
            self.path.symlink_to(FULL)
        super().emit(event)


@pytest.mark.skipif(not FULL.exists(), reason="no /dev/full")
def test_a_full_disk_while_saving_a_checkpoint_is_a_clear_error(chips, tmp_path):
    checkpoints = tmp_path / "m_checkpoints"
    checkpoints.mkdir()
    (checkpoints / f".last.pt.partial-{os.getpid()}").symlink_to(FULL)
    with pytest.raises(BadInputError, match="Cannot write the checkpoint .*No space left on device"):
        train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "m.onnx"), **TINY))
    assert not (tmp_path / "m.onnx").exists() and not (checkpoints / "last.pt").exists()


def test_a_disk_that_fills_up_during_a_checkpoint_is_a_clear_error(chips, tmp_path, repo_root):
    """The engine under a 100 kB file-size limit: the checkpoint's first bytes are written, then a write fails
    (EFBIG, as ENOSPC when a disk fills up). torch's zip writer then raises a RuntimeError ('unexpected pos')
    over the OSError, which was reported as an internal error with a traceback."""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # stays ignored across exec: writes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    out = tmp_path / "m.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "landcover_plugin.core.engine", "train", str(chips), "--output", str(out),
         "--epochs", "1", "--batch-size", "4", "--base-width", "8", "--architecture", "unet", "--device", "cpu",
         "--no-refit", "--cv-folds", "1"], cwd=repo_root, capture_output=True, text=True, timeout=300,
        preexec_fn=limit_file_size)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "bad_input", events[-1]
    assert "Cannot write the checkpoint" in events[-1]["message"] and "File too large" in events[-1]["message"]
    assert not out.exists() and not (tmp_path / "m_checkpoints").exists()  # no half checkpoint, no empty folder


DIES_BEFORE_THE_MODEL_IS_IN_PLACE = """
import os, sys
real_replace = os.replace
def dying_replace(source, target, *args, **kwargs):
    if str(target).endswith("m.onnx"):  # the model's file is complete under its temporary name: killed now
        os._exit(9)
    return real_replace(source, target, *args, **kwargs)
os.replace = dying_replace
from landcover_plugin.core.engine import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_killed_while_the_model_is_exported_leaves_no_model_looking_file(chips, tmp_path, repo_root):
    """A run killed (out of memory, a kill -9) between writing the model under its temporary name and renaming
    it left 'm.partial.onnx' beside the model: an ONNX file that QGIS's model pickers list, never cleaned. The
    temporary names are hidden and carry the process id (two runs into one model no longer share them)."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", DIES_BEFORE_THE_MODEL_IS_IN_PLACE, "train", str(chips), "--output", str(out / "m.onnx"),
         "--epochs", "1", "--batch-size", "4", "--base-width", "8", "--device", "cpu", "--no-refit",
         "--cv-folds", "1"], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    # the model is renamed into place last, after its curves (tests/engine/test_train_outputs_last.py)
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["m_checkpoints", "m_curves.csv",
                                                                                   "m_curves.png"]
    # (the run's lock file may stay: hidden, and the lock itself ended with the process)
    assert not [p for p in (out / "m_checkpoints").iterdir() if not p.name.endswith(".pt") and p.name != FOLDER_LOCK]
