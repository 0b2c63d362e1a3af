"""The chip dataset's ``dataset.json`` (DESIGN.md, "Chip dataset"): writing, loading, recognising.

A chip dataset is a folder::

    images/<chip>.tif   all source bands, source dtype and nodata, georeferenced (source CRS, chip transform)
    labels/<chip>.tif   uint8 class ids on the same grid, 0 = unlabelled (nodata 0, colour table)
    dataset.json        written last: a folder without it is not a dataset

``dataset.json`` keys (schema_version 1)::

    schema_version   1
    classes          [{"id": 1, "name": "forest", "colour": "#1b7837"}, ...]
    bands            {"count": 4, "names": ["band 1", ...], "dtype": "uint16", "source_bands": [1, 2, 3, 4],
                     "source_count": 4}: the source raster's band numbers (1-based) the chips hold, in their
                     order, and how many bands the source had (both absent in older datasets)
    nodata           the image nodata value (number), "nan", or null
    crs              WKT of the source raster's CRS (null when it has none)
    resolution       [x, y] pixel size in CRS units (positive)
    ground_resolution  [x, y] pixel size in metres on the ground at the source raster's centre (Web Mercator's
                     units are 1/cos(latitude) metres; in a geographic CRS x is the east-west side, y the
                     north-south one); null for a raster with no CRS (absent in older datasets, and null there
                     for a geographic CRS)
    chip_size        chip width = height in pixels
    stride           step between chip windows in pixels
    mean, std        per band, over every valid source pixel (not nodata, not NaN in any band)
    class_pixels     {"<id>": pixels} summed over all chips (a pixel in two overlapping chips counts
                     twice, as training sees it); also "train_class_pixels" and "val_class_pixels"
    distinct_class_pixels  {"<id>": pixels}: labelled source pixels in the chips, each counted once (what the
                     export reports); also "distinct_train_class_pixels" and "distinct_val_class_pixels"
                     (absent in older datasets)
    valid_pixels     how many source pixels the mean and std were computed over
    min_labelled     the labelled share a chip needed
    chips            [{"id", "image": "images/x.tif", "label": "labels/x.tif",
                       "window": {"row_off", "col_off", "height", "width"},   (pixels in the source)
                       "split": "train" | "val", "labelled_pixels": n, "class_counts": {"<id>": n}}]
    split            {"method": "blocks" | "polygons", "val_fraction_requested", "seed", ...}; with "blocks"
                     also "block_size", "dropped_overlapping"; with "polygons" "val_fids" (the feature ids held
                     out whole), "val_polygons", "train_polygons", "polygon_groups", "unsplit_classes"; each
                     part of a multi-part feature counts as a polygon, and "val_parts" ({"<fid>": [part numbers,
                     from 0]}) says which parts of such features are held out (the others train).
                     With "polygons" a window may give a train chip and a val chip (``<id>_val``) sharing
                     one image file; a val chip labels only pixels no earlier window labelled.
    source           {"image", "labels", "labels_kind": "vector" | "raster", "class_field", "image_from_chips"}:
                     the raster's absolute path and its path from the dataset's folder (absent in older
                     datasets), by which :func:`load_dataset` finds a raster moved with its chips
    sources          (a dataset of several rasters, see :mod:`.merge`) per raster: its "source" entry with its
                     "crs", "resolution", "nodata", "bands", "mean", "std", "valid_pixels", "split", "summary" and
                     "chips" (how many); each chip's "source" is its raster's index here (absent: 0). The top-level
                     source, crs, resolution and bands are the first raster's; mean, std, valid_pixels and the
                     pixel counts are over all of them
    summary          what chip export reported (chips per split, distinct pixels per class, missing/rare
                     classes)

Class ids in ``class_pixels``/``class_counts`` are strings (JSON keys); :func:`load_dataset` gives
them back as ints, turns ``"nan"`` into ``float('nan')`` and adds absolute chip paths. :func:`load_spec`
is the trainer's view of the same file: checked, typed (:class:`DatasetSpec`), every problem a
:class:`BadInputError` that names the folder, what is wrong and how to fix it.
"""
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BadInputError
from ..schema import ClassSchema

DATASET_FILE = "dataset.json"
IMAGES_DIR = "images"
LABELS_DIR = "labels"
SCHEMA_VERSION = 1
RASTER_ROWS = 1 << 24  # rows set aside for a raster of another grid when several are put on one (raster_shifts)


def nodata_to_json(nodata):
    if nodata is None:
        return None
    if isinstance(nodata, float) and math.isnan(nodata):
        return "nan"
    return int(nodata) if float(nodata).is_integer() else float(nodata)


def nodata_from_json(value):
    if isinstance(value, str) and value.lower() == "nan":
        return float("nan")
    return value


def write_dataset_json(folder, content: dict) -> Path:
    """Write ``dataset.json`` through a temporary name, so a reader never sees half a file. Each raster's
    ``image_from_chips`` (its path from the dataset's folder) is recorded where the raster is there to measure it
    from (a staging folder beside the dataset's gives the same path)."""
    for source in _source_entries(content):
        image = source.get("image")
        if image and os.path.isfile(image):
            try:
                source["image_from_chips"] = Path(os.path.relpath(image, folder)).as_posix()
            except ValueError:  # on another drive (Windows): there is no path from the folder
                source.pop("image_from_chips", None)
    path = Path(folder) / DATASET_FILE
    partial = path.with_suffix(".json.partial")
    write_bytes(partial, json.dumps(content, indent=1).encode("utf-8"))
    os.replace(partial, path)
    return path


def write_bytes(path, data) -> None:
    """Write a file of the chip dataset being made (in its staging folder) through Python's own file, so that a
    failed write (a full disk, a quota: GDAL only prints those) is a BadInputError naming the folder and the fix."""
    path = Path(path)
    try:
        with open(path, "wb") as handle:
            handle.write(data)
    except OSError as exc:
        folder = path.parent.parent if path.parent.name in (IMAGES_DIR, LABELS_DIR) else path.parent
        folder = folder.parent  # the staging folder's: where the dataset goes
        free = shutil.disk_usage(folder).free / 2**20
        raise BadInputError(f"Cannot write the chip dataset into {folder}: {exc.strerror or exc} ({free:.0f} MB "
                            f"free). Free some space or choose another folder: nothing was written.") from exc


def load_dataset(folder) -> dict:
    """Read and check a chip dataset; returns the dataset.json dict with conveniences added:

    ``schema`` (a :class:`ClassSchema`), ``folder`` (Path), ``nodata`` as a number or NaN,
    ``class_pixels`` etc. keyed by int id, and per chip ``image_path`` / ``label_path`` (absolute Paths); where
    the dataset moved with its rasters, each moved source's ``image`` is its path here, ``image_recorded`` the
    export's, and ``folder_recorded`` where the dataset was (see :func:`_locate_moved_rasters`).
    """
    folder = dataset_folder(folder)
    path = folder / DATASET_FILE
    if not path.is_file():
        raise BadInputError(f"{folder} is not a chip dataset: it has no {DATASET_FILE}. Run 'Export label "
                            f"chips' first and choose its output folder.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BadInputError(f"{path} cannot be read as JSON ({exc}). Export the chips again.") from exc
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BadInputError(f"{path} has schema_version {version!r}; this plugin reads version {SCHEMA_VERSION}. "
                            f"Export the chips again with this plugin.")
    data["schema"] = ClassSchema.from_list(data["classes"])
    data["folder"] = folder
    data["nodata"] = nodata_from_json(data.get("nodata"))
    for key in ("class_pixels", "train_class_pixels", "val_class_pixels", "distinct_class_pixels",
                "distinct_train_class_pixels", "distinct_val_class_pixels"):
        if key in data:
            data[key] = {int(k): int(v) for k, v in data[key].items()}
    for chip in data["chips"]:
        chip["class_counts"] = {int(k): int(v) for k, v in chip.get("class_counts", {}).items()}
        chip["image_path"] = folder / chip["image"]
        chip["label_path"] = folder / chip["label"]
    _locate_moved_rasters(data, folder)
    return data


def _source_entries(content: dict) -> list:
    """Every ``source`` entry of a dataset.json's content: the top-level one and those of ``sources``."""
    return [entry for entry in [content.get("source"), *(content.get("sources") or [])] if isinstance(entry, dict)]


def _locate_moved_rasters(data: dict, folder: Path) -> None:
    """A raster no longer where its export recorded it, but where ``image_from_chips`` leads from the dataset's folder
    (the project folder moved, or was copied to a GPU server with the same layout), is read from there: its entry's
    ``image`` becomes that path and ``image_recorded`` keeps the old one. Training reads the raster after the chips
    (held-out estimate weighed by the map's class shares, light sensitivity, tile agreement)."""
    for source in _source_entries(data):
        recorded, relative = source.get("image"), source.get("image_from_chips")
        if recorded and relative and not os.path.exists(recorded) and (folder / relative).is_file():
            source["image_recorded"] = recorded
            source["image"] = str((folder / relative).resolve())
            data.setdefault("folder_recorded", str(_folder_where_recorded(folder, recorded, relative)))


def _folder_where_recorded(folder: Path, recorded: str, relative: str) -> Path:
    """Where the chip dataset was when its raster was at ``recorded``, the layout kept: ``recorded`` less the
    ``relative`` path's tail, then the folders that its leading '..' climbed out of, named as they are now."""
    parts = Path(relative).parts
    up = next((i for i, part in enumerate(parts) if part != ".."), len(parts))
    base = Path(recorded)
    for _ in parts[up:]:
        base = base.parent
    return base.joinpath(*folder.parts[len(folder.parts) - up:]) if up else base


def is_chip_dataset_folder(folder) -> bool:
    """True when ``folder`` holds a chip dataset and nothing else (so it may be replaced):
    ``dataset.json`` plus only the chip files it lists (and GDAL's ``.aux.xml`` sidecars)."""
    folder = Path(folder)
    try:
        data = json.loads((folder / DATASET_FILE).read_text(encoding="utf-8"))
        listed = {DATASET_FILE}
        for chip in data["chips"]:
            listed.update((chip["image"], chip["label"]))
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for root, _dirs, files in os.walk(folder):
        relative_root = Path(root).relative_to(folder)
        if relative_root.parts and relative_root.parts[0] not in (IMAGES_DIR, LABELS_DIR):
            return False
        if len(relative_root.parts) > 1:
            return False
        for name in files:
            relative = (relative_root / name).as_posix()
            if relative not in listed and not (relative.endswith(".aux.xml") and relative[:-8] in listed):
                return False
    return True


_FIX = "Choose a folder written by 'Export label chips', or export the chips again."


@dataclass
class Chip:
    name: str
    image: Path
    label: Path
    split: str
    window: tuple = None  # (row_off, col_off) in the source raster, when dataset.json gives it
    source: int = 0  # which raster of the dataset's ``sources`` (0: the first, or the only one)
    shift: tuple = (0, 0)  # (rows, cols) from its raster's grid to the grid of all the dataset's rasters

    @property
    def place(self):
        """The window's offsets on one grid for every raster of the dataset (None without a window): see
        :func:`raster_shifts`."""
        return None if self.window is None else (self.window[0] + self.shift[0], self.window[1] + self.shift[1])


@dataclass
class DatasetSpec:
    folder: Path
    schema: ClassSchema
    band_names: list
    dtype: str
    nodata: object
    mean: list
    std: list
    chip_size: int
    crs: str
    resolution: object
    chips: list = field(default_factory=list)
    raw: dict = field(default_factory=dict)

    @property
    def band_count(self) -> int:
        return len(self.band_names)

    @property
    def sources(self) -> list:
        """Per raster the chips were cut from, its ``source`` entry (``image``, ``labels``, ...): one for a dataset of
        one raster."""
        return raster_sources(self.raw)

    @property
    def images(self) -> list:
        """The paths of the rasters the chips were cut from, as their exports recorded them, or where they moved with
        the chips (``image_recorded`` then keeps the recorded one; see :func:`load_dataset`); None where unknown."""
        return [source.get("image") for source in self.sources]

    def split(self, name: str) -> list:
        return [c for c in self.chips if c.split == name]


def raster_sources(content: dict) -> list:
    """Per raster a dataset.json's chips were cut from (``content``: its content), its ``source`` entry."""
    return list(content.get("sources") or [content.get("source") or {}])


def dataset_folder(path) -> Path:
    """The chip dataset folder ``path`` names: itself, or the folder of its ``dataset.json`` when the file was
    given (what a file picker suggests)."""
    path = Path(path)
    return path.parent if path.name == DATASET_FILE and path.is_file() else path


def load_spec(folder) -> DatasetSpec:
    """The chip dataset in ``folder`` (or of its ``dataset.json``) as the trainer needs it, checked (see
    :func:`load_dataset`)."""
    folder = dataset_folder(folder)
    if folder.is_file():
        raise BadInputError(f"'{folder}' is a file, not a chip dataset folder. Choose the folder written by 'Export "
                            f"label chips' (the one holding {DATASET_FILE}).")
    if not folder.is_dir():
        raise BadInputError(f"The chip dataset folder '{folder}' does not exist. {_FIX}")
    meta_path = folder / DATASET_FILE
    try:
        meta = load_dataset(folder)
        bands = meta["bands"]
        count, names, dtype = int(bands["count"]), list(bands["names"]), str(bands["dtype"])
        chip_size = int(meta["chip_size"])
        entries = meta["chips"]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BadInputError(f"'{meta_path}' lacks or mangles an entry the chip dataset needs "
                            f"({type(exc).__name__}: {exc}). {_FIX}") from exc
    if count < 1 or len(names) != count:
        raise BadInputError(f"'{meta_path}' gives {count} bands but {len(names)} band names. {_FIX}")
    mean = _per_band(meta.get("mean"), count, "mean", meta_path)
    std = [s if s > 1e-12 else 1.0 for s in _per_band(meta.get("std"), count, "std", meta_path)]  # constant band
    if not entries:
        raise BadInputError(f"The chip dataset '{folder}' holds no chips: the export found no chip with "
                            f"enough labelled pixels. Digitise more training areas, lower the minimum "
                            f"labelled fraction or use a smaller chip size, then export again.")
    shifts = raster_shifts(meta.get("sources"))
    chips = [_chip(entry, meta_path, shifts) for entry in entries]
    return DatasetSpec(folder=folder, schema=meta["schema"], band_names=names, dtype=dtype, nodata=meta["nodata"],
                       mean=mean, std=std, chip_size=chip_size, crs=str(meta.get("crs") or ""),
                       resolution=meta.get("resolution"), chips=chips, raw=meta)


def raster_shifts(sources) -> list:
    """Per raster of a dataset of several (``sources``), the (rows, cols) that put its windows on one grid with the
    others': rasters on the first one's grid (the same CRS and pixel size, whole pixels apart: tiles of one scene,
    or two dates of one place) where they lie on it, so the same place is the same pixel (cross-validation holds
    it out once, on both dates); any other raster :data:`RASTER_ROWS` rows below the previous ones, so it meets
    none of them."""
    if not sources:
        return [(0, 0)]
    first = sources[0]
    shifts = [_grid_shift(first, source) for source in sources]
    known = [shift for shift in shifts if shift is not None] or [(0, 0)]
    top, left = min(row for row, _ in known), min(col for _, col in known)
    return [(shift[0] - top, shift[1] - left) if shift is not None else ((index + 1) * RASTER_ROWS, 0)
            for index, shift in enumerate(shifts)]


def _grid_shift(first: dict, other: dict):
    """(rows, cols) of ``other``'s grid origin on ``first``'s, or None where the two grids differ."""
    try:
        a0, b0, c0, d0, e0, f0 = (float(v) for v in first["transform"])
        a1, b1, c1, d1, e1, f1 = (float(v) for v in other["transform"])
    except (KeyError, TypeError, ValueError):
        return None
    if first.get("crs") != other.get("crs") or b0 or d0 or b1 or d1 or not (
            math.isclose(a0, a1, rel_tol=1e-9) and math.isclose(e0, e1, rel_tol=1e-9)):
        return None
    row, col = (f1 - f0) / e0, (c1 - c0) / a0
    if abs(row - round(row)) > 1e-6 or abs(col - round(col)) > 1e-6:
        return None
    return int(round(row)), int(round(col))


def _chip(entry, meta_path: Path, shifts) -> Chip:
    split = str(entry.get("split"))
    if split not in ("train", "val"):
        raise BadInputError(f"Chip '{entry['id']}' in '{meta_path}' has split '{split}'; use 'train' or 'val'. "
                            f"{_FIX}")
    source = int(entry.get("source") or 0)
    window = entry.get("window")
    offsets = (int(window["row_off"]), int(window["col_off"])) if isinstance(window, dict) and \
        {"row_off", "col_off"} <= set(window) else None
    return Chip(name=str(entry["id"]), image=Path(entry["image_path"]), label=Path(entry["label_path"]),
                split=split, window=offsets, source=source, shift=shifts[source] if source < len(shifts) else
                ((source + 1) * RASTER_ROWS, 0))


def _per_band(values, count: int, what: str, meta_path: Path) -> list:
    if values is None:
        raise BadInputError(f"'{meta_path}' has no per-band '{what}', needed to standardise the bands. {_FIX}")
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"'{meta_path}' has a non-numeric '{what}': {values!r}. {_FIX}") from exc
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise BadInputError(f"'{meta_path}' has {len(values)} '{what}' values for {count} bands "
                            f"(or a value that is not finite). {_FIX}")
    return values
