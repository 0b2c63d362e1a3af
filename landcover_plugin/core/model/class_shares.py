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
seems to lack is weighed down, never weighed to nothing. The weighed map can still all but lose a class (where the
model hesitates between it and a commoner class, the commoner wins): on the Zion sparse case developed,
herbaceous and wetlands fell from 2-8 % of the map to under 0.1 % (they cover under 1 % of its east part each),
and a weak rstoolbox model lost fallen_dry altogether. The card keeps both maps' shares over the trainer's sample
(``map_shares``) and the trainer and Classify name such classes (:func:`vanishing`). A weak model's weighing can
overshoot far: a one-epoch rstoolbox model (shares from its map's counts) lost forest, 21 % of its unweighed map,
to water. So the weighed map must keep each class the scene has (estimated above twice the floor) on at least a
quarter of its share, else the weighing is made gentler until it does (:func:`gentle_strength`; the log warns).

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

EM follows the model's probabilities wherever they lead, and a miscalibrated model leads it astray: a rstoolbox
model (validation mIoU 0.975) whose own map gave fallen_dry 3.5 % of the scene (it learned 10 %) had EM settle at
97 % fallen_dry, and weighed by that its map would have been fallen_dry almost everywhere; a one-epoch model with
near-uniform probabilities did the same. So EM's shares are checked against the model's own map (each sampled
pixel's top class, :func:`counted_shares`; :func:`checked_shares`): a class EM raises above its learned share must
be one the map also has above it, raised at most :data:`AGREE` times as far (in log ratio). On the Zion sparse case
EM passes (forest 68.5 % against the map's 52.2 %, from 15 % learned: 1.2 times as far). Where EM fails, the map's
own counts are the scene's shares (Zion: 0.660 / 0.159 at strength 0.5, against EM's 0.681 / 0.164 and 0.600 /
0.151 unweighed), and the card and the log say so.

The shares are the training scene's; the classifier does not estimate them again on the raster it maps.
Measured on the Zion sparse model (OA against NLCD, no polygon pixel): on parts of the scene where forest covers
27-76 % (53 % of the whole), the whole scene's weights beat the unweighed map on every part (east half's south
0.595 / 0.481, west half's south 0.744 / 0.619); EM run afresh on each part, with the same checks, was worse on 5
of 7 parts (by up to 0.11: 0.519, 0.662 on those two) and within 0.001 on the other two. A part's sample is
smaller and the model's probabilities lead EM further astray there; the learned prior the weights undo is the same
everywhere.

A model trained on a labels raster (dense labels) is not weighed. Its learned prior differs from the labels'
shares only by the loss's class weights, so the weights would be known exactly, (1 / loss weight) ** strength,
without EM. Measured on Zion's NLCD labels, the trainer's default U-Net: over the blocks of the quality bench's
validation chips, strength 0 / 0.25 / 0.5 / 1 gave mIoU 0.2535 / 0.2527 / 0.2480 / 0.2298 (OA 0.770 / 0.772 /
0.771 / 0.765; Barren and Cultivated lose most); on the demo's east part, away from the training labels, the
demo's 4-minute model gained (0.2221 / 0.2245 / 0.2267 / 0.2301, OA 0.722 -> 0.734). Not consistent, so dense
labels keep the class-weighted loss's own map.

The weights live in the model card (``class_shares``: :func:`card_entry`); the classifier reads them
(:func:`card_weights`), multiplies each tile's probabilities by them and normalises again (:func:`weigh`).
QGIS-free.
"""
from pathlib import Path

import numpy as np

from .map_record import same_file, training_images

STRENGTH = 0.5  # weights = (scene share / learned share) ** STRENGTH: halfway (geometrically) to the estimate
FLOOR = 0.01  # no class's estimated share of the scene goes below about 1 %: weighed down, never to nothing
AGREE = 2.0  # EM may raise a class at most this many times as far (log ratio to learned) as the map's counts do
KEPT = 4.0  # the weighed map keeps a class the scene has on at least 1/KEPT of its share, or weighs more gently
VANISHING = 0.001  # a class on less than 0.1 % of the weighed map's sample that the unweighed map shows: named
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


def mapped_shares(probabilities, weights=None) -> np.ndarray:
    """The map's class shares over (n, K) sampled probabilities: the share of pixels whose top class is each class,
    after weighing them by ``weights`` (:func:`weigh`, on a copy) when given."""
    probs = np.array(probabilities, dtype=np.float32)
    if weights is not None:
        weigh(probs, weights)
    return np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])[:probs.shape[1]] / max(1, len(probs))


def vanishing(unweighed, weighed) -> list:
    """Indices of the classes the unweighed map shows on at least :data:`VANISHING` of the sample and the weighed
    map on less (shares from :func:`mapped_shares`)."""
    return [int(k) for k in np.flatnonzero((np.asarray(unweighed) >= VANISHING) & (np.asarray(weighed) < VANISHING))]


def counted_shares(probabilities, prior, floor: float = FLOOR) -> np.ndarray:
    """The model's own map's class shares over (n, K) sampled probabilities (each pixel's top class), floored and
    normalised as EM's are (a class never trained keeps 0)."""
    prior = np.asarray(prior, dtype=np.float64)
    counts = mapped_shares(probabilities)[:prior.size]
    shares = np.maximum(counts, floor) * (prior > 0)
    return shares / shares.sum()


def checked_shares(probabilities, prior, floor: float = FLOOR) -> tuple:
    """The scene's shares: EM's (:func:`scene_shares`) when they agree with the model's own map
    (:func:`counted_shares`): every class EM raises above its learned share, the map has above it too, raised at
    most :data:`AGREE` times as far in log ratio. Else the map's counts. Returns ``(shares, found_by, em,
    disagreeing)``: ``found_by`` 'em' or 'counts', ``em`` EM's shares where they were not taken (else None), and
    the indices of the classes EM raised without the map's support."""
    prior = np.asarray(prior, dtype=np.float64)
    em, _ = scene_shares(probabilities, prior, floor)
    counted = counted_shares(probabilities, prior, floor)
    trained = prior > 0
    learned = np.where(trained, prior, 1.0)
    raised = np.log(np.where(trained, em, 1.0) / learned)
    mapped = np.log(np.where(trained, counted, 1.0) / learned)
    disagreeing = [int(k) for k in np.flatnonzero(trained & (raised > 0) & ((mapped <= 0) | (raised > AGREE * mapped)))]
    if not disagreeing:
        return em, "em", None, []
    return counted, "counts", em, disagreeing


def gentle_strength(probabilities, shares, prior, strength: float = STRENGTH, floor: float = FLOOR) -> tuple:
    """The strength to weigh at (:func:`class_weights`): ``strength``, or the largest below it (by bisection) at
    which the weighed map keeps every class the scene has (estimated above twice the floor) on at least 1/:data:`KEPT`
    of its estimated share, or of its unweighed map's share where that is smaller. At strength 0 (no weighing) the
    map is the unweighed one, so there is always one. Returns ``(strength, erased, weighed)``: the indices of the
    classes ``strength`` all but erased, and the weighed map's shares at ``strength``."""
    shares = np.asarray(shares, dtype=np.float64)
    needed = np.where(shares > 2 * floor, np.minimum(shares, mapped_shares(probabilities)) / KEPT, 0.0)

    def weighed_at(value):
        return mapped_shares(probabilities, class_weights(shares, prior, value))

    weighed = weighed_at(strength)
    erased = [int(k) for k in np.flatnonzero(weighed < needed)]
    if not erased:
        return strength, [], weighed
    low, high = 0.0, strength
    for _ in range(8):
        middle = (low + high) / 2
        low, high = (low, middle) if (weighed_at(middle) < needed).any() else (middle, high)
    return round(low, 4), erased, weighed


def class_weights(shares, prior, strength: float = STRENGTH) -> np.ndarray:
    """Per-class multipliers of the probabilities: the scene's share over the learned one (1 for an untrained
    class) to the power ``strength``, scaled so that the largest is 1. ``strength`` 1 is Bayes' rule for shares
    known exactly; estimated ones are trusted halfway (see the module's measurements)."""
    shares, prior = np.asarray(shares, dtype=np.float64), np.asarray(prior, dtype=np.float64)
    weights = np.where(prior > 0, shares / np.where(prior > 0, prior, 1.0), 1.0) ** strength
    return weights / weights.max()


def card_entry(shares, prior, class_ids, source: str, pixels: int, found_by: str = "em", em=None,
               disagreeing=(), probabilities=None, strength: float = STRENGTH) -> dict:
    """The card's ``class_shares``: the weights the classifier applies, with what they came from (``found_by``:
    :func:`checked_shares`; ``em``: EM's shares where they were not taken; ``disagreeing``: the indices of the
    classes EM raised without the map's support, kept as ``em_astray_ids``). With the sample's (n, K)
    ``probabilities``, also the unweighed and the weighed map's shares over it (``map_shares``). ``strength``:
    :func:`gentle_strength`'s."""
    entry = {"weights": [round(float(w), 6) for w in class_weights(shares, prior, strength)],
             "scene_shares": [round(float(s), 6) for s in shares],
             "learned_shares": [round(float(p), 6) for p in prior],
             "class_ids": [int(i) for i in class_ids], "source": source, "sample_pixels": int(pixels),
             "floor": FLOOR, "strength": strength, "found_by": found_by,
             "method": "expectation-maximisation of the model's probabilities over a spread sample of the source "
                       "raster (Saerens et al. 2002)" if found_by == "em" else
                       "the model's own map's class counts over a spread sample of the source raster (expectation-"
                       "maximisation of its probabilities disagreed with them: em_shares)"}
    if em is not None:
        entry["em_shares"] = [round(float(s), 6) for s in em]
        entry["em_astray_ids"] = [int(class_ids[k]) for k in disagreeing]
    if probabilities is not None:
        entry["map_shares"] = {kind: [round(float(s), 6) for s in mapped_shares(probabilities, weights)]
                               for kind, weights in (("unweighed", None), ("weighed", entry["weights"]))}
    return entry


def vanishing_warning(entry, names, where: str) -> str:
    """The warning naming the classes the weighed map all but loses (:func:`vanishing`), '' for none or for a card
    without ``map_shares``; ``where``: what the shares are of ('a sample of the scene', ...)."""
    shares = entry.get("map_shares") or {}
    if not shares.get("unweighed") or not shares.get("weighed"):
        return ""
    lost = vanishing(shares["unweighed"], shares["weighed"])
    if not lost:
        return ""
    weighed, unweighed = shares["weighed"], shares["unweighed"]
    listed = ", ".join(f"{names[k]} {100 * weighed[k]:.2f} % ({100 * unweighed[k]:.1f} %" +
                       (" with the weighing off)" if n == 0 else ")") for n, k in enumerate(lost))
    return (f"Weighed by the scene's shares, the map shows almost none of some classes, over {where}: {listed}. "
            "Where the model hesitates between such a class and a commoner one, the commoner wins. If the class "
            "matters, digitise more of "
            "it (especially where it meets other classes), or classify with 'Weigh classes by the scene's shares' "
            "off and compare.")


def card_weights(model, events, raster=None):
    """The class weights of ``model``'s card (its ``class_shares``), told in the log; None for a card without them
    or with shares that do not match the model's classes (then warned). ``raster``: the one being classified; where
    it is not the raster the shares were estimated on, the log says so."""
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
    trained_on = entry.get("sources") or ([entry["source"]] if entry.get("source") else [])
    if raster is not None and trained_on and not any(same_file(raster, path) for path in
                                                     trained_on + training_images(model.card)):  # + a moved one's
        events.info(f"Those shares were estimated on the training raster{'s' if len(trained_on) > 1 else ''}, "
                    f"{', '.join(Path(path).name for path in trained_on)}, not on this "
                    "one; they are kept (on parts of a scene whose shares differ, the weighing still helped more than "
                    "shares estimated on the part itself). Where this raster is unlike the training one in kind (a "
                    "class common here that was rare or absent there), classify with the weighing off too and "
                    "compare.")
    lost = vanishing_warning(entry, [c["name"] for c in model.classes], "the trainer's sample of the scene")
    if lost:
        events.warning(lost)
    return np.asarray(entry["weights"], dtype=np.float32)


def weigh(probs: np.ndarray, weights) -> np.ndarray:
    """Probabilities with the classes on axis 1, (N, K, H, W) tiles or (n, K) pixels (modified in place), times the
    (K,) weights, normalised again per pixel."""
    probs *= np.asarray(weights, dtype=probs.dtype).reshape((1, -1) + (1,) * (probs.ndim - 2))
    total = probs.sum(axis=1, keepdims=True)
    np.divide(probs, total, out=probs, where=total > 0)
    return probs
