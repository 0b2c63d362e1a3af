""""Train segmentation model" with Training processes = 2 in headless QGIS: the toolbox's Cancel (SIGTERM to the
engine) reaches both torch.distributed processes, and the best model so far is still written."""
import numpy as np
import onnxruntime as ort
from test_train_model import TINY, CancelAfterEpoch, run


def test_two_training_processes_cancel_from_the_toolbox(provider, chips, tmp_path):
    out = tmp_path / "model.onnx"
    results, ok, log = run(dict(TINY, EPOCHS=500, DATASET=str(chips), OUTPUT=str(out), REFIT=False, NPROC=2),
                           CancelAfterEpoch(1))
    assert results.get("CANCELLED") is True, log
    assert "Distributed training: 2 processes (gloo, CPU)" in log and "stop at their next batch" in log
    assert log.lower().count("epoch 1:") == 1  # rank 0 alone reports
    assert out.is_file() and results["BEST_EPOCH"] >= 1
    probs = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"input": np.zeros((1, 7, 32, 32), np.float32)})[0]
    assert probs.shape == (1, 4, 32, 32)
