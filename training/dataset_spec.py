"""Read a chip dataset's ``dataset.json`` (DESIGN.md, "Chip dataset") defensively.

Torch-free. Every problem becomes a :class:`BadInputError` that names the folder, what is wrong and
how to fix it, so a broken or empty folder never surfaces as a Python traceback.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path

from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.dataset_json import load_dataset
from landcover_plugin.core.schema import ClassSchema

_FIX = "Choose a folder written by 'Export label chips', or export the chips again."


@dataclass
class Chip:
    name: str
    image: Path
    label: Path
    split: str


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

    def split(self, name: str) -> list:
        return [c for c in self.chips if c.split == name]


def load_spec(folder) -> DatasetSpec:
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"The chip dataset folder '{folder}' does not exist or is not a folder. {_FIX}")
    meta_path = folder / "dataset.json"
    try:
        meta = load_dataset(folder)  # the contract's own reader: file, JSON, schema version, classes
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise BadInputError(f"'{meta_path}' lacks or mangles an entry the chip dataset needs "
                            f"({type(exc).__name__}: {exc}). {_FIX}") from exc
    schema = meta["schema"]

    bands = meta.get("bands") or {}
    if isinstance(bands, list):  # a list of band names
        bands = {"names": bands, "count": len(bands)}
    count = _int(bands.get("count", len(bands.get("names") or [])), "bands.count", meta_path)
    names = list(bands.get("names") or [f"band {b + 1}" for b in range(count)])
    if count < 1 or len(names) != count:
        raise BadInputError(f"'{meta_path}' gives {count} bands but {len(names)} band names. {_FIX}")
    dtype = str(bands.get("dtype") or meta.get("dtype") or "float32")

    mean = _per_band(_first(meta, bands, "mean"), count, "mean", meta_path)
    std = _per_band(_first(meta, bands, "std"), count, "std", meta_path)
    std = [s if s > 1e-12 else 1.0 for s in std]  # a constant band: leave its scale alone

    chip_size = _int(meta.get("chip_size"), "chip_size", meta_path)
    entries = meta.get("chips")
    if not isinstance(entries, list) or not entries:
        raise BadInputError(f"The chip dataset '{folder}' holds no chips: the export found no chip with "
                            f"enough labelled pixels. Digitise more training areas, lower the minimum "
                            f"labelled fraction or use a smaller chip size, then export again.")
    chips = [_chip(entry, index, meta_path) for index, entry in enumerate(entries)]
    return DatasetSpec(folder=folder, schema=schema, band_names=names, dtype=dtype, nodata=meta.get("nodata"),
                       mean=mean, std=std, chip_size=chip_size, crs=str(meta.get("crs") or ""),
                       resolution=meta.get("resolution"), chips=chips, raw=meta)


def _chip(entry, index, meta_path: Path) -> Chip:
    name = str(entry.get("id") or entry.get("name") or index)
    split = str(entry.get("split", "train")).lower()
    if split not in ("train", "val"):
        raise BadInputError(f"Chip '{name}' in '{meta_path}' has split '{split}'; use 'train' or 'val'. {_FIX}")
    return Chip(name=name, image=Path(entry["image_path"]), label=Path(entry["label_path"]), split=split)


def _first(primary: dict, secondary: dict, *keys):
    for source in (primary, secondary):
        for key in keys:
            if isinstance(source, dict) and source.get(key) is not None:
                return source[key]
    return None


def _int(value, what: str, meta_path: Path) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"'{meta_path}' has no valid '{what}' (got {value!r}). {_FIX}") from exc


def _per_band(values, count: int, what: str, meta_path: Path) -> list:
    if values is None:
        raise BadInputError(f"'{meta_path}' has no per-band '{what}', needed to standardise the bands. {_FIX}")
    values = values if isinstance(values, (list, tuple)) else [values]
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"'{meta_path}' has a non-numeric '{what}': {values!r}. {_FIX}") from exc
    if len(values) == 1:
        values = values * count
    if len(values) != count or not all(math.isfinite(v) for v in values):
        raise BadInputError(f"'{meta_path}' has {len(values)} '{what}' values for {count} bands "
                            f"(or a value that is not finite). {_FIX}")
    return values
