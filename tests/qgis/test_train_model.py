""""Train segmentation model" in a real headless QGIS on real rstoolbox chips: a run, a cancel, bad input."""
import json
import os

import numpy as np
import onnxruntime as ort
from algorithm_runs import run_algorithm
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback

TINY = {"EPOCHS": 2, "BATCH_SIZE": 4, "BASE_WIDTH": 8, "LEARNING_RATE": 0.003, "PATIENCE": 0, "DEVICE": 1}


class CancelAfterEpoch(QgsProcessingFeedback):
    """Presses Cancel once the log shows the given epoch's metrics, as a user would."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def pushInfo(self, info):
        super().pushInfo(info)
        if f"epoch {self.epoch}:" in info.lower():  # "Epoch 1:", "Fold 1/4 epoch 1:"
            self.cancel()


def run(parameters, feedback=None):
    return run_algorithm("landcover:train_segmentation_model", parameters, feedback)


def test_training_writes_the_model_curves_and_scores(provider, chips, tmp_path):
    out = tmp_path / "model.onnx"
    results, ok, log = run(dict(TINY, DATASET=str(chips), ARCHITECTURE=1, OUTPUT=str(out)))
    assert ok, log
    assert results["OUTPUT"] == str(out) and out.is_file()
    assert "Training on CPU" in log and "epoch 1:" in log.lower() and "epoch 2:" in log.lower() and "mIoU" in log
    # one compact line per epoch (a fold's say which), per-class IoU below it; no per-batch progress in the log
    assert "val_miou=" not in log and "batch 1/" not in log and log.count("IoU: cleared") >= 2
    with open(results["CURVES_CSV"]) as handle:
        assert len(handle.read().strip().splitlines()) == 1 + 2
    assert open(results["CURVES_PNG"], "rb").read(4) == b"\x89PNG"
    assert 0.0 <= results["BEST_VAL_MIOU"] <= 1.0 and results["BEST_EPOCH"] in (1, 2)
    assert results["CANCELLED"] is False
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    card = json.loads(session.get_modelmeta().custom_metadata_map["landcover_card"])
    assert card["architecture"] == "deeplabv3plus" and card["tile_size"] == 32
    # polygons were held out whole: their estimate comes back, and the model was trained again on all of them
    assert 0.0 <= results["HELDOUT_OA"] <= 1.0 and 0.0 <= results["HELDOUT_MIOU"] <= 1.0
    assert card["heldout"]["overall_accuracy"] == results["HELDOUT_OA"]
    # how far 5 % more or less light changes the labels: the output is the card's larger share, and the log says it
    light = card["light_sensitivity"]
    assert results["LIGHT_SENSITIVITY"] == max(light["brighter"], light["darker"]) and "Light sensitivity, over" in log
    assert "Held-out estimate of the map's accuracy" in log and "Refit epoch 1:" in log
    assert [c["name"] for c in card["classes"]] == [c["name"] for c in
                                                    json.loads((chips / "dataset.json").read_text())["classes"]]


def test_cancel_still_gives_the_best_model_so_far(provider, chips, tmp_path):
    out = tmp_path / "model.onnx"
    results, ok, log = run(dict(TINY, EPOCHS=500, DATASET=str(chips), OUTPUT=str(out)), CancelAfterEpoch(1))
    assert results.get("CANCELLED") is True, log
    assert out.is_file() and results["BEST_EPOCH"] >= 1
    probs = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"input": np.zeros((1, 7, 32, 32), np.float32)})[0]
    assert probs.shape == (1, 4, 32, 32)


def test_an_empty_folder_fails_with_a_clear_message(provider, tmp_path):
    (tmp_path / "empty").mkdir()
    results, ok, log = run(dict(TINY, DATASET=str(tmp_path / "empty"), OUTPUT=str(tmp_path / "model.onnx")))
    assert not ok
    assert "dataset.json" in log and "Export label chips" in log
    assert not (tmp_path / "model.onnx").exists()


def test_the_datasets_json_file_stands_for_its_folder(provider, chips, tmp_path):
    """The probe: DATASET given as the chip dataset's dataset.json (what a file picker offers) failed with "does not
    exist or is not a folder" although the file exists. Its folder is used, for the plan before the run too."""
    out = tmp_path / "model.onnx"
    results, ok, log = run(dict(TINY, EPOCHS=1, DATASET=str(chips / "dataset.json"), OUTPUT=str(out)))
    assert ok, log
    assert out.is_file() and "training chips" in log and "Expect " in log
    assert not list(chips.glob("*.onnx")), "nothing is written into the chip dataset"


def test_with_augmentation_off_the_repeated_chips_are_said_to_be_unchanged(provider, chips, tmp_path):
    # 48 training chips in batches of 4 make fewer than 16 steps: each epoch repeats chips, as the plugin's plan
    # and the engine say; with AUGMENT off neither may promise other flips and rotations
    results, ok, log = run(dict(TINY, EPOCHS=1, REFIT=False, AUGMENT=False, DATASET=str(chips),
                                OUTPUT=str(tmp_path / "m.onnx")))
    assert ok, log
    assert "flips and rotations" not in log
    assert "training chips, repeated unchanged (augmentation off))" in log  # the plugin's plan
    assert "repeating chips unchanged (augmentation off)." in log  # the engine


def test_a_report_path_that_would_replace_an_input_or_the_model_fails_before_training(provider, chips, tmp_path):
    """The report is written after training, over whatever is at its path: given the chips' dataset.json it
    replaced the dataset's description with HTML (the chip dataset was broken), given the model's own path it
    replaced the trained model."""
    description = (chips / "dataset.json").read_bytes()
    model = tmp_path / "m.onnx"
    label = next((chips / "labels").iterdir()).read_bytes()
    chip = next((chips / "labels").iterdir())
    for report, what in ((chips / "dataset.json", "the chip dataset's description"), (chip, "a file of the chip "
                         "dataset"), (model, "the model")):
        results, ok, log = run(dict(TINY, DATASET=str(chips), OUTPUT=str(model), OUTPUT_REPORT=str(report)))
        assert not ok and f"would replace {what}" in log and "Epoch 1" not in log, log
    assert (chips / "dataset.json").read_bytes() == description and not list(tmp_path.iterdir())
    assert next((chips / "labels").iterdir()).read_bytes() == label


def test_settings_the_trainer_refuses_are_refused_in_the_dialog(provider, tmp_path):
    """A tile size of 1-7 px, more processes than chips in a batch, and scene pretraining with encoder weights or
    with an architecture without a ResNet encoder were accepted by the dialog and refused at the trainer's start."""
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:train_segmentation_model")
    weights = tmp_path / "resnet18.pth"
    weights.write_bytes(b"weights")
    base = {"DATASET": str(tmp_path), "OUTPUT": str(tmp_path / "model.onnx")}
    context = QgsProcessingContext()
    for changed, expected in (({"TILE_SIZE": 4}, "at least 8 px"),
                              ({"BATCH_SIZE": 2, "NPROC": 4}, "at least 4"),
                              ({"SCENE_PRETRAIN_MINUTES": 1.0, "ENCODER_WEIGHTS": str(weights)}, "not both"),
                              ({"SCENE_PRETRAIN_MINUTES": 1.0, "ARCHITECTURE": 0}, "'U-Net' has none")):
        ok, message = algorithm.checkParameterValues(dict(base, **changed), context)
        assert not ok and expected in message, (changed, message)
    for fine in ({"TILE_SIZE": 0}, {"TILE_SIZE": 8}, {"BATCH_SIZE": 4, "NPROC": 4},
                 {"SCENE_PRETRAIN_MINUTES": 1.0}, {"SCENE_PRETRAIN_MINUTES": 1.0, "ARCHITECTURE": 4}):
        ok, message = algorithm.checkParameterValues(dict(base, **fine), context)
        assert ok, (fine, message)


def test_relative_output_paths_come_back_absolute(provider, chips, tmp_path, monkeypatch):
    """``qgis_process run landcover:train_segmentation_model ... -- OUTPUT=model.onnx`` in a data folder returned
    'model.onnx', 'model_report.html', 'model_checkpoints/best.pt': wrong paths for the next algorithm of a model
    or script run from another folder."""
    monkeypatch.chdir(tmp_path)
    results, ok, log = run(dict(TINY, EPOCHS=1, REFIT=False, DATASET=str(chips), OUTPUT="model.onnx"))
    assert ok, log
    for name in ("OUTPUT", "OUTPUT_REPORT", "CURVES_CSV", "CURVES_PNG", "CHECKPOINT"):
        assert results[name] == str(tmp_path / results[name]) and os.path.isabs(results[name]), name
        assert os.path.isfile(results[name]), name
