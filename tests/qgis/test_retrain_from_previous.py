"""The analyst's second iteration in a real headless QGIS on real rstoolbox chips: retraining from the previous
model never destroys it, and the previous model's .onnx given as initial weights points to its checkpoint."""
from algorithm_runs import run_algorithm

TINY = {"EPOCHS": 1, "BATCH_SIZE": 4, "BASE_WIDTH": 8, "PATIENCE": 0, "DEVICE": 1, "CV_FOLDS": 1}


def run(parameters):
    return run_algorithm("landcover:train_segmentation_model", parameters)


def test_retraining_into_the_previous_models_path_keeps_it_and_its_checkpoint(provider, chips, tmp_path):
    model = tmp_path / "model.onnx"
    first, ok, log = run(dict(TINY, DATASET=str(chips), OUTPUT=str(model)))
    assert ok, log
    checkpoint = first["CHECKPOINT"]
    assert checkpoint.startswith(str(tmp_path / "model_checkpoints"))
    before = {path: path.read_bytes() for path in (model, tmp_path / checkpoint)}

    results, ok, log = run(dict(TINY, DATASET=str(chips), OUTPUT=str(model), INITIAL_WEIGHTS=checkpoint))
    assert not ok
    assert "in the checkpoints folder this run writes" in log and "model_2.onnx" in log, log[-1500:]
    assert all(path.read_bytes() == data for path, data in before.items())  # iteration 1 is intact

    second = tmp_path / "model_2.onnx"
    results, ok, log = run(dict(TINY, DATASET=str(chips), OUTPUT=str(second), INITIAL_WEIGHTS=str(model)))
    assert not ok and not second.exists()
    assert "are an ONNX model" in log and f"give its checkpoint '{checkpoint}'" in log, log[-1500:]

    results, ok, log = run(dict(TINY, DATASET=str(chips), OUTPUT=str(second), INITIAL_WEIGHTS=checkpoint))
    assert ok and second.is_file() and "Initial weights: loaded" in log, log[-1500:]
    assert all(path.read_bytes() == data for path, data in before.items())
