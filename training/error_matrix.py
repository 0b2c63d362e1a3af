"""The held-out estimate's error matrices (rows reference, columns mapped, as shares of the map): estimated from the
polygons' recalls and the map's class shares (:func:`estimated_matrix`), and brought to the overall accuracy
estimated beside them, lowered (:func:`lowered_to`) or raised (:func:`raised_to`), so that the IoUs reported agree
with it (see :mod:`.heldout`)."""
import math

import numpy as np


def estimated_matrix(cm, shares, raw_oa) -> np.ndarray:
    """p_ij: estimated share of the scene that is reference class i and mapped class j; the last column holds
    what a class with no held-out pixel is mapped as wrongly (to which class is unknown)."""
    k = cm.shape[0]
    matrix = np.zeros((k, k + 1))
    row = cm.sum(axis=1)
    for i in range(k):
        if row[i] > 0:
            matrix[i, :k] = shares[i] * cm[i] / row[i]
        else:
            matrix[i, i] = shares[i] * raw_oa
            matrix[i, k] = shares[i] * (1.0 - raw_oa)
    return matrix


def lowered_to(matrix, overall_accuracy: float, shares) -> np.ndarray:
    """The estimated error matrix with every class's correct share lowered by one factor until its trace is
    ``overall_accuracy``, so that the IoUs agree with the overall accuracy reported beside them (from the
    polygons alone they would not: 0.999 mean IoU beside 0.88 accuracy on rstoolbox, 0.44 beside 0.54 on the
    Zion sparse case). What a class loses goes where its held-out pixels' errors went, or, for a class
    without errors on them, to the other classes by their share of the map. Unchanged when the confidences
    say the map is no worse than the polygons."""
    k = matrix.shape[0]
    trace = float(np.trace(matrix[:, :k]))
    if trace <= 0 or overall_accuracy >= trace:
        return matrix
    lowered = matrix.copy()
    for i in range(k):
        moved = matrix[i, i] * (1.0 - overall_accuracy / trace)
        errors = matrix[i].copy()
        errors[i] = 0.0
        if errors.sum() <= 0:
            errors[:k] = shares
            errors[i] = 0.0
        if errors.sum() <= 0:  # a one-class map: the lost share is mapped as an unknown class
            errors[k] = 1.0
        lowered[i, i] -= moved
        lowered[i] += moved * errors / errors.sum()
    return lowered


def raised_to(matrix, overall_accuracy: float) -> np.ndarray:
    """The map's expected error matrix (from its own probabilities) with each mapped class's errors shrunk by one
    factor, back onto its diagonal, until its trace is ``overall_accuracy``: a model less sure of its held-out
    pixels than it is right on them (a short training, a smoothed net) spreads chances over classes it does not
    map, and the IoUs read from them would contradict the accuracy beside them (the rstoolbox demo: mean IoU
    0.31 beside 96 % accuracy, for a map that scored 0.72 and 97 % on held-out polygons). The map's class
    shares (column sums) stay. Unchanged when the probabilities are no surer than the accuracy."""
    k = matrix.shape[0]
    trace = float(np.trace(matrix[:, :k]))
    total = float(matrix.sum())
    if trace >= overall_accuracy * total or trace >= total:
        return matrix
    kept = (total - overall_accuracy * total) / (total - trace)  # the share of the errors that stays
    raised = matrix * kept
    columns = matrix[:, :k].sum(axis=0)
    raised[np.arange(k), np.arange(k)] += columns - raised[:, :k].sum(axis=0)
    return raised


def iou(matrix) -> list:
    k = matrix.shape[0]
    reference, mapped = matrix.sum(axis=1), matrix.sum(axis=0)[:k]
    return [float(matrix[i, i] / (reference[i] + mapped[i] - matrix[i, i]))
            if reference[i] + mapped[i] > 0 else math.nan for i in range(k)]
