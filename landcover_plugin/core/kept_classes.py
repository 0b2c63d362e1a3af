"""Class values kept from an earlier run, so the maps of two iterations can be compared value by value.

Without a class list, the chip exporter numbers text class names in sorted order: a class added in the second
iteration moves the others (value 2 is 'forest' in the first map and 'fallen_dry' in the second), and everything
that reads the map by value (a reclassification, areas per value, reference points labelled by value, the
difference of two maps) silently changes meaning. Given the earlier run's classes (its model, its dataset.json or
a classes JSON), the classes it lists keep their ids, names and colours; classes found in the labels and not in
it get new ids after its highest, in sorted name order; classes of the list without labels this time stay in the
list (the trainer keeps their output channel and never maps them).

Numeric class fields (and label rasters) hold the ids themselves: there the list can only name the values, and a
list that gives a value another name than the labels do is refused, never silently used.

Standard library only: the QGIS side reads the list too, to refuse a bad file before the run.
"""
import json
from pathlib import Path
from typing import NamedTuple

from .class_files import read_classes_json
from .errors import BadInputError
from .model.card import CARD_KEY
from .model.metadata import read_metadata_props
from .schema import MAX_CLASS_ID, ClassInfo, ClassSchema


class KeptList(NamedTuple):
    schema: ClassSchema
    source: str  # the file it was read from, for the messages


KINDS = "an earlier model (.onnx), an earlier chip dataset (its folder or dataset.json) or a classes JSON"


def read_class_list(path) -> ClassSchema:
    """The classes of an earlier run: a model's card (a Deepness model's class names: ids 1..n in channel order,
    as the classifier numbers them), a chip dataset's ``dataset.json`` (or its folder), or a classes JSON (a list
    of ``{id, name, colour}`` or an object with such a list under ``classes``)."""
    path = Path(str(path))
    if path.is_dir() and (path / "dataset.json").is_file():
        path = path / "dataset.json"
    if not path.is_file():
        raise BadInputError(f"The class list to keep '{path}' is not a file. Give {KINDS}.")
    if path.suffix.lower() == ".onnx":
        return _model_classes(path)
    if path.suffix.lower() == ".json":
        return read_classes_json(path)
    raise BadInputError(f"The class list to keep '{path}' is neither a model (.onnx) nor a JSON file. Give {KINDS}.")


def _model_classes(path) -> ClassSchema:
    try:
        props = read_metadata_props(path)
        if CARD_KEY in props:
            return ClassSchema.from_list(json.loads(props[CARD_KEY])["classes"])
        if "class_names" in props:  # a Deepness model: the classifier numbers its channels 1..n
            names = json.loads(props["class_names"])
            names = names[0] if isinstance(names, list) else names
            return ClassSchema.from_names([names[k] for k in sorted(names, key=int)])
    except (OSError, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise BadInputError(f"Cannot read the classes of the model '{path}' ({exc}). Give the model made by "
                            f"'Train segmentation model', its chip dataset's dataset.json or a classes JSON.") from exc
    raise BadInputError(f"The model '{path}' records no classes (no landcover card, no Deepness class names). Give "
                        f"its chip dataset's dataset.json or a classes JSON instead.")


def keep_class_values(kept: ClassSchema, labels: ClassSchema, values_are_ids: bool, named: bool,
                      present: set, source: str) -> tuple:
    """(the schema the chips are written with, {id in ``labels``: id written}, a report for the log and
    dataset.json).

    ``labels``: the classes the labels give (their schema, settled as without a list); ``values_are_ids``: the
    labels hold class ids (a numeric field or a raster), else names; ``named``: the labels' names are real (not
    the 'class <id>' made up for bare numbers); ``present``: the ids of ``labels`` that label something this
    time; ``source``: the list's file, for the messages."""
    if values_are_ids:
        added = _merge_ids(kept, labels, named, source)
    else:
        added = _merge_names(kept, labels, source)
    if values_are_ids:  # the values are the ids: listed in their order, as without a list
        merged = ClassSchema(sorted(list(kept) + added, key=lambda c: c.id))
        translation = {c.id: c.id for c in labels}
    else:
        merged = ClassSchema(list(kept) + added)
        ids = {c.name.lower(): c.id for c in merged}
        translation = {c.id: ids[c.name.lower()] for c in labels}
    present = {translation[i] for i in present}  # as ids of the merged list
    report = {"from": str(source), "kept": [f"{c.id}={c.name}" for c in kept],
              "added": [f"{c.id}={c.name}" for c in added], "added_by": "value" if values_are_ids else "name",
              "without_labels": [c.name for c in kept if c.id not in present]}
    return merged, translation, report


def _merge_names(kept, labels, source) -> list:
    """Text classes: matched by name (any case); the others numbered after the list's highest id, in sorted name
    order (as the exporter numbers names without a list)."""
    known = {c.name.lower() for c in kept}
    new = sorted((c for c in labels if c.name.lower() not in known), key=lambda c: c.name)
    top = max(kept.ids)
    if top + len(new) > MAX_CLASS_ID:
        raise BadInputError(f"The labels add {len(new)} classes to the {len(kept)} of the class list to keep "
                            f"({source}), whose highest id is {top}: ids would pass {MAX_CLASS_ID}. Give a list "
                            f"with lower ids, or merge some classes.")
    return [ClassInfo(top + 1 + i, c.name, c.colour) for i, c in enumerate(new)]


def _merge_ids(kept, labels, named, source) -> list:
    """Numeric labels: the values are the ids. The list names a value it holds; a value it lacks is added as it
    is. A value the labels name otherwise than the list, or a name the list gives another value, is refused."""
    by_id = {c.id: c for c in kept}
    by_name = {c.name.lower(): c for c in kept}
    clashes, added = [], []
    for c in labels:
        listed = by_id.get(c.id)
        if listed is not None:
            if named and listed.name.lower() != c.name.lower():
                clashes.append(f"value {c.id} is '{c.name}' in the labels but '{listed.name}' in the list")
            continue
        other = by_name.get(c.name.lower()) if named else None
        if other is not None:
            clashes.append(f"'{c.name}' is value {c.id} in the labels but {other.id} in the list")
            continue
        added.append(c)
    if clashes:
        raise BadInputError(f"The class list to keep ({source}) disagrees with the labels, whose class field holds "
                            f"the class values themselves: {'; '.join(clashes)}. A numeric class field cannot be "
                            f"renumbered by a list: recode the field (e.g. with the field calculator) to the list's "
                            f"values, or leave the class list to keep empty.")
    return sorted(added, key=lambda c: c.id)


def describe(report: dict) -> str:
    """One line for the log: what was kept, added, and listed without labels this time."""
    text = f"Class values kept from {report['from']}: {', '.join(report['kept'])}"
    how = "with their own values" if report.get("added_by") == "value" else "numbered after them, by name"
    text += f"; new classes ({how}): {', '.join(report['added'])}" if report["added"] else "; no new class"
    if report["without_labels"]:
        text += (f". Without labels this time (kept in the list, with no training pixel; the model never maps "
                 f"them): {', '.join(report['without_labels'])}")
    return text + "."
