"""Estimators of a map's overall accuracy from confidences: how much less sure the model is of the map's pixels than
of held-out ones (the difference of confidences, DoC, Guillory et al. 2021) and the average thresholded confidence
(ATC, Garg et al. 2022), with the held-out pixels equal or weighted to the map's class shares. :mod:`.heldout`
reports the class-weighted DoC, never above the held-out accuracy (:func:`doc_lowered`), and keeps the others in the
card to compare them on new cases."""
import numpy as np


def atc(confidence, correct, scene_confidence, weights=None):
    """Average thresholded confidence (Garg et al. 2022, "Leveraging unlabeled data to predict
    out-of-distribution performance", ICLR): the threshold ``t`` above which held-out pixels' top-class
    probability lies as often as they are right, then the share of the scene's pixels above ``t``.
    ``weights``: per held-out pixel (None: equal). Returns ``(t, estimated accuracy)``."""
    confidence, scene = np.asarray(confidence, dtype=np.float64), np.asarray(scene_confidence, dtype=np.float64)
    weights = np.ones_like(confidence) if weights is None else np.asarray(weights, dtype=np.float64)
    accuracy = float(np.average(correct, weights=weights))
    threshold = _quantile(confidence, weights, 1.0 - accuracy)
    return threshold, float(np.mean(scene > threshold))


def _quantile(values, weights, q: float) -> float:
    """The weighted ``q`` quantile, linearly interpolated; with equal weights exactly ``np.quantile``'s rule
    (the i-th smallest of n sits at i / (n - 1))."""
    order = np.argsort(values, kind="stable")
    values, weights = values[order], weights[order]
    span = weights.sum() - weights[-1]
    if values.size == 1 or span <= 0:
        return float(values[-1])
    return float(np.interp(q, (np.cumsum(weights) - weights) / span, values))


def doc(confidence, correct, scene_confidence, weights=None) -> float:
    """Difference of confidences (Guillory et al. 2021): the held-out accuracy lowered by how much less
    confident the model is on the scene than on the held-out pixels."""
    weights = np.ones(len(confidence)) if weights is None else np.asarray(weights, dtype=np.float64)
    return float(np.average(correct, weights=weights) - np.average(confidence, weights=weights)
                 + np.mean(scene_confidence))


def doc_lowered(heldout_confidence, scene_confidence, shares) -> tuple:
    """``(accuracy, held)``: the difference of confidences with the held-out pixels weighted to the map's class
    shares where their predicted classes are known, never above the held-out accuracy it starts from (``held``:
    the scene's pixels were the surer ones, so nothing was taken off; see the module's notes)."""
    confidence, correct = heldout_confidence[:2]
    weights = class_weights(heldout_confidence, shares)
    accuracy = float(np.average(correct, weights=weights))
    gap = float(np.average(confidence, weights=weights) - np.mean(scene_confidence))
    return (accuracy, True) if gap < 0 else (accuracy - gap, False)


def class_weights(heldout_confidence, shares):
    """Weights of the held-out pixels that give their predicted classes the map's ``shares``; None where their
    predicted classes or the shares are not known, or weigh nothing."""
    if len(heldout_confidence) < 3 or shares is None:
        return None
    predicted = np.asarray(heldout_confidence[2])
    shares = np.asarray(shares, dtype=np.float64)
    counts = np.bincount(predicted, minlength=shares.size)[:shares.size].astype(np.float64)
    weights = (shares / np.maximum(counts, 1.0) * predicted.size)[predicted]
    return weights if weights.sum() > 0 else None


def alternatives(heldout_confidence, scene_confidence, shares) -> dict:
    """Other estimators of the map's OA, kept in the card beside the one reported, to compare them on more
    cases: ATC and DoC, with held-out pixels equal or weighted so that their predicted classes take the shares
    they have in the map (the polygons over-sample rare classes)."""
    confidence, correct = heldout_confidence[:2]
    found = {"atc": atc(confidence, correct, scene_confidence)[1], "doc": doc(confidence, correct, scene_confidence)}
    weights = class_weights(heldout_confidence, shares)
    if weights is not None:
        found["atc_class_weighted"] = atc(confidence, correct, scene_confidence, weights)[1]
        found["doc_class_weighted"] = doc(confidence, correct, scene_confidence, weights)
    return found
