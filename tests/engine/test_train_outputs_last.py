"""The end of a training run is all or nothing: the model file appears last, once what goes with it is written.

* A run that dies after the model's export (killed: the QGIS side kills the engine when its wait after a cancel runs
  out) left a finished-looking model without its curves and, with polygons, without the held-out estimate it was
  being rewritten with.
"""
import json
import subprocess
import sys

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

