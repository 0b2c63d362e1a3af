"""Accuracy metrics from a confusion matrix (pure numpy, QGIS-free).

Convention: rows are the **reference** classes, columns the **classified** (mapped) classes, as in
scikit-learn's ``confusion_matrix(y_true, y_pred)``. So for class k:

- precision = user's accuracy     = cm[k, k] / column total (of the pixels mapped as k, how many are k)
- recall    = producer's accuracy = cm[k, k] / row total    (of the reference k pixels, how many were found)
- F1 = 2 P R / (P + R), IoU = cm[k, k] / (row total + column total - cm[k, k])

A metric whose denominator is zero is undefined and returned as NaN (``None`` in :func:`to_jsonable`);
means (mean IoU, macro F1) are taken over the classes where the metric is defined.

Counting streams: :class:`ConfusionCounter` accumulates a 256 x 256 matrix of raw values window by
window (class ids are 1..254, so uint8 values index it directly), and :meth:`ConfusionCounter.matrix`
reduces it to the classes of interest at the end.
"""
import math

import numpy as np

N_VALUES = 256


class ConfusionCounter:
    """Accumulates reference x classified value pairs (both 1..254) over windows."""

    def __init__(self):
        self.counts = np.zeros((N_VALUES, N_VALUES), dtype=np.int64)

    def update(self, reference: np.ndarray, classified: np.ndarray) -> None:
        """Add pairs; both arrays hold class ids 0..255 of the same shape and are already masked
        (pass only the pixels to count, e.g. ``ref[valid]``, ``cls[valid]``)."""
        if reference.size == 0:
            return
        ref = reference.astype(np.int64, copy=False).ravel()
        cls = classified.astype(np.int64, copy=False).ravel()
        self.counts += np.bincount(ref * N_VALUES + cls, minlength=N_VALUES * N_VALUES).reshape(
            N_VALUES, N_VALUES)

    def present_ids(self) -> list:
        """Class ids (1..254) that occur in the reference or the classified pixels counted."""
        totals = self.counts.sum(axis=0) + self.counts.sum(axis=1)
        return [int(i) for i in np.flatnonzero(totals) if 0 < i < 255]

    def matrix(self, class_ids) -> np.ndarray:
        """The (K, K) confusion matrix for ``class_ids`` in that order (rows reference, columns classified)."""
        ids = np.asarray(list(class_ids), dtype=np.int64)
        return self.counts[np.ix_(ids, ids)].copy()


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


def metrics_from_confusion(cm) -> dict:
    """All metrics for a (K, K) confusion matrix (rows reference, columns classified).

    Returns a dict of floats and (K,) float arrays: ``n``, ``overall_accuracy``, ``kappa``,
    ``precision``, ``recall``, ``f1``, ``iou``, ``mean_iou``, ``macro_f1``, ``reference_totals``,
    ``classified_totals``, ``row_shares`` and ``column_shares`` ((K, K) arrays).
    """
    cm = np.asarray(cm, dtype=np.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"A confusion matrix must be square, got shape {cm.shape}.")
    n = cm.sum()
    diag = np.diag(cm)
    rows = cm.sum(axis=1)   # reference totals
    cols = cm.sum(axis=0)   # classified totals
    overall = float(diag.sum() / n) if n > 0 else math.nan
    expected = float((rows * cols).sum() / (n * n)) if n > 0 else math.nan
    if n > 0 and expected < 1.0:
        kappa = (overall - expected) / (1.0 - expected)
    else:  # one class everywhere in both maps: chance agreement is 1, kappa is undefined
        kappa = math.nan
    precision = _ratio(diag, cols)
    recall = _ratio(diag, rows)
    f1 = _ratio(2.0 * diag, rows + cols)  # = 2PR/(P+R), defined whenever the class occurs at all
    iou = _ratio(diag, rows + cols - diag)
    return {
        "n": int(n),
        "overall_accuracy": overall,
        "kappa": float(kappa),
        "expected_agreement": expected,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "iou": iou,
        "mean_iou": _nanmean(iou),
        "macro_f1": _nanmean(f1),
        "reference_totals": rows.astype(np.int64),
        "classified_totals": cols.astype(np.int64),
        "row_shares": _ratio(cm, rows[:, None] * np.ones_like(cm)),
        "column_shares": _ratio(cm, np.ones_like(cm) * cols[None, :]),
    }


def to_jsonable(value):
    """numpy arrays/scalars to lists/floats, NaN to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    return value
