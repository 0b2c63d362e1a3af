"""The scene's class shares, estimated from a model's own probabilities, and the class weights they give.

Training polygons sample classes about evenly (an analyst digitises as many polygons of a rare class as of a
common one), and the class-weighted loss evens them further, so a model trained on polygons believes every
class about as likely as the next. The scene is not like that: on the Zion sparse-polygon case water, developed,
herbaceous, cultivated and wetlands cover under 1 % of the unlabelled east part each, where the map gave them
1-9 % (their IoU 0.01). Bayes' rule moves a posterior from the prior it learned to the scene's prior:
p'(k | x) is proportional to p(k | x) * scene_k / learned_k (Saerens, Latinne and Decaestecker 2002, "Adjusting
the outputs of a classifier to new a priori probabilities"). The scene's shares are unknown but follow from the
model's probabilities over a sample of it by their expectation-maximisation: shares = the mean of the adjusted
posteriors, repeated until they settle. Each share keeps at least :data:`FLOOR`, so that a class the scene
seems to lack is weighed down, never erased from the map.

The estimated shares are trusted halfway: the weights are (scene share / learned share) ** :data:`STRENGTH`.
Measured (offline, the same models weighed at each strength; OA / mIoU): the Zion sparse case (the trainer's
default net on 40 sparse polygons, scored against NLCD on the east 40 %, away from the polygons), two trainings:
unweighed 0.599 / 0.151 and 0.603 / 0.154; strength 0.25: 0.665 / 0.159, 0.681 / 0.170; 0.5: 0.682 / 0.161,
0.692 / 0.167; 0.75: 0.679 / 0.158, 0.689 / 0.167; 1: 0.672 / 0.176, 0.680 / 0.199. rstoolbox's 4-fold
polygon cross-validation (held-out polygons' pixels, pooled; the forest 0.998 / 0.993): unweighed 0.998 /
0.998; 0.25: 0.998 / 0.995; 0.5: 0.997 / 0.991; 0.75: 0.995 / 0.981; 1: 0.993 / 0.976 (its rare class,
fallen_dry, loses pixels: polygons of a rare class are a larger part of the held-out pixels than of a map).
Half-way keeps most of the gain on the unseen part of a scene at a small cost on the rare classes' polygons.
bench/RESULTS.md, section sparse, has the bench's own run.

The weights live in the model card (``class_shares``: :func:`card_entry`); the classifier reads them
(:func:`card_weights`), multiplies each tile's probabilities by them and normalises again (:func:`weigh`).
QGIS-free.
"""
import numpy as np

STRENGTH = 0.5  # weights = (scene share / learned share) ** STRENGTH: halfway (geometrically) to the estimate
FLOOR = 0.01  # no class's estimated share of the scene goes below about 1 %: weighed down, never erased
MAX_ITERATIONS = 200
TOLERANCE = 1e-6
CARD_KEY = "class_shares"


def learned_prior(pixels, loss_weights=None) -> np.ndarray:
    """The class prior a model learned: its training pixels per class times the loss's class weights, as shares."""
    prior = np.asarray(pixels, dtype=np.float64) * (1.0 if loss_weights is None else np.asarray(loss_weights))
    if prior.sum() <= 0:
        raise ValueError("no training pixels")
    return prior / prior.sum()


def scene_shares(probabilities, prior, floor: float = FLOOR) -> tuple:
    """Expectation-maximisation of the scene's class shares from (n, K) class probabilities of a sample of its
    pixels, given the ``prior`` the model learned (K shares). Returns (shares, iterations)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    prior = np.asarray(prior, dtype=np.float64)
    learned = np.where(prior > 0, prior, 1.0)  # a class never trained has probability 0: nothing to move
    shares = probs.mean(axis=0)
    for iteration in range(1, MAX_ITERATIONS + 1):
        adjusted = probs * (shares / learned)
        adjusted /= np.maximum(adjusted.sum(axis=1, keepdims=True), 1e-30)
        new = np.maximum(adjusted.mean(axis=0), floor) * (prior > 0)
        new /= new.sum()
        if np.abs(new - shares).max() < TOLERANCE:
            return new, iteration
        shares = new
    return shares, MAX_ITERATIONS


def class_weights(shares, prior, strength: float = STRENGTH) -> np.ndarray:
    """Per-class multipliers of the probabilities: the scene's share over the learned one (1 for an untrained
    class) to the power ``strength``, scaled so that the largest is 1. ``strength`` 1 is Bayes' rule for shares
    known exactly; estimated ones are trusted halfway (see the module's measurements)."""
    shares, prior = np.asarray(shares, dtype=np.float64), np.asarray(prior, dtype=np.float64)
    weights = np.where(prior > 0, shares / np.where(prior > 0, prior, 1.0), 1.0) ** strength
    return weights / weights.max()


def card_entry(shares, prior, class_ids, source: str, pixels: int) -> dict:
    """The card's ``class_shares``: the weights the classifier applies, with what they came from."""
    return {"weights": [round(float(w), 6) for w in class_weights(shares, prior)],
            "scene_shares": [round(float(s), 6) for s in shares],
            "learned_shares": [round(float(p), 6) for p in prior],
            "class_ids": [int(i) for i in class_ids], "source": source, "sample_pixels": int(pixels),
            "floor": FLOOR, "strength": STRENGTH,
            "method": "expectation-maximisation of the model's probabilities over a spread sample of the source "
                      "raster (Saerens et al. 2002)"}


def card_weights(model, events):
    """The class weights of ``model``'s card (its ``class_shares``), told in the log; None for a card without them
    or with shares that do not match the model's classes (then warned)."""
    entry = model.card.get(CARD_KEY)
    if not entry:
        return None
    ids = [c["id"] for c in model.classes]
    if entry.get("class_ids") != ids or len(entry.get("weights") or []) != len(ids):
        events.warning("The model's class shares do not match its classes: the classes are not weighed.")
        return None
    events.info("Classes weighed by the scene's shares the trainer estimated (" + ", ".join(
        f"{c['name']} {100 * s:.1f} %" for c, s in zip(model.classes, entry["scene_shares"]))
        + "): polygons sample classes about evenly, a scene does not. Turn 'Weigh classes by the scene's shares' "
          "off (engine: --class-shares off) for the model's own probabilities.")
    return np.asarray(entry["weights"], dtype=np.float32)


def weigh(probs: np.ndarray, weights) -> np.ndarray:
    """Probabilities with the classes on axis 1, (N, K, H, W) tiles or (n, K) pixels (modified in place), times the
    (K,) weights, normalised again per pixel."""
    probs *= np.asarray(weights, dtype=probs.dtype).reshape((1, -1) + (1,) * (probs.ndim - 2))
    total = probs.sum(axis=1, keepdims=True)
    np.divide(probs, total, out=probs, where=total > 0)
    return probs
