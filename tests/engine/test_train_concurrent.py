"""Two trainings into one model at once: the second fails at once, before training, and names the first.

They shared the model's checkpoints folder: each wrote last.pt and best.pt over the other's, and one could resume
from or export the other's weights. The lock ends with its process: after a run is killed (SIGKILL: no clean-up),
the next run into the same model, resuming from the killed run's checkpoint, is not blocked."""
import json
import signal
import subprocess

import torch
from engine_runs import command, of_type

from training.run_lock import FOLDER_LOCK, model_lock

TINY = ["--batch-size", "4", "--base-width", "8", "--device", "cpu", "--no-refit", "--cv-folds", "1",
        "--patience", "0"]


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, [json.loads(line) for line in out.splitlines() if line.strip()], err


def test_a_second_run_into_the_same_model_or_checkpoints_fails_at_once(chips, tmp_path, engine_python, repo_root):
    out = tmp_path / "m.onnx"
    first = subprocess.Popen(command(engine_python, chips, "--output", out, "--epochs", "500", *TINY), cwd=repo_root,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in first.stdout:  # the first run is training: its first epoch is in its checkpoints
            if json.loads(line)["event"] == "metric":
                break
        seconds = [subprocess.Popen(command(engine_python, chips, *args, "--epochs", "1", *TINY), cwd=repo_root,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for args in (("--output", out), ("--output", tmp_path / "other.onnx", "--work-dir",
                                                    tmp_path / "m_checkpoints"))]
        same_model, other_model = [finish(proc) for proc in seconds]
        assert first.poll() is None  # still training
        for (code, events, stderr), what in ((same_model, f"the model '{out}'"),
                                             (other_model, f"the checkpoints folder '{tmp_path / 'm_checkpoints'}'")):
            assert code == 2, stderr[-2000:]
            assert not of_type(events, "metric") and not of_type(events, "result")
            message = events[-1]["message"]
            assert f"Another training run (process {first.pid}, started " in message and what in message
            assert "nothing was trained" in message
        assert not (tmp_path / "other.onnx").exists() and not out.exists()
    finally:
        first.send_signal(signal.SIGKILL)  # killed: no clean-up runs, its lock files stay behind
        first.wait(timeout=60)
    assert (tmp_path / "m_checkpoints" / FOLDER_LOCK).exists() and model_lock(out).exists()
    # the next run into that model resumes from the killed run's checkpoint: its stale lock blocks nothing
    done = torch.load(tmp_path / "m_checkpoints" / "last.pt", weights_only=True)["epoch"]
    code, events, stderr = finish(subprocess.Popen(
        command(engine_python, chips, "--output", out, "--epochs", done + 1, "--resume", tmp_path / "m_checkpoints",
                *TINY), cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    assert code == 0, stderr[-2000:]
    assert [m["epoch"] for m in of_type(events, "metric")] == [done + 1] and out.is_file()
    assert not (tmp_path / "m_checkpoints" / FOLDER_LOCK).exists() and not model_lock(out).exists()
