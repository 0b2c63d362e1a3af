"""``train --nproc 2``: the same trainer on two gloo processes under torchrun, on the rstoolbox chips.

It converges like one process with the same seed and epochs; its validation scores are those of one process
evaluating the same weights on every validation chip; rank 0 alone writes (one set of events, checkpoints and
curves); the model it exports classifies; cancel stops both processes and still exports, and the run resumes on
two processes; a bad process count is a clear error before anything starts.
"""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from engine_runs import cancelled_run, command, of_type
from torch.utils.data import DataLoader

from landcover_plugin.core.chips.dataset import load_spec
from training import checkpoint as ckpt
from training.dataset import IGNORE, ChipDataset, ChipStore
from training.networks import build_network
from training.objective import class_weights, evaluate

EPOCHS = 6
TINY = ["--epochs", EPOCHS, "--batch-size", "4", "--base-width", "8", "--learning-rate", "0.003", "--device", "cpu",
        "--no-refit", "--seed", "0"]


def run(engine_python, repo_root, *args):
    proc = subprocess.run(command(engine_python, *args), cwd=repo_root, capture_output=True, text=True, timeout=300)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line.strip()], proc.stderr


def logs(events, text):
    return [e for e in of_type(events, "log") if text in e["message"]]


@pytest.fixture(scope="module")
def runs(chips, tmp_path_factory, engine_python, repo_root):
    """The same training on one process and on two."""
    done = {}
    for n in (1, 2):
        out = tmp_path_factory.mktemp(f"nproc{n}") / "model.onnx"
        code, events, stderr = run(engine_python, repo_root, chips, "--output", out, *TINY, "--nproc", n)
        assert code == 0, stderr[-3000:]
        done[n] = {"out": out, "events": events, "outputs": of_type(events, "result")[0]["outputs"],
                   "metrics": [m["values"] for m in of_type(events, "metric")]}
    return done


def test_two_processes_converge_like_one(runs):
    one, two = runs[1]["metrics"], runs[2]["metrics"]
    assert len(one) == len(two) == EPOCHS
    for metrics in (one, two):
        assert metrics[-1]["train_loss"] < 0.5 * metrics[0]["train_loss"]
        assert max(m["val_miou"] for m in metrics) >= metrics[0]["val_miou"] + 0.2
    assert abs(two[-1]["train_loss"] - one[-1]["train_loss"]) < 0.3
    assert abs(runs[2]["outputs"]["BEST_VAL_MIOU"] - runs[1]["outputs"]["BEST_VAL_MIOU"]) <= 0.1
    assert runs[2]["outputs"]["nproc"] == 2
    assert logs(runs[2]["events"], "Distributed training: 2 processes (gloo, CPU)")


def test_rank_0_alone_reports_and_writes(runs):
    events, outputs = runs[2]["events"], runs[2]["outputs"]
    assert len(of_type(events, "result")) == 1 and not of_type(events, "error")
    assert [m["epoch"] for m in of_type(events, "metric")] == list(range(1, EPOCHS + 1))
    assert len(logs(events, "Training on CPU")) == 1 and len(logs(events, "Wrote the ONNX model")) == 1
    folder = Path(outputs["CHECKPOINT"]).parent
    assert sorted(p.name for p in folder.iterdir()) == ["best.pt", "last.pt"]
    assert len(Path(outputs["CURVES_CSV"]).read_text().strip().splitlines()) == EPOCHS + 1  # header + epochs
    assert ckpt.load(outputs["LAST_CHECKPOINT"])["epoch"] == EPOCHS


def test_validation_on_two_processes_scores_like_one_process(runs, chips):
    """Each rank scores its share of the validation chips and the sums are added: the best epoch's confusion
    matrix equals one process evaluating those weights on every validation chip."""
    best = torch.load(runs[2]["outputs"]["CHECKPOINT"], map_location="cpu", weights_only=True)
    net = best["network"]
    model = build_network(net["architecture"], net["in_channels"], net["num_classes"], net["base_width"])
    model.load_state_dict(best["model"])
    spec = load_spec(chips)
    store = ChipStore(spec)
    train_idx = [i for i, c in enumerate(spec.chips) if c.split == "train"]
    val_idx = [i for i, c in enumerate(spec.chips) if c.split == "val"]
    pixel_weight = torch.zeros(256)
    pixel_weight[:len(spec.schema)] = torch.as_tensor(class_weights(store.class_pixel_counts(train_idx)),
                                                      dtype=torch.float32)
    scores = evaluate(model, DataLoader(ChipDataset(store, val_idx), batch_size=5), pixel_weight, spec.schema.names,
                      torch.device("cpu"))
    assert scores["confusion"] == best["best"]["val_confusion"]
    assert sum(map(sum, scores["confusion"])) == int((store.labels[val_idx] != IGNORE).sum())
    assert scores["loss"] == pytest.approx(best["best"]["val_loss"], rel=1e-4)


def test_the_model_of_two_processes_classifies(runs, chips):
    session = ort.InferenceSession(str(runs[2]["out"]), providers=["CPUExecutionProvider"])
    card = json.loads(session.get_modelmeta().custom_metadata_map["landcover_card"])
    assert card["training"]["processes"] == 2 and card["training"]["batch_size"] == 4
    spec = load_spec(chips)
    store = ChipStore(spec)
    val_idx = [i for i, c in enumerate(spec.chips) if c.split == "val"]
    images, labels = zip(*(store.sample(i) for i in val_idx))
    probs = session.run(None, {"input": np.stack(images)})[0]
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    labels = np.stack(labels)
    keep = labels != IGNORE
    accuracy = float((probs.argmax(axis=1)[keep] == labels[keep]).mean())
    assert accuracy == pytest.approx(runs[2]["outputs"]["BEST_VAL_ACCURACY"], abs=0.01) and accuracy > 0.6


def test_cancel_stops_every_process_exports_and_the_run_resumes(chips, tmp_path, engine_python, repo_root):
    out = tmp_path / "model.onnx"
    code, events, stderr = cancelled_run(engine_python, repo_root, chips, "--output", out, "--epochs", "500",
                                         "--batch-size", "4", "--base-width", "8", "--patience", "0", "--device",
                                         "cpu", "--no-refit", "--nproc", "2")
    assert code == 0, stderr[-3000:]
    (result,) = of_type(events, "result")
    outputs = result["outputs"]
    assert outputs["cancelled"] is True and 2 <= outputs["epochs_run"] < 500
    assert logs(events, "Cancelling: the 2 training processes stop")
    assert not _processes_mentioning(str(out))  # both ranks and torchrun are gone
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": np.zeros((2, 7, 32, 32), np.float32)})[0]
    assert probs.shape == (2, 4, 32, 32)

    done = outputs["epochs_run"]
    code, events, stderr = run(engine_python, repo_root, chips, "--output", out, "--epochs", done + 2,
                               "--batch-size", "4", "--base-width", "8", "--device", "cpu", "--no-refit",
                               "--nproc", "2", "--resume", outputs["LAST_CHECKPOINT"])
    assert code == 0, stderr[-3000:]
    assert [m["epoch"] for m in of_type(events, "metric")] == [done + 1, done + 2]
    assert logs(events, f"Resumed from '{outputs['LAST_CHECKPOINT']}' after epoch {done}")
    assert of_type(events, "result")[0]["outputs"]["epochs_run"] == done + 2


@pytest.mark.parametrize("nproc, words", [(0, "must be at least 1"), (os.cpu_count() + 1, "at most")])
def test_a_bad_process_count_is_a_clear_error(nproc, words, chips, tmp_path, engine_python, repo_root):
    out = tmp_path / "model.onnx"
    code, events, _ = run(engine_python, repo_root, chips, "--output", out, *TINY, "--nproc", nproc)
    assert code == 2
    (error,) = of_type(events, "error")
    assert error["kind"] == "bad_input" and "--nproc" in error["message"] and words in error["message"]
    assert not of_type(events, "metric") and not out.exists()


def _processes_mentioning(text: str) -> list:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(cmdline.parent.name)
        except OSError:
            pass
    return found
