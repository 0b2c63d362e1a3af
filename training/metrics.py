"""The scores the trainer reports from a confusion matrix (numpy only: no torch, no QGIS).

Rows are the reference class, columns the prediction, both as output-channel indices 0..K-1. The scores
come from :func:`landcover_plugin.core.assess.metrics.metrics_from_confusion`, the same code as the
accuracy assessment, so a validation mIoU means the same thing in the training log and in the report.
"""
import math

import numpy as np

from landcover_plugin.core.assess.metrics import metrics_from_confusion


def summarise(matrix: np.ndarray, class_names) -> dict:
    """Overall accuracy, mIoU and per-class IoU (None where undefined), JSON-ready."""
    scores = metrics_from_confusion(matrix)
    return {"accuracy": _clean(scores["overall_accuracy"]), "miou": _clean(scores["mean_iou"]),
            "iou": {name: _clean(value) for name, value in zip(class_names, scores["iou"])}}


def _clean(value):
    value = float(value)
    return None if math.isnan(value) else round(value, 6)
