""""Train segmentation model" with pretrained encoder weights, in a real headless QGIS on real rstoolbox chips:
the ResNet-encoder architectures and the weights file reach the engine, the model card names the weights."""
import hashlib
import json

import onnxruntime as ort
import torch
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProject
from resnet_states import torchvision_resnet

from landcover_plugin.algorithms.train_model import ARCHITECTURES


def test_a_unet_on_a_pretrained_resnet18_trains_through_processing(provider, chips, tmp_path):
    weights = tmp_path / "resnet18-f37072fd.pth"
    torch.save(torchvision_resnet("resnet18", seed=1), weights)
    out = tmp_path / "model.onnx"
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:train_segmentation_model")
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    context.setProject(QgsProject.instance())
    parameters = {"DATASET": str(chips), "OUTPUT": str(out), "EPOCHS": 2, "BATCH_SIZE": 4, "BASE_WIDTH": 8,
                  "PATIENCE": 0, "DEVICE": 1, "REFIT": False, "FREEZE_ENCODER_EPOCHS": 1, "ENCODER_LR_FACTOR": 0.2,
                  "ARCHITECTURE": [name for name, _ in ARCHITECTURES].index("unet_resnet18"),
                  "ENCODER_WEIGHTS": str(weights)}
    results, ok = algorithm.run(parameters, context, feedback)
    log = feedback.textLog()
    assert ok, log
    assert "loaded 120 of 120 encoder tensors" in log and "Epoch 2: encoder unfrozen, at 0.2 x" in log
    session = ort.InferenceSession(results["OUTPUT"], providers=["CPUExecutionProvider"])
    card = json.loads(session.get_modelmeta().custom_metadata_map["landcover_card"])
    assert card["architecture"] == "unet_resnet18"
    assert card["network"]["encoder_weights"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
