"""Adding another raster's chips to a chip dataset: one model trained on several scenes.

A model that learns from one scene learns that scene's light, season and haze along with the classes, and maps the
next scene worse than its validation score says. Labels on a few scenes are the remedy analysts reach for. 'Export
label chips' with *Add to the chip dataset in the output folder* (``--add``) exports the raster as usual into a
hidden folder beside the dataset, with the dataset's classes kept (the same ids for the same names, new names after
the highest: see :mod:`..kept_classes`), and :func:`add_to_dataset` moves its chips in under names of their own
(``s2_...`` for the second raster) and rewrites ``dataset.json``:

- each chip keeps its own raster's CRS, grid and window; its entry's ``source`` is the index of that raster in
  ``sources`` (absent: 0, the first raster);
- ``sources``: per raster, what its export recorded (``image``, ``labels``, ``crs``, ``resolution``, ``nodata``,
  ``bands``, ``mean``, ``std``, ``valid_pixels``, ``split``, ``summary``, ``chips``, and ``transform``: the
  affine a, b, c, d, e, f of its pixel grid, so that rasters of one grid, two dates of a place, are known as such:
  see ``dataset.raster_shifts``); the top-level ``source``, ``crs``, ``resolution`` and ``bands`` stay the first
  raster's, for readers that know one raster;
- ``mean``, ``std`` and ``valid_pixels`` are pooled over every raster's valid pixels (each pixel weighs the same),
  pixel counts summed, and the ``split`` summed over the rasters (method "mixed" when they were split differently;
  the held-out feature ids stay in each raster's own entry, since feature ids repeat across layers).

The rasters must agree on what a model reads: the band count, the pixel type, the nodata value and the chip size.
Band names that differ, and resolutions more than 1.5x apart, are warned of. Labels on a raster already in the
dataset are refused where they label the pixels its chips label (:mod:`.shared_labels`): the same labels again, or a
layer whose polygons were partly added before; other polygons of that layer are welcome. ``dataset.json`` is
replaced last; a failure before it moves the chips back, so the dataset is left as it was.
"""
import json
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path

import rasterio
from affine import Affine

from ..band_choice import describe_choices
from ..errors import BadInputError
from ..output_folder import partial_path, remove_stale
from ..schema import ClassSchema
from .band_stats import pooled
from .counts import RARE_SHARE, class_summary
from .dataset import DATASET_FILE, write_dataset_json
from .shared_labels import shared_pixels

RESOLUTION_RATIO = 1.5  # rasters further apart in pixel size than this are warned of
SHARED_SHARE = 0.01  # labels on a raster already in the dataset sharing more of their pixels are refused
PIXEL_KEYS = ("class_pixels", "train_class_pixels", "val_class_pixels", "distinct_class_pixels",
              "distinct_train_class_pixels", "distinct_val_class_pixels")
SOURCE_KEYS = ("crs", "resolution", "ground_resolution", "nodata", "bands", "stride", "min_labelled", "mean", "std",
               "valid_pixels", "split", "summary")


def export_adding(options, export, events) -> dict:
    """Export ``options.image`` with ``export`` (the exporter of one raster: ``export(options, events, adding=)``)
    and add its chips to the chip dataset in ``options.output``; where that folder holds no dataset yet, the export
    is the dataset's first raster. The raster's own dataset is made inside a hidden folder beside the dataset, which
    a killed run leaves for the next one to remove (:func:`..output_folder.remove_stale`)."""
    folder = Path(options.output).expanduser().absolute()
    if not (folder / DATASET_FILE).is_file():
        return export(options, events)
    dataset = _read(folder)
    _check_request(dataset, options, folder)
    remove_stale(folder)
    hidden = Path(partial_path(folder, ".adding"))
    shutil.rmtree(hidden, ignore_errors=True)
    try:
        added = export(replace(options, output=str(hidden / folder.name),
                               keep_classes=options.keep_classes or str(folder)), events, adding=True)
        summary = add_to_dataset(folder, hidden / folder.name, events)
    finally:
        shutil.rmtree(hidden, ignore_errors=True)
    summary["added"] = {key: added[key] for key in ("chips", "train_chips", "val_chips", "class_pixels")}
    return summary


def add_to_dataset(folder, new_folder, events) -> dict:
    """Move the chips of the chip dataset ``new_folder`` into the one in ``folder`` and rewrite its dataset.json
    (see the module's docstring); returns the summary of the whole dataset, with ``output_dir`` and ``dataset_json``.
    ``new_folder`` is left without the chips it gave."""
    folder, new_folder = Path(folder), Path(new_folder)
    old, new = _read(folder), _read(new_folder)
    _check_compatible(old, new, folder, events)
    _check_shared(old, new, folder, new_folder, events)
    sources = _sources(old, folder) + [_source_entry(new, new_folder)]
    index = len(sources) - 1
    prefix = f"s{index + 1}_"
    moved, renamed = [], {}
    try:
        for chip in new["chips"]:
            for key in ("image", "label"):
                if chip[key] in renamed:
                    continue
                relative = Path(chip[key])
                target = (relative.parent / (prefix + relative.name)).as_posix()
                if (folder / target).exists():
                    raise BadInputError(f"The chip dataset {folder} already holds a file {target}, which the chips of "
                                        f"another raster would replace. Export this raster to a new folder.")
                os.replace(new_folder / relative, folder / target)
                moved.append((new_folder / relative, folder / target))
                renamed[chip[key]] = target
        chips = old["chips"] + [dict(chip, id=prefix + str(chip["id"]), image=renamed[chip["image"]],
                                     label=renamed[chip["label"]], source=index) for chip in new["chips"]]
        merged = _merged(old, new, sources, chips)
        write_dataset_json(folder, merged)
    except BaseException:
        for origin, target in reversed(moved):
            try:
                os.replace(target, origin)
            except OSError:
                pass
        raise
    _tell(merged, new, folder, events)
    return dict(merged["summary"], output_dir=str(folder), dataset_json=str(folder / DATASET_FILE))


def _read(folder: Path) -> dict:
    try:
        return json.loads((folder / DATASET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{folder / DATASET_FILE} cannot be read ({exc}): the chip dataset cannot be added to. "
                            f"Export to a new folder.") from exc


def _name(dataset: dict) -> str:
    return Path(str((dataset.get("source") or {}).get("image") or "the raster")).name


def _check_request(dataset: dict, options, folder: Path) -> None:
    """What can be refused before exporting: another chip size, or the same raster and labels raster added again
    (polygons are compared once exported: :func:`_check_shared`)."""
    if int(options.chip_size) != int(dataset.get("chip_size", 0)):
        raise BadInputError(f"The chip dataset in {folder} has chips of {dataset.get('chip_size')} px; this export "
                            f"asks for {options.chip_size} px. The chips of one dataset share a size: set the chip "
                            f"size to {dataset.get('chip_size')} px, or export to a new folder.")
    if options.labels_vector is not None:
        return  # polygons may be another selection of the same layer: their pixels are compared once exported
    image = str(Path(options.image).absolute())
    labels = str(options.labels_source or options.labels_raster)
    for number, source in enumerate(dataset.get("sources") or [dataset.get("source") or {}], start=1):
        if _same_file(source.get("image"), image) and _same_labels(source.get("labels"), labels):
            raise BadInputError(f"{Path(image).name} with these labels is already in the chip dataset in {folder} "
                                f"(raster {number}): adding it again would count its "
                                f"chips twice. Add another raster, or export to a new folder to export it again.")


def _same_file(one, other) -> bool:
    try:
        return bool(one) and os.path.samefile(one, other)
    except OSError:
        return str(one) == str(other)


def _same_labels(recorded, given: str) -> bool:
    if recorded is None:
        return False
    path = str(Path(given).absolute()) if os.path.exists(given) else given
    return _same_file(recorded, path) if os.path.exists(path) else str(recorded) == path


def _check_compatible(old: dict, new: dict, folder: Path, events) -> None:
    name = _name(new)
    count, new_count = old["bands"]["count"], new["bands"]["count"]
    if count != new_count:
        raise BadInputError(f"{name} gives {new_count} bands, the chips of the dataset in {folder} have {count} "
                            f"({', '.join(old['bands']['names'])}). A model reads the same bands from every raster: "
                            f"choose Bands so that {name} gives those {count} bands in that order, or export it to "
                            f"a new folder.")
    if old["bands"]["dtype"] != new["bands"]["dtype"]:
        raise BadInputError(f"{name} holds {new['bands']['dtype']} pixels, the chip dataset in {folder} "
                            f"{old['bands']['dtype']}: values on another scale would teach the model two meanings "
                            f"for one value. Convert {name} to {old['bands']['dtype']} on the same scale (Raster > "
                            f"Conversion > Translate), or export it to a new folder.")
    if new.get("nodata") is not None and not _same_value(old.get("nodata"), new.get("nodata")):
        theirs = "none" if old.get("nodata") is None else old["nodata"]
        raise BadInputError(f"{name} has the nodata value {new['nodata']}, the rasters of the chip dataset in "
                            f"{folder} {theirs}: the model would read one raster's no-data pixels as values. Give "
                            f"the rasters one nodata value (GDAL's Translate with -a_nodata {new['nodata']}, or "
                            f"-a_nodata none where {name} has no empty pixels), then export them again into a new "
                            f"folder.")
    if int(new["chip_size"]) != int(old["chip_size"]):
        raise BadInputError(f"{name}'s chips are {new['chip_size']} px, the dataset's {old['chip_size']} px: export "
                            f"it with chip size {old['chip_size']}.")
    ClassSchema.from_list(new["classes"])
    kept = {c["id"]: c["name"] for c in new["classes"]}
    lost = [c["name"] for c in old["classes"] if kept.get(c["id"]) != c["name"]]
    if lost:  # only where a class list of another run was given to keep instead of the dataset's own
        raise BadInputError(f"The classes of {name} give other values to the chip dataset's {', '.join(lost)}: "
                            f"nothing was added. Leave 'Class list to keep' empty when adding to a dataset (its own "
                            f"classes are kept), or export to a new folder.")
    if _named(old) and _named(new) and old["bands"]["names"] != new["bands"]["names"]:
        events.warning(f"The bands of {name} are named {', '.join(new['bands']['names'])}, the dataset's "
                       f"{', '.join(old['bands']['names'])}: the model takes them as the same bands, in this order. "
                       f"Check that Bands chose the same bands of both rasters.")
    chosen = [c for c in map(_band_choice, old.get("sources") or [old]) if c]
    new_chosen = _band_choice(new)
    if chosen and new_chosen and new_chosen[0] not in [bands for bands, _ in chosen]:
        events.warning(f"The bands of {name} were chosen as {describe_choices([new_chosen])}, the dataset's "
                       f"rasters' as {describe_choices(chosen)}. The model records each: Classify reads a raster by "
                       f"the choice of the training raster with as many bands (or by band names). Give Bands when "
                       f"classifying any other raster, or when two training rasters have as many bands.")
    ratio = _resolution_ratio(old, new)
    if ratio is not None and ratio > RESOLUTION_RATIO:
        events.warning(f"The pixels of {name} are {ratio:.1f}x the size of the dataset's (or a {ratio:.1f}th): the "
                       f"model learns the classes at two scales. Resample the rasters to one resolution for a "
                       f"model that maps at one.")


def _check_shared(old: dict, new: dict, folder: Path, new_folder: Path, events) -> None:
    """Refuse labels already in the dataset on the same raster (all of them, or more than SHARED_SHARE of their
    pixels: the same polygons again, or a whole layer of which some were added before); warn of a few."""
    image = (new.get("source") or {}).get("image")
    for index, source in enumerate(old.get("sources") or [old.get("source") or {}]):
        if not _same_file(source.get("image"), image):
            continue
        chips = [chip for chip in old["chips"] if int(chip.get("source", 0)) == index]
        shared, labelled = shared_pixels(new["chips"], new_folder, chips, folder, int(old["chip_size"]))
        where = f"raster {index + 1} of the chip dataset in {folder}"
        if labelled and shared >= labelled * (1 - SHARED_SHARE):
            raise BadInputError(f"{_name(new)} with these labels is already in the chip dataset ({where}): adding "
                                f"them again would count their chips twice. Add another raster, or labels not yet "
                                f"added; to export this raster again with other settings, export to a new folder.")
        if shared > labelled * SHARED_SHARE:
            raise BadInputError(f"{shared:,} of the {labelled:,} labelled pixels of these labels are labelled on "
                                f"{_name(new)} already ({where}): their chips would count twice, and could be trained "
                                f"on in one export and scored in the other. Add only the polygons not yet added "
                                f"(select them and check Selected features only), or export the whole layer to a "
                                f"new folder.")
        if shared:
            events.warning(f"{shared:,} of the {labelled:,} labelled pixels of these labels are labelled on "
                           f"{_name(new)} already ({where}): polygons that touch or overlap ones added before? "
                           f"Those pixels count twice.")


def _band_choice(dataset: dict):
    bands = dataset.get("bands") or {}
    chosen = [int(b) for b in bands.get("source_bands") or ()]
    return (chosen, bands.get("source_count")) if chosen else None


def _same_value(one, other) -> bool:
    if isinstance(one, str) or isinstance(other, str):  # "nan"
        return str(one).lower() == str(other).lower()
    return one is not None and other is not None and math.isclose(float(one), float(other))


def _named(dataset: dict) -> bool:
    return not any(name.startswith("band ") for name in dataset["bands"]["names"])


def _resolution_ratio(old: dict, new: dict):
    key = "ground_resolution" if old.get("ground_resolution") and new.get("ground_resolution") else "resolution"
    try:
        one, other = float(old[key][0]), float(new[key][0])
    except (KeyError, TypeError, IndexError, ValueError):
        return None
    return max(one, other) / min(one, other) if min(one, other) > 0 else None


def _source_entry(dataset: dict, folder: Path) -> dict:
    """One raster's entry of ``sources``: what its export recorded, and its grid (``transform``: the affine a, b,
    c, d, e, f), found from its first chip."""
    entry = dict(dataset.get("source") or {})
    entry.update({key: dataset.get(key) for key in SOURCE_KEYS})
    entry["chips"] = len(dataset["chips"])
    first = dataset["chips"][0]
    try:
        with rasterio.open(folder / first["image"]) as chip:
            origin = chip.transform * Affine.translation(-first["window"]["col_off"], -first["window"]["row_off"])
    except (rasterio.errors.RasterioError, KeyError, TypeError) as exc:
        raise BadInputError(f"The chip {first.get('image')} of {folder} cannot be read ({exc}): export the chip "
                            f"dataset again.") from exc
    entry["transform"] = list(origin)[:6]
    return entry


def _sources(dataset: dict, folder: Path) -> list:
    return list(dataset.get("sources") or [_source_entry(dataset, folder)])


def _merged(old: dict, new: dict, sources: list, chips: list) -> dict:
    merged = dict(old)
    count, mean, std = pooled([(s["valid_pixels"], s["mean"], s["std"]) for s in sources])
    merged.update(classes=new["classes"], mean=[float(v) for v in mean], std=[float(v) for v in std],
                  valid_pixels=count, sources=sources, chips=chips)
    for key in PIXEL_KEYS:
        if key in old and key in new:
            merged[key] = _summed(old[key], new[key])
    schema = ClassSchema.from_list(new["classes"])
    distinct = {"train": merged.get("distinct_train_class_pixels") or merged["train_class_pixels"],
                "val": merged.get("distinct_val_class_pixels") or merged["val_class_pixels"]}
    merged["split"] = _merged_split(sources, schema, distinct)
    merged["summary"] = dict(class_summary(chips, schema, distinct), rasters=len(sources))
    return merged


def _summed(one: dict, other: dict) -> dict:
    keys = sorted(set(one) | set(other), key=int)
    return {key: int(one.get(key, 0)) + int(other.get(key, 0)) for key in keys}


def _merged_split(sources: list, schema, distinct: dict) -> dict:
    """The rasters' splits summed: their common method (or "mixed"), polygon and chip counts added; classes with
    training pixels and none held out are "unsplit" over all of them."""
    splits = [s.get("split") or {} for s in sources]
    methods = {split["method"] for split in splits if split.get("method")}
    if not methods:
        return {}
    first = next(split for split in splits if split.get("method"))
    merged = {key: value for key, value in first.items() if key not in ("val_fids", "val_parts", "warning")}
    merged["method"] = methods.pop() if len(methods) == 1 else "mixed"
    for key in ("val_polygons", "train_polygons", "polygon_groups", "dropped_overlapping"):
        values = [split[key] for split in splits if isinstance(split.get(key), int)]
        if values:
            merged[key] = sum(values)
    if "unsplit_classes" in merged:
        merged["unsplit_classes"] = [c.name for c in schema if distinct["train"].get(str(c.id), 0) > 0
                                     and distinct["val"].get(str(c.id), 0) == 0]
    merged["per_raster"] = True  # each raster's own split (its held-out feature ids) is in its sources entry
    return merged


def _tell(merged: dict, new: dict, folder: Path, events) -> None:
    summary, sources = merged["summary"], merged["sources"]
    added = len(new["chips"])
    names = [Path(image).name for image in dict.fromkeys(str(s.get("image")) for s in sources)]
    exports = f", {len(sources)} exports" if len(names) < len(sources) else ""
    events.info(f"Added {added} chips of {_name(new)} to the chip dataset {folder}: it holds {summary['chips']} "
                f"chips ({summary['train_chips']} train, {summary['val_chips']} val) of {len(names)} raster"
                f"{'s' if len(names) > 1 else ''} ({', '.join(names)}{exports}), band statistics over all their "
                f"{merged['valid_pixels']:,} valid pixels.")
    events.info("Labelled pixels per class over all the rasters (train / val): " + "; ".join(
        f"{name} {summary['train_class_pixels'][name]} / {summary['val_class_pixels'][name]}"
        for name in summary["class_pixels"]))
    if summary["missing_classes"]:
        events.warning("Classes with no training pixels in any raster: " + ", ".join(summary["missing_classes"])
                       + ". Label some of each, or the model cannot learn them.")
    if summary["rare_classes"]:
        events.warning(f"Classes with very few training pixels over all the rasters (under {RARE_SHARE:.0%}): "
                       + ", ".join(summary["rare_classes"]) + ". Label more of them for a reliable model.")
    if summary["missing_in_val"]:
        events.warning("Classes absent from the validation chips of every raster (not scored): "
                       + ", ".join(summary["missing_in_val"]))
