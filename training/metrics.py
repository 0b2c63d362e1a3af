"""Confusion matrices of label arrays, and the scores the trainer reports (numpy only: no torch, no QGIS).

Rows are the reference class, columns the prediction, both as output-channel indices 0..K-1. The scores
themselves come from :func:`landcover_plugin.core.accuracy.metrics_from_confusion`, the same code as the
accuracy assessment, so a validation mIoU means the same thing in the training log and in the report.
"""
import math

import numpy as np

from landcover_plugin.core.accuracy import metrics_from_confusion


def confusion_matrix(reference: np.ndarray, predicted: np.ndarray, num_classes: int,
                     ignore_index: int = 255) -> np.ndarray:
    reference = np.asarray(reference).ravel().astype(np.int64)
    predicted = np.asarray(predicted).ravel().astype(np.int64)
    keep = (reference != ignore_index) & (reference < num_classes)
    index = reference[keep] * num_classes + predicted[keep]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def summarise(matrix: np.ndarray, class_names) -> dict:
    """Overall accuracy, mIoU and per-class IoU (None where undefined), JSON-ready."""
    scores = metrics_from_confusion(matrix)
    return {"accuracy": _clean(scores["overall_accuracy"]), "miou": _clean(scores["mean_iou"]),
            "iou": {name: _clean(value) for name, value in zip(class_names, scores["iou"])}}


def _clean(value):
    value = float(value)
    return None if math.isnan(value) else round(value, 6)
