"""The end of a training run is all or nothing: the model file appears last, once what goes with it is written.

* A run that dies after the model's export (killed: the QGIS side kills the engine when its wait after a cancel runs
  out) left a finished-looking model without its curves and, with polygons, without the held-out estimate it was
  being rewritten with.
* A SIGTERM (cancel) while the held-out run exported its model started the refit on all polygons only for it to stop
  before its first epoch, and its barely trained weights replaced the held-out run's model, under that model's
  held-out estimate.
"""
import json
import subprocess
import sys

import onnx
from engine_runs import cancelled_run, command, of_type

TINY = ["--epochs", "2", "--batch-size", "4", "--base-width", "8", "--device", "cpu", "--cv-folds", "1"]

DIES_WHILE_THE_CURVES_ARE_WRITTEN = """
import os, sys
import training.finish
def dying_curves(*args, **kwargs):  # the model is exported and checked: killed now, before the curves
    os._exit(9)
training.finish.write_curves = dying_curves
from landcover_plugin.core.engine import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_killed_after_the_export_leaves_no_model(chips, tmp_path, repo_root):
    out = tmp_path / "m.onnx"
    proc = subprocess.run([sys.executable, "-c", DIES_WHILE_THE_CURVES_ARE_WRITTEN, "train", str(chips), "--output",
                           str(out), "--no-refit", *TINY], cwd=repo_root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 9, proc.stderr[-2000:]
    assert any(json.loads(line).get("message", "").startswith("Exporting the weights")
               for line in proc.stdout.splitlines())
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["m_checkpoints"]


def test_a_cancel_while_the_held_out_run_exports_keeps_its_model(chips, tmp_path, engine_python, repo_root):
    out = tmp_path / "m.onnx"
    code, events, stderr = cancelled_run(  # SIGTERM at the held-out run's export
        engine_python, repo_root, chips, "--output", out, *TINY,
        when=lambda events: events[-1].get("message", "").startswith("Exporting the weights"))
    assert code == 0, stderr[-2000:]
    (result,) = of_type(events, "result")
    outputs = result["outputs"]
    assert outputs["CANCELLED"] is True and outputs["OUTPUT"] == str(out)
    warnings = [e["message"] for e in of_type(events, "log") if e["level"] == "warning"]
    assert not [w for w in warnings if w.startswith("No epoch finished")]
    assert any("the one trained without the held-out polygons" in w for w in warnings)
    card = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["landcover_card"])
    assert card["metrics"]["epochs_trained"] == 2 and card["metrics"]["best_epoch"] == outputs["BEST_EPOCH"]
    assert card["heldout"]["overall_accuracy"] == outputs["HELDOUT_OA"]
    assert (tmp_path / "m_curves.csv").is_file()


DIES_WHILE_THE_PLOT_IS_SAVED = """
import os, sys
import matplotlib.figure
def dying_savefig(self, fname, *args, **kwargs):  # half a PNG on disk, then killed
    with open(fname, "wb") as handle:
        handle.write(b"\\x89PNG half")
    os._exit(9)
matplotlib.figure.Figure.savefig = dying_savefig
from landcover_plugin.core.engine import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_run_killed_while_writing_its_curves_leaves_only_hidden_files_of_its_own(chips, tmp_path, engine_python,
                                                                                     repo_root):
    """The curves were written as '<model>_curves.csv.tmp' and '<model>_curves.tmp.png': a run killed there left a
    visible half PNG beside the model, and two runs into one model wrote the same temporary files. They are now
    hidden and carry the run's process id (as the model's and the checkpoints' do)."""
    out = tmp_path / "m.onnx"
    proc = subprocess.Popen([sys.executable, "-c", DIES_WHILE_THE_PLOT_IS_SAVED, "train", str(chips), "--output",
                             str(out), "--no-refit", *TINY], cwd=repo_root, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 9, stderr[-2000:]
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert visible == ["m_checkpoints", "m_curves.csv"]  # the CSV was finished; no model, no plot
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".") and p.name != ".m.onnx.lock")
    assert f".m_curves.png.partial-{proc.pid}.png" in hidden, hidden  # (the run lock: training/run_lock.py)
    assert all(f".partial-{proc.pid}" in name for name in hidden), hidden
    again = subprocess.run(command(engine_python, chips, "--output", out, "--no-refit", *TINY), cwd=repo_root,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    left = [p.name for p in tmp_path.iterdir() if f".partial-{proc.pid}" in p.name]
    assert not left, left  # the next run into the model clears what the killed one left


def test_a_finished_run_leaves_no_temporary_file(chips, tmp_path, engine_python, repo_root):
    out = tmp_path / "m.onnx"
    proc = subprocess.run(command(engine_python, chips, "--output", out, "--no-refit", *TINY), cwd=repo_root,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    everything = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m_checkpoints", "m_curves.csv",
                                                          "m_curves.png"], everything
    assert not [name for name in everything if "partial" in name or "tmp" in name], everything
