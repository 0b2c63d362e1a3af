"""Class lists stored beside data: ``classes.json`` sidecars. Pure Python (no numpy, no GDAL), so the
QGIS side can use it too.

A sidecar is a JSON list of classes (``{"id", "name", "colour"|"color"}``) or an object with such a
list under ``"classes"`` (as the Zion NLCD sample has).
"""
import json
from pathlib import Path

from .errors import BadInputError
from .schema import ClassSchema


def find_sidecar(path, folder_level: bool):
    """``<file>.classes.json`` or ``<stem>.classes.json`` beside a file; with ``folder_level`` also
    ``classes.json`` in its folder (meant for a classified raster, never for polygons)."""
    path = Path(str(path).split("|", 1)[0])
    names = [path.name + ".classes.json", path.stem + ".classes.json"] + (["classes.json"] if folder_level else [])
    for name in names:
        if (path.parent / name).is_file():
            return path.parent / name
    return None


def read_classes_json(path) -> ClassSchema:
    try:
        content = json.loads(Path(path).read_text(encoding="utf-8"))
        items = content["classes"] if isinstance(content, dict) else content
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"Cannot read the class list {path} ({exc}). Fix or remove the file.") from exc
    return ClassSchema.from_list(items)
