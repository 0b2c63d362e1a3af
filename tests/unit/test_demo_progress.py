"""make demo shows each step's progress while it runs (issue 12 #14): qgis_process's log is streamed as it
comes, not after the step, and its results are still read."""
import subprocess
import sys
import time

from scripts.demo import stream_run

FAKE_QGIS_PROCESS = r"""
import sys, time
out = sys.stdout
out.write("\n----------------\nInputs\n----------------\n\nDATASET:\t/tmp/chips\nEPOCHS:\t3\n\n\n")
out.write("Engine Python: /venv/bin/python (from the LANDCOVER_PYTHON environment variable)\n")
for epoch in (1, 2):
    out.write(f"Epoch {epoch}: train_loss=0.5000, val_miou=0.4{epoch}00\n")
    out.flush()
    time.sleep(0.6)
for step in range(0, 110, 10):
    out.write(f"{step}..." if step < 100 else "100 - done.\n")
    out.flush()
out.write("\n----------------\nResults\n----------------\n\nBEST_VAL_MIOU:\t0.42\nEPOCHS_RUN:\t2\n"
          "OUTPUT:\t/tmp/model.onnx\n")
"""


def test_log_lines_are_shown_as_they_come_and_results_are_read():
    proc = subprocess.Popen([sys.executable, "-c", FAKE_QGIS_PROCESS], stdout=subprocess.PIPE, text=True)
    started, shown = time.monotonic(), []

    def show(text="", end="\n", flush=False):
        shown.append((time.monotonic() - started, text + end))

    with proc.stdout:
        results = stream_run(proc.stdout, show)
    proc.wait()
    assert results == {"BEST_VAL_MIOU": 0.42, "EPOCHS_RUN": 2, "OUTPUT": "/tmp/model.onnx"}
    text = "".join(t for _, t in shown)
    assert "   Epoch 1: train_loss=0.5000, val_miou=0.4100\n" in text and "Epoch 2:" in text
    assert "..." not in text and "done." not in text
    assert "Engine Python" not in text and "DATASET" not in text and "BEST_VAL_MIOU" not in text
    first_epoch = next(t for t, line in shown if "Epoch 1" in line)
    assert first_epoch < 1.0 < time.monotonic() - started  # shown while the step still ran
