"""How good the map will be: the held-out estimate that the model card and the Train algorithm report.

With polygon labels the validation chips hold whole polygons the model never saw (chips/split.py), or, with
few polygons, every polygon group is held out once by k-fold cross-validation (crossval.py). Their
pixels are not a sample of the map, though: analysts digitise about as many polygons of a rare class as of a
common one, and each in a homogeneous place. So the raw accuracy over held-out polygon pixels weighs classes
very differently from the map (on the Zion sparse case it read 0.46 where the map scored 0.55).

Polygons sample the *reference* classes (the analyst picks places of each class), so what they measure
without bias is each class's producer's accuracy (recall) *on places like the polygons*. Weighting those by how
common each class is in the map (a spread sample of tiles of the source raster, classified by the model:
OA = sum_i W_i recall_i, and the estimated error matrix p_ij = W_i n_ij / n_i.) still read 0.80 for a map that
scored 0.50-0.59 on the Zion sparse case: the polygons lie in clear, homogeneous places, the map's errors in
mixed ones. That figure is kept as ``polygon_overall_accuracy``, with its per-class IoU and mIoU (optimistic:
``polygon_iou``, ``polygon_mean_iou``).

The map's overall accuracy is estimated from the map itself, by the difference of confidences (DoC, Guillory
et al. 2021): the held-out pixels' accuracy, lowered by how much less sure the model is of the scene's pixels
than of them (mean top-class probability; the scene: a spread sample, classified by the exported model). The
held-out pixels are weighted so that their predicted classes take the shares they have in the map (the
polygons over-sample rare classes). Mixed places get lower probabilities, so the scene's harder pixels pull it
down. The reported IoUs come from the map as well: over the same sample, each pixel's class probabilities are taken as
the chances of its reference classes, which gives an expected error matrix of the map (errors of mixed places that the
polygons cannot show); its IoUs are lowered to that accuracy (:func:`.error_matrix.lowered_to`), so they agree with it,
or raised to it (:func:`.error_matrix.raised_to`) when the model is right more often than its probabilities say (on the
rstoolbox demo a 1-minute training's mean IoU read 0.58-0.60 beside 0.88 accuracy, and 0.68 raised; the map scored
0.96-0.97 on the held-out polygons; the Zion sparse case is not changed: its model is surer than it is right). On the
Zion sparse case (trainer's default net, map mIoU 0.151 against NLCD, east 40 %) it said 0.26, where the polygons' IoUs
weighted by the map's class shares and lowered alike said 0.354 (0.43 not lowered, kept as ``polygon_iou`` and
``polygon_mean_iou``); the rare classes (water, developed, herbaceous, cultivated, wetlands: under 1 % of the east part,
1-9 % of the map) scored 0.01 and were estimated at 0.07-0.24.

The DoC only lowers (:func:`.confidence.doc_lowered`; the DoC is then kept as ``doc_held``): its premise is that the
map's pixels are harder than the polygons', and a model surer of the map's pixels than of the held-out ones says that
the models differ, not the places. The held-out pixels are scored by the folds' (or the held-out run's) models, the
scene by the exported one, which the refit trains longer when the time limit cut the folds short. An RGBA copy of
rstoolbox trained for 1 minute (folds of 1-2 epochs, refit of 3): the folds' held-out pixels scored 0.67, the polygons'
figure said 0.95, and the DoC 1.00, printed as "overall accuracy 100%, mean IoU 100%"; held, it says 0.80 (mIoU 0.48)
with the same time limit.

The overall accuracy, measured against the map's real OA on the Zion sparse case (east 40 % against NLCD), three
models of one bench run (the default per-pixel net, 0.597; a ResNet-18 U-Net from a random start, 0.450, and scene-
pretrained, 0.321): class-weighted DoC said 0.536, 0.380, 0.225 (under by 0.06-0.10); average thresholded
confidence (ATC, Garg et al. 2022, reported before) said 0.439, 0.161, 0.009, and in two earlier runs 0.586 for
0.551 and 0.492 for 0.594. ATC, DoC and their class-weighted forms stay in ``estimates`` to compare on new cases.

A model trained on polygons also weighs its classes by the scene's estimated shares when it classifies
(core/model/class_shares.py). The estimate describes that map (:func:`of_map`): the held-out pixels' class
probabilities (the folds' or the held-out run's) and the scene sample's are weighed alike before anything is
counted, so the held-out accuracy, the confidences, the map's shares and its expected errors are all the weighed
map's. The unweighed map's estimate stays in the card (``unweighed``) for a map made with the weighing off. On the
Zion sparse case (bench sparse) the weighed estimate said OA 0.635 and mIoU 0.187 for a map that scored 0.681 and
0.164; the unweighed one 0.540 and 0.257 for 0.600 and 0.151. That unweighed estimate had its own DoC and read its
errors from its own probabilities, which are the polygons' (classes about even), not the scene's: where the model
leans to a rare class the unweighed map shows it, and its own probabilities call it mostly right. Three Zion
sparse models (east 40 %; bench sparse's default net, a U-Net, the default net at another seed) said OA 0.531,
0.453 and 0.753, mIoU 0.252, 0.226 and 0.471, for unweighed maps that scored 0.600, 0.453, 0.603 and mIoU 0.152,
0.120, 0.155: the third said turning the weighing off gained 12 points where it lost 8.5. Brought to the scene's
shares (the weighed probabilities: Saerens et al. 2002's correction for another prior) the probabilities are the
better chances of a pixel's reference class whichever rule drew the map. So the unweighed map's OA is the weighed
map's estimate less how much more often the weighed map is right over the scene sample by those chances
(:func:`expected_gain`: errors the two maps share cancel), and its expected errors are read from them too, its
classes still its own argmax: OA 0.562, 0.452, 0.566 and mIoU 0.213, 0.213, 0.210 for the same three, below the
weighed maps' estimates (0.632, 0.458, 0.631) as the maps measured below them (0.682, 0.489, 0.689). The mIoU
still reads a little above the weighed map's (0.185, 0.181, 0.183) where it measured 0.005-0.012 below: the rare
classes' IoUs, which the model's probabilities overstate either way.

With raster labels (dense, split by spatial blocks) the validation blocks are a spatial sample of the map where
the labels are: the estimate is the validation score itself. Where the labels cover part of the image only (under
:data:`PART_LABELLED` of its valid pixels), it says it is of that part (``labels_cover``): the Zion demo's model,
trained on NLCD labels of the scene's west 70 %, estimated 77 % / mIoU 27 % and scored 72 % / 22 % on the east 30 %.
"""
import math

import numpy as np

from landcover_plugin.core.assess.metrics import ConfusionCounter, metrics_from_confusion
from landcover_plugin.core.model.class_shares import weigh

from .confidence import alternatives, atc, doc_lowered
from .error_matrix import estimated_matrix, lowered_to, raised_to
from .error_matrix import iou as iou_of
from .scene_sample import scene_summary

FEW_POLYGONS = 20      # fewer held-out polygons than this: say the estimate rests on few
PART_LABELLED = 0.9    # a labels raster on less than this share of the image's valid pixels: say the estimate is
                       # of the labelled part (the Zion demo: 77 % estimated on its west 70 %, 72 % on the east)


def of_map(confusion, names, split: dict, heldout_pixels, scene_pixels, weights=None) -> dict:
    """The held-out estimate (:func:`estimate`) of the map Classify makes, from the held-out pixels'
    ``(probabilities (n, K), labels (n,))`` (objective.heldout_pixels) and the scene sample's (n, K) probabilities
    (:func:`.scene_sample.scene_sample`; None: not readable). ``confusion``: the held-out pixels' matrix, all of
    them. With the card's class-share ``weights`` both are weighed as Classify weighs a tile's, and the estimate is
    of that map; the unweighed map's figures are kept as ``unweighed``, its expected errors taken from the weighed
    probabilities (the module's docstring says why)."""
    names = list(names)
    if scene_pixels is None:
        return estimate(confusion, names, None, split)
    scene_pixels = np.asarray(scene_pixels, dtype=np.float32)
    if weights is None or heldout_pixels is None:  # (no held-out pixels: the polygons' recalls are all there is)
        return _from_pixels(confusion, names, split, heldout_pixels, scene_pixels)
    scene = weigh(scene_pixels.copy(), weights)
    probabilities, labels = heldout_pixels
    weighed = weigh(np.array(probabilities, dtype=np.float32), weights)
    matrix = _counted(weighed.argmax(axis=1), labels, confusion)
    result = _from_pixels(matrix, names, split, (weighed, labels), scene)
    accuracy = result.get("overall_accuracy")
    if accuracy is not None:  # the unweighed map is right less often by this much (estimate() keeps it in 0..1)
        accuracy -= expected_gain(scene, scene_pixels)
    unweighed = _from_pixels(confusion, names, split, heldout_pixels, scene_pixels, chances=scene, accuracy=accuracy)
    return dict(result, classes_weighed=True, unweighed={
        key: unweighed[key] for key in ("overall_accuracy", "mean_iou", "polygon_overall_accuracy", "iou")
        if key in unweighed})


def expected_gain(weighed, unweighed) -> float:
    """How much more often the weighed map is right than the unweighed one over the scene sample, by the weighed
    probabilities ((n, K) each): where their classes differ, the chance of the weighed map's class against the
    unweighed map's."""
    rows = np.arange(len(weighed))
    return float(np.mean(weighed.max(axis=1)) - np.mean(weighed[rows, np.asarray(unweighed).argmax(axis=1)]))


def _from_pixels(confusion, names, split, heldout_pixels, scene_pixels, chances=None, accuracy=None) -> dict:
    shares, scene_confidence, scene_matrix = scene_summary(scene_pixels, len(names), chances)
    confidences = None
    if heldout_pixels is not None:
        probabilities, labels = heldout_pixels
        probabilities = np.asarray(probabilities, dtype=np.float32)
        predicted = probabilities.argmax(axis=1)
        confidences = (probabilities.max(axis=1), predicted == np.asarray(labels), predicted)
    return estimate(confusion, names, shares, split, heldout_confidence=confidences,
                    scene_confidence=scene_confidence, scene_matrix=scene_matrix, accuracy=accuracy)


def _counted(predicted, labels, confusion) -> np.ndarray:
    """The held-out confusion matrix of the weighed map: the sample's counts of (label, weighed prediction), each
    reference row scaled to that class's held-out pixels in ``confusion`` (the sample may be a subsample)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    counter = ConfusionCounter()
    counter.update(np.asarray(labels), np.asarray(predicted))
    counts = counter.matrix(range(confusion.shape[0])).astype(np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    return np.where(rows > 0, counts / np.maximum(rows, 1.0) * confusion.sum(axis=1, keepdims=True), confusion)


def estimate(confusion, names, shares, split: dict, heldout_confidence=None, scene_confidence=None,
             scene_matrix=None, accuracy=None) -> dict:
    """The held-out estimate from the validation confusion matrix (rows reference, columns predicted) and the
    map's class shares (None: the raw validation scores are all there is). With polygons, and the top-class
    probabilities of the held-out pixels (``(confidence, correct[, predicted])``) and of the scene's pixels, the
    overall accuracy is the class-weighted difference of confidences (:func:`.confidence.doc`); the recall-weighted
    figure stays as ``polygon_overall_accuracy``. With the map's expected error matrix as well (``scene_matrix``,
    from :func:`.scene_sample.scene_summary`) the IoUs are that matrix's, lowered to the overall accuracy, instead of
    the polygons'.
    ``accuracy``: the map's overall accuracy found otherwise, in place of the DoC (the unweighed map's, from the
    weighed one's: :func:`of_map`)."""
    cm = np.asarray(confusion, dtype=np.float64)
    pixels = int(round(cm.sum()))
    raw_oa = float(np.trace(cm) / pixels) if pixels else None
    raw_miou = metrics_from_confusion(cm)["mean_iou"] if pixels else None
    result = {"pixels": pixels, "raw_overall_accuracy": _round(raw_oa), "raw_mean_iou": _round(raw_miou),
              "class_pixels": {n: int(round(v)) for n, v in zip(names, cm.sum(axis=1))}}  # held-out pixels per class
    if split.get("cv_folds"):
        result["cv_folds"] = int(split["cv_folds"])
    polygons = split.get("val_polygons")
    if split.get("method") == "polygons":
        result["polygons"] = polygons
        result["unvalidated_classes"] = list(split.get("unsplit_classes") or [])
    where = (f"{split['cv_folds']}-fold cross-validation over {polygons} polygon groups" if split.get("cv_folds")
             else f"{polygons} held-out polygons") + f" ({pixels} px)"
    if split.get("method") != "polygons" or shares is None or raw_oa is None:
        result.update(overall_accuracy=result["raw_overall_accuracy"], mean_iou=result["raw_mean_iou"],
                      method=("validation chips: spatial blocks of the labels, never trained on"
                              if split.get("method") != "polygons" else
                              "held-out polygons' pixels, unweighted (the source raster was not readable to "
                              "weight them by the map's class shares)"))
    else:
        matrix = estimated_matrix(cm, np.asarray(shares, dtype=np.float64), raw_oa)
        iou = iou_of(matrix)
        weighted = _round(float(np.trace(matrix)))
        result.update(overall_accuracy=weighted, polygon_overall_accuracy=weighted, mean_iou=_round(_nanmean(iou)),
                      class_shares={n: _round(float(s)) for n, s in zip(names, shares)},
                      iou={n: _round(v) for n, v in zip(names, iou)},
                      method=f"{where}, each class's recall on them weighted by its share of the map")
        if heldout_confidence is not None and scene_confidence is not None and len(heldout_confidence[0]):
            threshold, _ = atc(*heldout_confidence[:2], scene_confidence)
            found = {name: _round(v) for name, v in alternatives(heldout_confidence, scene_confidence, shares).items()}
            value, held = doc_lowered(heldout_confidence, scene_confidence, shares) if accuracy is None else \
                (accuracy, False)
            value = min(1.0, max(0.0, value))
            ious = "the IoUs lowered alike"
            if scene_matrix is not None:  # the map's own errors, from its probabilities, not the polygons'
                scene = np.asarray(scene_matrix, dtype=np.float64)
                matrix = np.hstack([scene, np.zeros((len(scene), 1))]) / scene.sum()
                ious = ("the IoUs from the map's own class probabilities over a spread sample of it (where it says "
                        "one class, the others' chances count as its errors), brought to that accuracy")
                matrix = raised_to(matrix, value)  # an unsure model's probabilities overstate its errors
            lowered = iou_of(lowered_to(matrix, value, np.asarray(shares, dtype=np.float64)))
            result.update(overall_accuracy=_round(value), confidence_threshold=_round(threshold), estimates=found,
                          mean_iou=_round(_nanmean(lowered)), iou={n: _round(v) for n, v in zip(names, lowered)},
                          polygon_mean_iou=result["mean_iou"], polygon_iou=result["iou"],
                          method=f"{where}: their accuracy, weighted to the map's class shares, " + (
                              "not raised by how much surer the model is of the map's pixels than of them (mean "
                              "top-class probability; a model trained longer than the ones that scored them, or "
                              "the classes' weighing, makes it surer, not more often right)" if held else
                              f"lowered by how much less sure the model is of the map's pixels than of them (mean "
                              f"top-class probability; the polygons alone say {weighted:.0%}: they lie in clearer "
                              f"places than the map's average)") + f"; {ious}")
            if held:
                result["doc_held"] = _round(found.get("doc_class_weighted", found["doc"]))
    if split.get("labels_kind") == "raster":
        result["labels"] = "raster"  # the advice speaks of the labels raster, not of digitising polygons
        cover = split.get("labelled_share")
        if split.get("method") != "polygons" and cover is not None and cover < PART_LABELLED:
            result["labels_cover"] = _round(cover)  # the blocks sample the labelled part only
    result["few"] = split.get("method") == "polygons" and (polygons or 0) < FEW_POLYGONS
    result["confused"] = _confused(cm, names)
    return result


def _confused(cm, names, share: float = 0.2, most: int = 3) -> list:
    """The worst confusions on held-out pixels: [reference name, mapped as name, share of that reference]."""
    pairs = []
    for i, row in enumerate(cm):
        total = row.sum()
        for j, count in enumerate(row):
            if i != j and total and count / total >= share:
                pairs.append((count / total, names[i], names[j]))
    return [[a, b, round(float(s), 2)] for s, a, b in sorted(pairs, reverse=True)[:most]]


def describe(heldout: dict) -> str:
    """One line for the log and the report."""
    if heldout.get("overall_accuracy") is None:
        return "No held-out estimate: there was no validation data."
    text = (f"Held-out estimate of the map's accuracy: overall accuracy {heldout['overall_accuracy']:.0%}, "
            f"mean IoU {heldout['mean_iou']:.0%} ({heldout['method']}).")
    unweighed = heldout.get("unweighed") or {}
    if heldout.get("classes_weighed") and unweighed.get("overall_accuracy") is not None:
        miou = "" if unweighed.get("mean_iou") is None else f", mean IoU {unweighed['mean_iou']:.0%}"
        text += (f" It is of the map with the classes weighed by the scene's shares, as Classify maps by default; "
                 f"with 'Weigh classes by the scene's shares' off: overall accuracy "
                 f"{unweighed['overall_accuracy']:.0%}{miou}.")
    elif heldout.get("classes_unweighed"):  # cards written before the estimate weighed them
        text += (" It is of the map with the classes unweighed (Classify's 'Weigh classes by the scene's shares' "
                 "off); weighed, as Classify maps by default, a map is usually more accurate (on the Zion "
                 "sparse-polygon example 0.68 against 0.60).")
    if heldout.get("few"):
        text += (f" It rests on only {heldout['polygons']} held-out polygons: treat it as rough (about +-0.1), and "
                 f"check the map with 'Assess accuracy' against independent reference data.")
    if heldout.get("unvalidated_classes"):
        text += f" Not validated (one polygon group each): {', '.join(heldout['unvalidated_classes'])}."
    if heldout.get("labels_cover") is not None:
        text += " " + part_labelled(heldout["labels_cover"])
    if heldout.get("confused"):
        text += (" Most confused on held-out pixels: " + "; ".join(
            f"{a} mapped as {b} ({s:.0%})" for a, b, s in heldout["confused"])
            + (". Labels of these classes in more places would help (a labels raster over a larger or another "
               "area, or other scenes), especially where they meet." if heldout.get("labels") == "raster" else
               ". Digitise more polygons of these classes, in places unlike the ones you have, especially where "
               "they meet."))
    return text


def part_labelled(cover: float) -> str:
    """What an estimate from validation blocks is of, where the labels raster covers only ``cover`` of the image."""
    return (f"The labels cover {cover:.0%} of the image's valid pixels, and the held-out blocks lie among them: the "
            f"estimate is of that part. Beyond it the map is usually less accurate (the Zion demo's model, trained on "
            f"NLCD labels of the scene's west 70 %, estimates 77 % and scores 72 % on the east 30 %): check it there "
            f"with 'Create reference sample' and 'Assess accuracy'.")


def _nanmean(values):
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else None


def _round(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 4)
