"""What a classified map records of the model that made it, and the trainer's estimate of the map's accuracy set
beside what 'Assess accuracy' measures on it.

The trainer writes a held-out estimate of its maps' accuracy into the model card (``heldout``); until now it lived
in the model file and the training log only, and an analyst assessing a map could not tell what had been promised
for it. The classifier now writes :func:`record` into the map as its ``landcover_model`` tag (JSON: the model's
file name and date, the raster classified and the one it was trained on, whether the classes were weighed by the
scene's shares, and the estimate of *that* map: weighed or not) and says the estimate in its log
(:func:`estimate_line`). 'Assess accuracy' reads the tag back (:func:`from_tags`) and sets its own figure beside
it (:func:`comparison`): with a probability sample, whether the estimate lies within the sample's 95 % interval;
with a reference raster, the difference over the pixels it covers; with polygons, that they score clear places.

QGIS-free.
"""
import json
import os
from pathlib import Path

TAG = "landcover_model"
LIGHT_FRAGILE = 0.2  # a model whose labels change this much at 5 % more or less light: fragile on another date


def same_file(one, other) -> bool:
    """Whether two paths name the same file (by the file system; else by their resolved names)."""
    try:
        return os.path.samefile(one, other)
    except OSError:  # either is gone or not a file (a VSI path): compare the names as given
        return Path(one).resolve() == Path(other).resolve()


def training_raster(card: dict):
    """The path of the raster the model was trained on (see :func:`training_images`); None if unknown (a model
    made elsewhere, or trained before the card recorded it: then the class shares' source, where there is one)."""
    images = training_images(card)
    source = images[0] if images else (card.get("class_shares") or {}).get("source")
    return str(source) if source else None


def training_images(card: dict) -> list:
    """The rasters the model was trained on (``source.images``, else ``source.image``), as strings; empty for a
    model made elsewhere or before the card recorded them. Each is the path training read it from, or, where that
    is not here and the one its chip export recorded is (``images_recorded`` / ``image_recorded``: a project trained
    on a GPU server, its model brought home), the recorded one."""
    source = card.get("source") or {}
    images = source.get("images") or [source.get("image")]
    recorded = source.get("images_recorded") or [source.get("image_recorded")]
    return [str(_here(image, recorded[i] if i < len(recorded) else None)) for i, image in enumerate(images) if image]


def _here(read, recorded):
    if recorded and not os.path.exists(read) and os.path.exists(recorded):
        return recorded
    return read


def map_estimate(heldout, weighed: bool):
    """The trainer's estimate of the map made with the classes weighed (``weighed``) or not: ``overall_accuracy``,
    ``mean_iou``, ``method``, and ``of_this_map`` False where the card has only the other map's figures. None
    without an estimate."""
    if not heldout or heldout.get("overall_accuracy") is None:
        return None
    figures, of_this_map = heldout, True
    if heldout.get("classes_weighed") and not weighed:
        unweighed = heldout.get("unweighed") or {}
        if unweighed.get("overall_accuracy") is not None:
            figures = dict(unweighed, method=heldout.get("method"))
        else:
            of_this_map = False
    elif heldout.get("classes_unweighed") and weighed:  # cards written before the estimate weighed the classes
        of_this_map = False
    estimate = {"overall_accuracy": figures["overall_accuracy"], "mean_iou": figures.get("mean_iou"),
                "method": figures.get("method"), "of_this_map": of_this_map}
    for key in ("labels_cover", "few", "polygons", "cv_folds"):
        if heldout.get(key) is not None:
            estimate[key] = heldout[key]
    return estimate


def record(card: dict, model_path, raster_path, weighed: bool) -> dict:
    """The ``landcover_model`` tag of a map classified from ``raster_path`` by the model at ``model_path``."""
    trained_on = training_raster(card)  # the class shares' source, for cards older than source.image
    images = training_images(card) or ([trained_on] if trained_on else [])
    entry = {"model": Path(os.fspath(model_path)).name, "model_created": card.get("created"),
             "architecture": card.get("architecture"), "raster": Path(os.fspath(raster_path)).name,
             "training_raster": ", ".join(Path(image).name for image in images) if images else None,
             "same_raster": any(same_file(raster_path, image) for image in images) if images else None,
             "classes_weighed": bool(weighed)}
    source = card.get("source") or {}
    if source.get("chips"):  # the chip dataset and which of its chips the model was trained on: "all" or "train"
        entry.update(chips=str(_here(source["chips"], source.get("chips_recorded"))),
                     chips_trained=source.get("chips_trained"))
    matched = card.get("matched_to_training")
    if matched:  # read as the training raster's values (classify/radiometry.py): the lines it was read through
        entry["matched_to_training"] = {"raster": Path(matched["raster"]).name, "gain": matched["gain"],
                                        "offset": matched["offset"], "pairs_kept": matched.get("kept")}
    light = card.get("light_sensitivity")
    if isinstance(light, dict) and light.get("brighter") is not None:  # training/light_sensitivity.py
        entry["light_sensitivity"] = {k: light.get(k) for k in ("gain", "brighter", "darker")}
    estimate = map_estimate(card.get("heldout"), weighed)
    if estimate is not None:
        entry["estimate"] = estimate
    return entry


def estimate_line(entry: dict):
    """The classifier's log line on the trainer's estimate for the map it writes; None without one."""
    estimate = entry.get("estimate")
    if estimate is None:
        return None
    text = (f"The trainer estimated this model's maps at {_figures(estimate)}"
            + (f", on {entry['training_raster']}" if entry.get("training_raster") else "") + ".")
    caveats = _caveats(entry, "this raster")
    return " ".join(part for part in (text, caveats, "The map records it, and 'Assess accuracy' sets it beside what "
                                                     "it measures.") if part)


def read_record(path):
    """The ``landcover_model`` tag of the classified raster at ``path`` (a dict), or None (no tag, not JSON, not
    readable)."""
    import rasterio  # noqa: PLC0415 - the log's functions above need no raster library

    try:
        with rasterio.open(path) as dataset:
            return from_tags(dataset.tags())
    except rasterio.errors.RasterioIOError:
        return None


def from_tags(tags: dict):
    """The record in a raster's metadata (``dataset.tags()`` of an open rasterio dataset), or None."""
    try:
        entry = json.loads(tags[TAG]) if tags.get(TAG) else None
    except ValueError:
        return None
    return entry if isinstance(entry, dict) else None


def comparison(entry, kind: str, measured: dict):
    """The trainer's estimate beside the map's measured accuracy, for the accuracy report's JSON (``text``: the
    sentence for its log and page). ``kind``: the reference ("points", "polygons" or "raster"); ``measured``:
    ``overall_accuracy``, ``mean_iou`` and, from a probability sample, ``ci95``. None without an estimate."""
    estimate = (entry or {}).get("estimate")
    oa = measured.get("overall_accuracy")
    if estimate is None or oa is None:
        return None
    trainer = estimate["overall_accuracy"]
    result = {"model": entry.get("model"), "training_raster": entry.get("training_raster"),
              "trainer_overall_accuracy": trainer, "trainer_mean_iou": estimate.get("mean_iou"),
              "measured_overall_accuracy": oa, "measured_mean_iou": measured.get("mean_iou"),
              "difference": round(oa - trainer, 4), "of_this_map": estimate["of_this_map"]}
    text = (f"The model's trainer estimated {_figures(estimate)} for its maps"
            + (f" of {entry['training_raster']}" if entry.get("training_raster") else "")
            + f" ({entry.get('model')}); ")
    ci = measured.get("ci95")
    if kind == "points" and ci is not None:
        result["within_ci95"] = abs(oa - trainer) <= ci
        text += (f"this sample estimates {oa:.1%} ± {100 * ci:.1f}, and the trainer's estimate "
                 + ("lies within that interval." if result["within_ci95"] else
                    f"lies outside it: the map is {'more' if oa > trainer else 'less'} accurate than the trainer "
                    f"said; report this sample's figure."))
    elif kind == "points":  # too few points of some class for the area-weighted estimate and its interval
        text += (f"the sample's points score {oa:.1%} counted as they are, not weighted by the classes' areas, so "
                 f"they do not check the estimate (see why there is no area-weighted estimate above).")
    elif kind == "polygons":
        text += (f"the reference polygons score {oa:.1%}, but polygons lie in clear places, so they score a map "
                 f"higher than its accuracy as a whole; a probability sample ('Create reference sample') checks the "
                 f"estimate.")
    else:
        text += (f"over the reference raster's pixels the map scores {oa:.1%} ({100 * (oa - trainer):+.1f} points "
                 f"against it).")
    result["text"] = " ".join(part for part in (text, _caveats(entry, "this map's raster")) if part)
    return result


def _figures(estimate: dict) -> str:
    miou = "" if estimate.get("mean_iou") is None else f", mean IoU {estimate['mean_iou']:.0%}"
    return f"overall accuracy {estimate['overall_accuracy']:.0%}{miou}"


def light_found(light):
    """``the trainer found that 5% more light in every band changes 93% of this model's labels, 5% less 41%``, from
    a card's (or a map's) ``light_sensitivity`` (training/light_sensitivity.py); None without one."""
    if not isinstance(light, dict) or light.get("brighter") is None:
        return None
    gain = light.get("gain") or 0.05
    return (f"the trainer found that {gain:.0%} more light in every band changes {light['brighter']:.0%} of this "
            f"model's labels, {gain:.0%} less {light.get('darker') or 0.0:.0%}")


def _light_clause(light) -> str:
    """:func:`light_found` for the caveat on another raster, with the fix where a fifth of the labels or more
    change."""
    found = light_found(light)
    if found is None:
        return ""
    fragile = max(light["brighter"], light.get("darker") or 0.0) >= LIGHT_FRAGILE
    return (f" ({found}" + ("; for another date of its place, turn on 'Match to the training raster'" if fragile
                            else "") + ")")


def _caveats(entry: dict, here: str) -> str:
    """What keeps the estimate from describing this map: another raster, labels over part of the training one,
    the other weighing of the classes, few held-out polygons."""
    estimate = entry["estimate"]
    notes = []
    matched = entry.get("matched_to_training")
    if entry.get("same_raster") is False and matched:
        gains = matched.get("gain") or [1.0]
        notes.append(f"It is of the training raster: {here} is another, read as the training raster's values (gains "
                     f"{min(gains):.2f} to {max(gains):.2f}), where it holds as far as the land cover and the season "
                     f"are alike.")
    elif entry.get("same_raster") is False:
        notes.append(f"It is of the training raster: {here} is another, where it holds only as far as the two are "
                     f"alike{_light_clause(entry.get('light_sensitivity'))}.")
    if estimate.get("labels_cover") is not None:
        notes.append(f"It is of the part of the training raster its labels covered ({estimate['labels_cover']:.0%}"
                     f" of it); elsewhere the map is usually less accurate.")
    if not estimate["of_this_map"]:
        notes.append("It is of the map with the classes " + ("unweighed" if entry.get("classes_weighed") else
                                                             "weighed by the scene's shares")
                     + ", and this one was made with them " + ("weighed." if entry.get("classes_weighed") else
                                                                "unweighed."))
    if estimate.get("few"):
        notes.append(f"It rests on only {estimate.get('polygons')} held-out polygons: rough (about ±0.1).")
    return " ".join(notes)
