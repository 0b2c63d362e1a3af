"""Confusion-matrix metrics for segmentation (numpy only: no torch, no QGIS).

Rows are the reference class, columns the prediction, both as output-channel indices 0..K-1.
"""
import numpy as np


def confusion_matrix(reference: np.ndarray, predicted: np.ndarray, num_classes: int,
                     ignore_index: int = 255) -> np.ndarray:
    reference = np.asarray(reference).ravel().astype(np.int64)
    predicted = np.asarray(predicted).ravel().astype(np.int64)
    keep = (reference != ignore_index) & (reference < num_classes)
    index = reference[keep] * num_classes + predicted[keep]
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def overall_accuracy(matrix: np.ndarray) -> float:
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else float("nan")


def iou_per_class(matrix: np.ndarray) -> np.ndarray:
    """IoU per class; NaN for a class absent from both reference and prediction."""
    matrix = np.asarray(matrix, dtype=np.float64)
    true_positive = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positive
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, true_positive / union, np.nan)


def mean_iou(matrix: np.ndarray) -> float:
    """Mean IoU over the classes present in the reference or the prediction."""
    iou = iou_per_class(matrix)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def summarise(matrix: np.ndarray, class_names) -> dict:
    """Overall accuracy, mIoU and per-class IoU (None where undefined), JSON-ready."""
    iou = iou_per_class(matrix)
    return {"accuracy": _clean(overall_accuracy(matrix)), "miou": _clean(mean_iou(matrix)),
            "iou": {name: _clean(value) for name, value in zip(class_names, iou)}}


def _clean(value):
    value = float(value)
    return None if np.isnan(value) else round(value, 6)
