"""The end of every run (finished, stopped early or cancelled): best weights -> ONNX, curves, outputs."""
import os
from pathlib import Path

import numpy as np

from landcover_plugin.core.band_choice import recorded_choices
from landcover_plugin.core.chips.dataset import raster_sources
from landcover_plugin.core.errors import LandcoverError
from landcover_plugin.core.model import class_shares as shares
from landcover_plugin.core.model.card import build_card
from landcover_plugin.core.model.mappable import LEFT_OUT_KEY
from landcover_plugin.core.model.metadata import is_geographic_wkt

from . import checkpoint as ckpt
from . import heldout as held
from .curves import write_curves
from .distributed import current
from .export_onnx import export, set_card_entry
from .light_sensitivity import describe as describe_light
from .light_sensitivity import light_sensitivity
from .networks import left_out_channels
from .objective import heldout_pixels
from .scene_sample import SAMPLE_TILES, scene_sample
from .writing import disk_errors


def finish_run(run: dict, model, network: dict, data: dict, spec, config, device, sample, events, heldout=None,
               curves: bool = True, pending_heldout=None, val_loader=None, tile_agreement: bool = True,
               learned=None) -> dict:
    """Export the best weights with their card; ``heldout``: the held-out estimate when an earlier run made it
    (a refit), else it is made here from the best epoch's validation (``val_loader``: its chips), or from
    ``pending_heldout`` = (confusion, split, (probabilities, labels) of held-out pixels) of a cross-validation before
    this refit.
    ``curves``: write the training curves; ``tile_agreement``: measure it (record_tile_agreement) unless cancelled.
    ``learned``: the class prior the loss taught (class_shares.learned_prior): with polygon labels the card gets the
    scene's class shares and the weights they give the classifier (:func:`_class_shares`)."""
    best = run["best"]
    if run["best_state"] is not None:
        model.load_state_dict(run["best_state"])
        events.info(f"Exporting the weights of epoch {best['epoch']} " + (
            f"(best validation mIoU {best['val_miou']})." if best["val_miou"] is not None else "(the last one)."))
    elif run["epoch"] == 0:
        events.warning("No epoch finished before the run stopped: the model is exported with its current, "
                       "barely trained weights. Train for at least one epoch for a useful model.")
    else:
        events.warning("The best epoch's weights were not found beside the resumed checkpoint: exporting the "
                       "latest weights instead.")
    tile = config.export_tile_size or spec.chip_size
    split = spec.raw.get("split") or {}
    confusion = (best or {}).get("val_confusion")
    held_pixels = None
    if pending_heldout is not None:
        confusion, split, held_pixels = pending_heldout
    elif heldout is None and confusion is not None and val_loader is not None and split.get("method") == "polygons":
        held_pixels = heldout_pixels(model, val_loader, device)
    if heldout is None and confusion is not None and split.get("method") != "polygons":
        labels_kind = (spec.raw.get("source") or {}).get("labels_kind")
        heldout = held.estimate(confusion, spec.schema.names, None, dict(split, labels_kind=labels_kind,
                                                                          labelled_share=_labelled_share(spec.raw)))
    model.eval()
    classes = spec.schema.to_list()
    left_out = [classes[k]["id"] for k in left_out_channels(model)]  # the classes it cannot map: the card says

    def write(heldout_now, shares_entry=None):
        card = build_card(schema=spec.schema, band_names=spec.band_names, input_dtype=spec.dtype, nodata=spec.nodata,
                          mean=spec.mean, std=spec.std, tile_size=tile, overlap=config.overlap,
                          resolution=_ground_resolution(spec), crs=spec.crs, architecture=network["architecture"],
                          metrics=_card_metrics(run),
                          extra={"network": network, "training": _summary(config, device, run),
                                 "heldout": heldout_now, LEFT_OUT_KEY: left_out,
                                 "source": _source(spec),
                                 **({shares.CARD_KEY: shares_entry} if shares_entry else {})},
                          source_bands=spec.raw.get("bands", {}).get("source_bands"),
                          source_count=spec.raw.get("bands", {}).get("source_count"),
                          source_choices=recorded_choices(s.get("bands") for s in spec.raw.get("sources") or ()))
        with disk_errors("the model", config.output, kept=config.checkpoint_dir / ckpt.LAST):
            return export(model, config.output, card=card, tile_size=tile, band_count=spec.band_count,
                          sample=sample, in_place=False)

    # The model comes last: written and checked under its hidden temporary name, completed there (the held-out
    # estimate, the tile agreement), and renamed into place once its curves are written. A run that dies on the way
    # (killed when the QGIS side's wait after a cancel ran out) or fails (a full disk) leaves no model that looks
    # finished without its estimate, tile agreement or curves.
    exported = write(heldout)
    staged = Path(exported["path"])
    light = None  # the light sensitivity, measured on the model a run hands over
    csv_path, png_path = config.curves_paths()
    try:
        source = spec.raw.get("source") or {}
        estimating = heldout is None and confusion is not None  # polygons: from the map this model makes
        weighing = learned is not None and source.get("labels_kind") == "vector"
        pixels = scene_pixels(staged, spec) if estimating or weighing else None
        entry = _class_shares(pixels, learned, spec, events) if weighing and pixels is not None else None
        if estimating:  # of the map Classify makes: weighed by the class shares when the card has them
            heldout = held.of_map(confusion, spec.schema.names, split, held_pixels, pixels,
                                  weights=entry["weights"] if entry else None)
        if estimating or entry:
            exported = write(heldout, entry)
        if curves:
            write_curves(run["history"], (csv_path, png_path), f"{network['architecture']} on {spec.folder.name}",
                         best["epoch"] if best else None, events)
        if tile_agreement and not run["cancelled"]:
            record_tile_agreement(staged, spec, events)
            light = record_light_sensitivity(staged, spec, events)
        with disk_errors("the model", config.output, kept=config.checkpoint_dir / ckpt.LAST):
            os.replace(staged, config.output)
    finally:
        staged.unlink(missing_ok=True)  # when it failed on the way
    events.info(f"Wrote the ONNX model '{config.output}' (tile {tile} px); onnxruntime matches torch on a batch of "
                f"{exported['verify_batch']} (max abs difference {exported['max_abs_diff']:.2e}).")
    best_file = config.checkpoint_dir / ckpt.BEST
    last_file = config.checkpoint_dir / ckpt.LAST
    return {
        "OUTPUT": str(config.output),
        "CURVES_CSV": str(csv_path),
        "CURVES_PNG": str(png_path),
        # only checkpoints of this run (or the run it resumed): the folder may hold an earlier run's into this model
        "CHECKPOINT": str(best_file) if best and best_file.exists() else None,
        "LAST_CHECKPOINT": str(last_file) if run["epoch"] and last_file.exists() else None,
        "BEST_VAL_MIOU": best["val_miou"] if best else None,
        "BEST_VAL_ACCURACY": best["val_accuracy"] if best else None,
        "BEST_EPOCH": best["epoch"] if best else None,
        "epochs_run": run["epoch"],
        "cancelled": run["cancelled"],
        "CANCELLED": run["cancelled"],
        "stopped_early": run["stopped_early"],
        "stopped_by": run.get("stopped_by"),
        "device": str(device),
        "architecture": network["architecture"],
        "onnx_max_abs_diff": exported["max_abs_diff"],
        "HELDOUT": heldout,
        "HELDOUT_OA": (heldout or {}).get("overall_accuracy"),
        "HELDOUT_MIOU": (heldout or {}).get("mean_iou"),
        # the share of the labels that 5 % more or less light in every band changes, the larger (None: not measured)
        "LIGHT_SENSITIVITY": max(light["brighter"], light["darker"]) if light else None,
    }


def record_tile_agreement(path, spec, events) -> None:
    """Measure on the training image how far bigger tiles keep the labels of the model at ``path`` (once, on the
    model a training run hands over); its card records it and the classifier's automatic tile stays within it.
    Skipped for a model of one input size, and when the image is not here to read."""
    import rasterio

    from landcover_plugin.core.classify.tile_agreement import measure

    image = _first_raster_here(spec)
    if not path or not image:
        return
    try:
        agreement = measure(path, image)
    except (LandcoverError, rasterio.errors.RasterioError, OSError) as exc:  # the model is written: keep it
        events.warning(f"Could not measure how bigger tiles change the labels ({exc}): the automatic tile size "
                       f"of the classifier is not limited for this model.")
        return
    if agreement is None:
        return
    set_card_entry(path, "tile_agreement", agreement)
    shares = ", ".join(f"{share:.1%} at {size} px" for size, share in agreement["agreement"].items())
    events.info(f"Bigger tiles than the model's own give the same class on {shares} of the pixels of the "
                f"training image: the classifier's automatic tile is at most {agreement['tile']} px.")


def record_light_sensitivity(path, spec, events):
    """Measure how far 5 % more or less light changes the labels of the model at ``path`` on its training raster
    (light_sensitivity.py); its card records it, the log says it (a warning when the model is fragile). Returns
    the card's entry, or None when it could not be measured."""
    import rasterio

    image = _first_raster_here(spec)
    if not path or not image:
        return None
    try:
        entry = light_sensitivity(path, image)
    except (LandcoverError, rasterio.errors.RasterioError, OSError, RuntimeError) as exc:  # the model is written
        events.warning(f"Could not measure how far another date's light changes the labels ({exc}); the model "
                       f"is written without it.")
        return None
    if entry is None:
        return None
    set_card_entry(path, "light_sensitivity", entry)
    level, message = describe_light(entry, spec.band_names, spec.mean, spec.std)
    (events.warning if level == "warning" else events.info)(message)
    return entry


def _first_raster_here(spec):
    """The first of the chip dataset's rasters that is there to read (the training raster), or None."""
    return next((source.get("image") for source in raster_sources(spec.raw)
                 if source.get("image") and Path(source["image"]).exists()), None)


def _card_metrics(run: dict) -> dict:
    """The card's metrics. After a refit (no validation of its own) the val_* figures are those that chose its
    epoch count, the held-out run's best epoch or the cross-validation's pooled folds, as BEST_VAL_MIOU; the
    added val_source says which."""
    best = run.get("selection_best") or run["best"] or {}
    metrics = {"best_epoch": best.get("epoch"), "val_miou": best.get("val_miou"),
               "val_accuracy": best.get("val_accuracy"), "val_loss": best.get("val_loss"),
               "val_iou": best.get("val_iou"), "val_confusion": best.get("val_confusion"),
               "epochs_trained": run["epoch"], "cancelled": run["cancelled"],
               "stopped_early": run["stopped_early"]}
    if best.get("val_source"):
        metrics["val_source"] = best["val_source"]
    return metrics


def _summary(config, device, run: dict) -> dict:
    """The run settings for the card, with what ended the epochs (``stopped_by``: "epochs", "early stopping",
    "time limit" or "cancel") and the analyst's time limit (None: none); after a refit ``selection_stopped_by``
    says what ended the held-out run or the cross-validation folds that chose its epoch count."""
    keys = ("epochs", "batch_size", "learning_rate", "weight_decay", "schedule", "class_weights", "augment",
            "colour_augment", "patience", "seed")
    summary = dict({k: getattr(config, k) for k in keys}, device=str(device), processes=current().world,
                   time_limit_minutes=run.get("time_limit_minutes", config.time_limit_minutes),
                   stopped_by=run.get("stopped_by"))
    if run.get("selection_stopped_by"):
        summary["selection_stopped_by"] = run["selection_stopped_by"]
    if run.get("past_limit_s") is not None:  # a refit that trained on past the limit to its held-out epoch count
        summary["past_limit_s"] = run["past_limit_s"]
    return summary


def _source(spec) -> dict:
    """The card's ``source``: the chip export's (training raster and labels), the chip dataset's folder, and which
    of its chips the model learned from: "all" after a refit (every chip trains), else "train" (the validation
    chips held out). 'Assess accuracy' tells from them the reference pixels the model was taught."""
    trained = "all" if all(chip.split == "train" for chip in spec.chips) else "train"
    source = dict(spec.raw.get("source") or {}, chips=str(Path(spec.folder).absolute()), chips_trained=trained)
    if spec.raw.get("folder_recorded"):  # the chips moved with their raster (chips.dataset): where they were
        source["chips_recorded"] = spec.raw["folder_recorded"]
    if len(spec.sources) > 1:  # a dataset of several rasters: the card names them all
        source["images"] = _images(spec)
        if any(s.get("image_recorded") for s in spec.sources):  # read elsewhere than recorded (chips.dataset)
            source["images_recorded"] = _images(spec, recorded=True)
    return source


def _images(spec, recorded: bool = False) -> list:
    """The rasters' paths as training read them, or (``recorded``) as their exports recorded them."""
    return [str(s.get("image_recorded") or s["image"]) if recorded else str(s["image"])
            for s in spec.sources if s.get("image")]


def scene_pixels(model_path, spec):
    """The model's class probabilities over a spread sample of the raster the chips were cut from (of each raster
    of a dataset of several, its share of the tiles set by its valid pixels); None when none can be read here."""
    sources = spec.sources
    total = sum(source.get("valid_pixels") or 0 for source in sources) or len(sources)
    parts = [scene_sample(model_path, source.get("image"),
                          max(1, round(SAMPLE_TILES * (source.get("valid_pixels") or 1) / total)))
             for source in sources]
    parts = [part for part in parts if part is not None]
    return np.concatenate(parts) if parts else None


def _labelled_share(dataset: dict):
    """The share of the image's valid pixels (in the export's windows) that the chips label, each pixel once; None
    for datasets written before the export counted distinct pixels."""
    distinct, valid = dataset.get("distinct_class_pixels"), dataset.get("valid_pixels")
    if not distinct or not valid:
        return None
    return min(1.0, sum(distinct.values()) / valid)


def _ground_resolution(spec):
    """The training resolution the card records: metres on the ground (what the classifier compares a raster's
    with), else, for an older dataset without it, the pixel size in a projected CRS's units; none for a raster
    with no CRS (pixels) or, in an older dataset, a geographic one (degrees are no metres)."""
    if spec.raw.get("ground_resolution"):
        return _resolution(spec.raw["ground_resolution"])
    if not spec.crs or is_geographic_wkt(spec.crs):
        return None
    return _resolution(spec.resolution)


def _resolution(value):
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return [float(value), float(value)]
    return [abs(float(v)) for v in value]


def _class_shares(pixels, learned, spec, events):
    """The card's ``class_shares`` from the scene sample's probabilities (core/model/class_shares.py), told in the
    log; None when there is nothing to weigh (one class)."""
    if len(spec.schema) < 2:
        return None
    found, found_by, em, disagreeing = shares.checked_shares(pixels, learned)
    names = spec.schema.names
    strength, erased, overshot = shares.gentle_strength(pixels, found, learned)
    entry = shares.card_entry(found, learned, [c["id"] for c in spec.schema.to_list()], spec.images[0], len(pixels),
                              found_by, em, disagreeing, probabilities=pixels, strength=strength)
    if len(spec.sources) > 1:
        entry["sources"] = _images(spec)
    if em is not None:  # ``found`` holds the model's own map's counts then
        events.warning("Estimating the scene's class shares from the model's probabilities went astray: it gave " + (
            ", ".join(f"{names[k]} {100 * em[k]:.1f} % (the model's own map: {100 * found[k]:.1f} %, learned "
                      f"{100 * learned[k]:.1f} %)" for k in disagreeing))
            + ". The model's probabilities are not reliable enough for it (too few epochs, or classes it has not "
              "learned to tell apart), so the shares are the model's own map's instead.")
    events.info(f"The scene's class shares, {'estimated from the model' if em is None else 'counted on the model'}"
                f"'s {'probabilities' if em is None else 'map'} over a sample of it (the polygons sample classes about "
                "evenly, the scene does not): " + ", ".join(f"{n} {100 * s:.1f} %" for n, s in zip(names, found))
                + ". Classify weighs the classes by them (turn 'Weigh classes by the scene's shares' off for the "
                  "model's own probabilities).")
    if erased:
        events.warning(f"Weighing the classes by those shares as usual (strength {shares.STRENGTH}) would all but "
                       "erase " + ", ".join(f"{names[k]} ({100 * found[k]:.1f} % of the scene, {100 * overshot[k]:.2f} "
                                            "% of the weighed map)" for k in erased)
                       + ": the model's probabilities are not reliable enough for it (too few epochs, or classes it "
                         f"has not learned to tell apart). Classify weighs them more gently (strength {strength}; 0 "
                         "is not at all).")
    lost = shares.vanishing_warning(entry, names, "a sample of the scene")
    if lost:
        events.warning(lost)
    return entry
