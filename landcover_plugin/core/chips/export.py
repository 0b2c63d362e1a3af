"""Export label chips: image + label chips and ``dataset.json`` (engine command ``export-chips``).

Python API: :func:`export_chips`. The raster is streamed window by window (never loaded whole): each
chip window is read once, its labels burnt (polygons) or read (classified raster), nodata/NaN image
pixels set to 0 (unlabelled), and kept when enough of it is labelled. Band statistics are gathered over
every valid source pixel on the way. The spatial train/val split comes last (see :mod:`chip_split`),
then ``dataset.json`` (see :mod:`dataset_json`). Everything is written into a hidden staging folder
that replaces the output folder only on success.
"""
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..band_choice import parse_bands
from ..band_kinds import alpha_band, alpha_warning, default_bands
from ..errors import BadInputError
from ..events import RecordingEvents
from ..ground import ground_resolution
from ..kept_classes import KeptList, read_class_list
from ..kept_classes import describe as describe_kept
from ..options import check_bounds, parse_ints
from ..output_folder import check_output_folder, commit, discard, start_staging
from ..rasters import check_pixel_type, open_raster
from ..schema import ClassSchema
from .band_subset import BandSubset
from .counts import RARE_SHARE, chip_pixels, class_summary
from .dataset import SCHEMA_VERSION, is_chip_dataset_folder, nodata_to_json, write_dataset_json
from .distinct import distinct_class_pixels
from .label_sources import VectorLabels
from .merge import export_adding
from .options import ChipExportOptions
from .raster_labels import RasterLabels
from .scan import BlockLabeller, PolygonLabeller, scan
from .split import no_holdout_reason, polygon_groups, polygon_split, spatial_split

ADVISED_POLYGONS = 5  # per class: fewer, and neither the model nor its held-out score can be trusted much


def export_chips(options: ChipExportOptions, events=None, *, adding: bool = False) -> dict:
    """Cut ``options.image`` into chips labelled by polygons or by a classified raster; returns the summary.

    Labels: ``labels_vector`` (any CRS GDAL can transform) with ``class_field`` (numeric ids or text names)
    and optionally ``labels_layer`` and ``fids``; or ``labels_raster`` (any grid/CRS: resampled by nearest
    onto the image grid). ``schema``: a :class:`ClassSchema`, a list of class dicts or their JSON text;
    None derives it from a stored ``landcover_classes`` table, a ``classes.json`` sidecar, raster category
    names, or the values. ``stride`` defaults to ``chip_size``; ``min_labelled`` is the share of labelled
    pixels a chip needs (at least one pixel always); ``val_fraction`` the share of chips for validation,
    chosen by spatial blocks. See :class:`ChipExportOptions`.

    ``add``: add the chips to the chip dataset in ``options.output`` (another raster, see :mod:`.merge`);
    ``adding``: this export is such a raster's (its class counts are told as the raster's, not the model's).

    :raises BadInputError, Cancelled: with nothing left in ``options.output`` (with ``add``: the dataset as it was).
    """
    if options.add:
        return export_adding(replace(options, add=False), export_chips, events or RecordingEvents())
    o = options
    raster_path, output_dir = o.image, o.output
    labels_vector, class_field, labels_raster = o.labels_vector, o.class_field, o.labels_raster
    chip_size, stride, min_labelled, val_fraction, seed = o.chip_size, o.stride, o.min_labelled, o.val_fraction, o.seed
    fids, labels_layer = parse_ints(o.fids, "Feature ids"), o.labels_layer
    schema = parse_schema_argument(o.schema) if isinstance(o.schema, str) else o.schema
    events = events if events is not None else RecordingEvents()
    started = time.monotonic()
    chip_size, stride = _check_numbers(chip_size, stride, min_labelled, val_fraction)
    check_bounds(o)  # every other number, in the range the dialog allows
    if (labels_vector is None) == (labels_raster is None):
        raise BadInputError("Give the labels either as polygons (a vector layer and its class field) or as a "
                            "classified raster, not both and not neither.")
    if schema is not None and not isinstance(schema, ClassSchema):
        schema = ClassSchema.from_list(schema)
    kept = KeptList(read_class_list(o.keep_classes), str(o.keep_classes)) if o.keep_classes else None
    folder = check_output_folder(output_dir, is_chip_dataset_folder)
    with open_raster(raster_path) as source:
        check_pixel_type(source)
        chosen = parse_bands(o.bands)
        image = BandSubset(source, chosen or default_bands(source))
        if chosen:
            events.info(f"Bands: {image.count} of the raster's {image.source_count}, in this order: " + ", ".join(
                f"{b} ({name})" if name != f"band {b}" else str(b)
                for b, name in zip(image.source_bands, image.descriptions)) + ".")
        elif image.count < image.source_count:
            events.info(f"Band {alpha_band(source)} is the raster's alpha band (its transparency mask): its "
                        f"transparent pixels are no data, and the model learns from the other "
                        f"{image.count} bands ({', '.join(image.descriptions)}). Choose Bands to learn from it too.")
        said = alpha_warning(source)
        if said:
            events.warning(said)
        if chip_size > min(image.width, image.height):
            raise BadInputError(f"The chip size {chip_size} px is larger than the raster ({image.width} x "
                                f"{image.height} px). Use a chip size of at most {min(image.width, image.height)}.")
        if labels_vector is not None:
            labels = VectorLabels(labels_vector, class_field, image, schema, labels_layer, fids, events, kept)
        else:
            labels = RasterLabels(labels_raster, image, schema, events, kept)
        try:
            if labels.kept:
                labels.schema_origin += f"; values kept from {kept.source}"
            events.info(f"Classes ({labels.schema_origin}): "
                        + ", ".join(f"{c.id}={c.name}" for c in labels.schema))
            if labels.kept:
                events.info(describe_kept(labels.kept))
            summary = _export(image, labels, folder, chip_size, stride, min_labelled, val_fraction, seed, events,
                              started, raster_path, o.labels_source or labels_vector or labels_raster, class_field,
                              adding)
        finally:
            labels.close()
    summary["output_dir"] = str(folder)
    summary["dataset_json"] = str(folder / "dataset.json")
    _log_summary(summary, events, adding)
    events.progress(1.0, "done")
    return summary


def _export(image, labels, folder, chip_size, stride, min_labelled, val_fraction, seed, events, started,
            raster_path, labels_path, class_field, adding=False) -> dict:
    """Scan, split and write into a staging folder; move it into place only when all went well."""
    need = max(1, int(np.ceil(min_labelled * chip_size * chip_size)))
    labeller, split_info = _choose_split(image, labels, need, val_fraction, seed, events, adding)
    staging = start_staging(folder)
    try:
        chips, stats, windows_seen = scan(image, labels, labeller, staging, chip_size, stride, events)
        if not chips and stats.count == 0:
            nodata = "" if image.nodata is None else f" ({image.nodata:g})"
            raise BadInputError(f"The raster {image.name} has no valid pixels: every pixel is its nodata value"
                                f"{nodata} or NaN, so no chip can be cut. Check the raster (and its nodata "
                                f"setting); lowering the labelled share would not help.")
        if not any(c.get("split") != "val" for c in chips):
            raise BadInputError(f"No chip of {chip_size} px has at least {min_labelled:.0%} labelled pixels "
                                f"(of {windows_seen} windows). Lower the labelled share or the chip size, or "
                                f"label more area.")
        before = None if labeller.split_known else distinct_class_pixels(chips, staging, labels.schema)
        if labeller.split_known:
            kept = chips
        else:
            splits, split_info = spatial_split([(c["window"]["row_off"], c["window"]["col_off"]) for c in chips],
                                               chip_size, val_fraction, seed)
            kept = []
            for chip, split in zip(chips, splits):
                if split is None:
                    (staging / chip["image"]).unlink()
                    (staging / chip["label"]).unlink()
                else:
                    kept.append(dict(chip, split=split))
        if "warning" in split_info:
            events.warning(split_info["warning"])
        distinct = distinct_class_pixels(kept, staging, labels.schema)
        summary = _summary(kept, labels.schema, distinct, windows_seen, len(chips) - len(kept), started)
        summary["split"] = split_info
        if labels.kept:
            summary["kept_classes"] = labels.kept
        summary["labelled_on_nodata"] = {c.name: int(labeller.on_nodata[c.id]) for c in labels.schema
                                         if labeller.on_nodata[c.id]}
        summary["left_out_pixels"] = _left_out(labeller.totals, before or distinct, distinct, labels.schema,
                                               min_labelled, events)
        content = _dataset_content(image, labels, kept, stats, chip_size, stride, split_info, summary, distinct,
                                   raster_path, labels_path, class_field, min_labelled)
        write_dataset_json(staging, content)
        commit(staging, folder)
    except BaseException:
        discard(staging)
        raise
    return summary


def _choose_split(image, labels, need, val_fraction, seed, events, adding=False):
    """(labeller, split info): whole polygons for validation when the labels are polygons, else (or when no
    class has two separate polygon groups) spatial blocks after the scan. ``adding``: the raster is added to a
    dataset, whose other rasters may hold more polygons: its own counts are told, not warned of."""
    if not isinstance(labels, VectorLabels):
        return BlockLabeller(labels, need), {}
    if not adding:
        _advise_polygon_counts(labels, events)
    if val_fraction == 0.0:
        return PolygonLabeller(labels, np.zeros(len(labels.classes), dtype=bool), need), {}
    gap = 2.0 * max(abs(image.res[0]), abs(image.res[1]))  # a class's polygons within 2 pixels are one group
    # Each part of a multi-part feature is a polygon here (see VectorLabels): parts within the gap of each other
    # are one group, as separate features would be, and parts far apart may be held out apart (one in training,
    # another in validation). That is deliberate: a class dissolved into one multipolygon can still be validated,
    # and a distant part is as honest a test as a distant feature. dataset.json lists such parts in "val_parts".
    groups = polygon_groups(labels.boxes, gap, labels.classes)
    is_val, info = polygon_split(labels.classes, groups, val_fraction, seed)
    names = {c.id: c.name for c in labels.schema}
    unsplit = [names[i] for i in info["unsplit_classes"]]
    if not is_val.any():
        events.warning(no_holdout_reason(labels.classes, groups, names))
        return PolygonLabeller(labels, is_val, need), {}
    held = np.flatnonzero(is_val)
    info["val_fids"] = sorted({int(labels.fids[i]) for i in held})
    val_parts = {}
    for i in held:
        if labels.parts[i] is not None:
            val_parts.setdefault(str(int(labels.fids[i])), []).append(int(labels.parts[i]))
    if val_parts:
        info["val_parts"] = val_parts
    info["unsplit_classes"] = unsplit
    parts = " (each part of a multi-part feature counts as a polygon)" if any(
        p is not None for p in labels.parts) else ""
    events.info(f"Validation: {info['val_polygons']} of {len(is_val)} polygons{parts} held out whole (about "
                f"{val_fraction:.0%} of each class's polygon groups), never seen in training.")
    if unsplit and adding:
        events.info("In this raster, classes with a single polygon (or group), not held out: " + ", ".join(unsplit)
                    + ".")
    elif unsplit:
        events.warning("Classes with a single polygon (or one group of touching polygons) cannot be validated: "
                       + ", ".join(unsplit) + ". Digitise at least one more polygon of each, away from the first, "
                       "so the map's accuracy for them is measured.")
    return PolygonLabeller(labels, is_val, need), info


def _left_out(totals, before, after, schema, min_labelled, events) -> dict:
    """Labelled pixels of the grid (``totals``, per class id, counted by the scan) in no kept chip, and why:
    ``{"under_share": {name: pixels}, "dropped_overlapping": {name: pixels}}`` (classes with none left out
    omitted), each said in the log. ``before``/``after``: distinct pixels of the chips before and after the
    spatial split. Polygon labels lose none to the labelled share (windows are added for them, see .cover)."""
    def per_class(counts):
        return {c.name: int(counts[c.id]) for c in schema if counts[c.id] > 0}

    def total(distinct):
        found = np.zeros(256, dtype=np.int64)
        for split in ("train", "val"):
            for key, value in distinct[split].items():
                found[int(key)] += value
        return found

    under = per_class(np.maximum(0, totals - total(before)))
    dropped = per_class(np.maximum(0, total(before) - total(after)))
    if under:
        events.info(f"{sum(under.values())} labelled pixels are in no chip: they lie only in windows with under "
                    f"{min_labelled:.0%} labelled pixels (" + ", ".join(f"{k} {v}" for k, v in under.items())
                    + "). Lower the minimum labelled share to keep them.")
    if dropped:
        events.info(f"{sum(dropped.values())} labelled pixels were only in training chips dropped for overlapping "
                    "validation chips (" + ", ".join(f"{k} {v}" for k, v in dropped.items()) + "). A stride equal "
                    "to the chip size (no overlap) keeps them.")
    return {"under_share": under, "dropped_overlapping": dropped}


def _check_numbers(chip_size, stride, min_labelled, val_fraction):
    chip_size = int(chip_size)
    stride = int(stride) if stride else chip_size
    if chip_size < 8:
        raise BadInputError(f"The chip size must be at least 8 px (got {chip_size}).")
    if not 1 <= stride <= chip_size:
        raise BadInputError(f"The stride must be 1..chip size ({chip_size}) px (got {stride}); a stride equal to "
                            f"the chip size means no overlap.")
    if not 0.0 <= float(min_labelled) <= 1.0:
        raise BadInputError(f"The labelled share a chip needs must be 0..1 (got {min_labelled}).")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise BadInputError(f"The validation share must be at least 0 and below 1 (got {val_fraction}).")
    return chip_size, stride


def _band_names(image) -> list:
    return [d or f"band {i + 1}" for i, d in enumerate(image.descriptions)]


def _summary(chips, schema, distinct, windows_seen, dropped, started) -> dict:
    """What the analyst is told: pixels per class are distinct labelled pixels (see :mod:`.distinct`)."""
    seconds = time.monotonic() - started
    return {
        "windows": windows_seen, **class_summary(chips, schema, distinct), "dropped_overlapping": dropped,
        "seconds": round(seconds, 3),
        "chips_per_second": round(len(chips) / seconds, 1) if seconds > 0 else None,
        "windows_per_second": round(windows_seen / seconds, 1) if seconds > 0 else None,
    }


def _dataset_content(image, labels, chips, stats, chip_size, stride, split_info, summary, distinct, raster_path,
                     labels_path, class_field, min_labelled) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "classes": labels.schema.to_list(),
        "bands": {"count": image.count, "names": _band_names(image), "dtype": image.dtypes[0],
                  "source_bands": image.source_bands, "source_count": image.source_count},
        "nodata": nodata_to_json(image.nodata),
        "crs": image.crs.to_wkt() if image.crs else None,
        "resolution": [abs(image.res[0]), abs(image.res[1])],
        "ground_resolution": ground_resolution(image),
        "chip_size": chip_size,
        "stride": stride,
        "mean": stats.mean.tolist(),
        "std": stats.std.tolist(),
        "valid_pixels": int(stats.count),
        "class_pixels": chip_pixels(chips, labels.schema),
        "train_class_pixels": chip_pixels(chips, labels.schema, "train"),
        "val_class_pixels": chip_pixels(chips, labels.schema, "val"),
        "distinct_class_pixels": {k: v + distinct["val"][k] for k, v in distinct["train"].items()},
        "distinct_train_class_pixels": distinct["train"],
        "distinct_val_class_pixels": distinct["val"],
        "min_labelled": float(min_labelled),
        "split": split_info,
        "source": {"image": str(Path(raster_path).absolute()), "labels": _source_text(labels_path),
                   "labels_kind": labels.kind, "class_field": class_field, "schema_origin": labels.schema_origin},
        "summary": summary,
        "chips": chips,
    }


def _advise_polygon_counts(labels, events) -> None:
    counts = {c.id: 0 for c in labels.schema}
    for class_id in labels.classes:
        counts[int(class_id)] += 1
    few = [(c.name, counts[c.id]) for c in labels.schema if 0 < counts[c.id] < ADVISED_POLYGONS]
    if few:
        events.warning("Few training polygons for " + ", ".join(f"{name} ({n})" for name, n in few)
                       + f": digitise at least {ADVISED_POLYGONS} polygons of each class, spread over the scene "
                       "(different places, and where the classes meet), so the model learns the class and not one "
                       "place, and the held-out score can measure it.")


def _log_summary(summary, events, adding: bool = False) -> None:
    how = ("validation chips hold the held-out polygons" if summary["split"].get("method") == "polygons" else
           f"{summary['dropped_overlapping']} training chips dropped for overlapping validation chips")
    events.info(f"{summary['chips']} chips ({summary['train_chips']} train, {summary['val_chips']} val) from "
                f"{summary['windows']} windows in {summary['seconds']:.1f} s; {how}.")
    events.info("Labelled pixels per class (train / val; each pixel once, however many chips hold it): " + "; ".join(
        f"{name} {summary['train_class_pixels'][name]} / {summary['val_class_pixels'][name]}"
        for name in summary["class_pixels"]))
    hidden = summary.get("labelled_on_nodata") or {}
    unlabelled = [name for name in summary["missing_classes"] if name not in hidden]
    if adding:  # a raster added to a dataset: what counts is the dataset's totals, told next
        if unlabelled:
            events.info("No training pixels in this raster for: " + ", ".join(unlabelled) + ".")
        return
    if unlabelled:
        events.warning("Classes with no training pixels: " + ", ".join(unlabelled)
                       + ". Label some of each, or the model cannot learn them.")
    on_nodata = [name for name in summary["missing_classes"] if name in hidden]
    if on_nodata:  # labelled, but only where the image has no value: more labels there would not help
        events.warning("Classes with no training pixels because all their labelled pixels lie where the raster has "
                       "no data (NaN, its nodata value or its mask): " + ", ".join(
                           f"{name} ({hidden[name]:,} px)" for name in on_nodata)
                       + ". Label them where the raster has values, or use a raster with values there.")
    if summary["rare_classes"]:
        events.warning(f"Classes with very few training pixels (under {RARE_SHARE:.0%}): "
                       + ", ".join(summary["rare_classes"]) + ". Label more of them for a reliable model.")
    if summary["missing_in_val"]:
        events.warning("Classes absent from the validation chips (not scored): " + ", ".join(summary["missing_in_val"]))


# -- engine command ---------------------------------------------------------------------------------
def parse_schema_argument(text):
    """``--schema``: JSON text or a path to a JSON file; a list of classes or ``{"classes": [...]}``."""
    if not text:
        return None
    try:
        content = json.loads(text if text.lstrip()[:1] in "[{" else Path(text).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputError(f"The class schema is neither JSON nor a readable JSON file ({exc}).") from exc
    return ClassSchema.from_list(content["classes"] if isinstance(content, dict) else content)


def export_command(options: ChipExportOptions, events) -> dict:
    """The engine's ``export-chips``: the exporter's outputs under the names the QGIS side reads."""
    summary = export_chips(options, events)
    return {"OUTPUT": summary["output_dir"], "DATASET": summary["dataset_json"], "CHIPS": summary["chips"],
            "TRAIN_CHIPS": summary["train_chips"], "VAL_CHIPS": summary["val_chips"],
            "CLASS_PIXELS": json.dumps(summary["class_pixels"]),
            "MISSING_CLASSES": ", ".join(summary["missing_classes"]),
            "RARE_CLASSES": ", ".join(summary["rare_classes"]), "SUMMARY": summary}


def _source_text(path: str) -> str:
    """A file's absolute path; a data source that is not a plain path (``file.gpkg|layername=x``, a database
    connection) as given."""
    return str(Path(path).absolute()) if os.path.exists(path) else str(path)
