"""Read every chip window once and write the chips it yields (run by :mod:`.export`).

A *labeller* says which label chips a window yields:

* :class:`BlockLabeller`: one label chip per window labelled enough; the train/val split comes later, by
  spatial blocks (raster labels, or polygons when no validation is asked for).
* :class:`PolygonLabeller`: polygons assigned to training or validation (or all to training, the split then
  made by blocks as above). A window yields a training
  chip (the training polygons' labels) when it is labelled enough, and a validation chip (the validation
  polygons' labels, only on the part of the window no earlier window covered, so each held-out pixel is
  scored once). Where a training polygon's pixels are in no kept chip (small polygons under the labelled
  share, or the part of a polygon that the kept chips miss), windows that hold them are written in a second
  pass (see :mod:`.cover`): every labelled pixel of a training polygon is in some chip.

Both chips of a window share its image file.
"""
from contextlib import contextmanager

import numpy as np
from rasterio import windows as rio_windows
from rasterio.io import MemoryFile

from ..errors import Cancelled
from ..rasters import fill_warning, own_mask, read, valid_mask
from .band_stats import BandStats
from .cover import CellCover
from .dataset import IMAGES_DIR, LABELS_DIR, write_bytes
from .label_sources import window_envelope
from .split import unique_spans, window_offsets


class BlockLabeller:
    split_known = False
    cover = None

    def __init__(self, labels, need: int):
        self.labels, self.need = labels, need
        self.totals = np.zeros(256, dtype=np.int64)  # labelled pixels per class id on the whole grid
        self.on_nodata = np.zeros(256, dtype=np.int64)  # labelled pixels per class id where the image has no data

    def start(self, rows, cols, chip_size) -> None:
        pass

    def chips(self, window, transform, bounds, valid, span) -> list:
        label = self.labels.read(window, transform, bounds)
        self.on_nodata += _span_counts(np.where(valid, 0, label), span)
        label[~valid] = 0
        self.totals += _span_counts(label, span)
        return [("", None, label)] if np.count_nonzero(label) >= self.need else []

    def extra_windows(self):
        return iter(())


class PolygonLabeller:
    def __init__(self, labels, is_val: np.ndarray, need: int):
        self.labels, self.need = labels, need
        self.split_known = bool(is_val.any())  # else: all polygons train, split afterwards by spatial blocks
        self.train_lut = np.concatenate([[0], np.where(is_val, 0, labels.classes)]).astype(np.uint8)
        self.val_lut = np.concatenate([[0], np.where(is_val, labels.classes, 0)]).astype(np.uint8)
        self.totals = np.zeros(256, dtype=np.int64)  # labelled pixels per class id on the whole grid
        self.on_nodata = np.zeros(256, dtype=np.int64)  # labelled pixels per class id where the image has no data
        self.cover = None

    def start(self, rows, cols, chip_size) -> None:
        self.cover = CellCover(rows, cols, chip_size)

    def chips(self, window, transform, bounds, valid, span, force: bool = False) -> list:
        index = self.labels.read_index(window, transform, bounds)
        if not force:  # a polygon is training or validation: its class is in one of the two tables
            self.on_nodata += _span_counts(np.where(valid, 0, self.train_lut[index] + self.val_lut[index]), span)
        index[~valid] = 0
        out = []
        train = self.train_lut[index]
        labelled = train > 0
        pixels = int(np.count_nonzero(labelled))
        if pixels and (force or pixels >= self.need):
            out.append(("", "train" if self.split_known else None, train))
            self.cover.keep(window)
        if not force:
            self.totals += _span_counts(train, span)
            self.cover.add(window, labelled, span)
            val = self.val_lut[index]
            (r0, r1), (c0, c1) = span
            scored = np.zeros_like(val)
            scored[r0:r1, c0:c1] = val[r0:r1, c0:c1]
            self.totals += np.bincount(scored.ravel(), minlength=256)
            if scored.any():
                out.append(("_val", "val", scored))
        return out

    def extra_windows(self):
        """Windows to write in a second pass (each a training chip, whatever its labelled share), until every
        labelled pixel of every training polygon is in a kept chip (see :mod:`.cover`): a small polygon, or the
        part of a polygon that the kept chips miss, is never dropped."""
        while (window := self.cover.next_window()) is not None:
            yield window


def _span_counts(label: np.ndarray, span) -> np.ndarray:
    """Pixels per class id in the window's unique span (each pixel of the grid is in one window's span)."""
    (r0, r1), (c0, c1) = span
    return np.bincount(label[r0:r1, c0:c1].ravel(), minlength=256)


def scan(image, labels, labeller, staging, chip_size: int, stride: int, events):
    """Read every window once: band statistics over the part no earlier window covered; write the chips
    the labeller yields. Pixels that are nodata, NaN or hidden by the raster's own mask (an internal or ``.msk``
    mask, an alpha band) count in no statistics and are never labelled. Returns (chip records, BandStats, number
    of windows)."""
    (staging / IMAGES_DIR).mkdir()
    (staging / LABELS_DIR).mkdir()
    rows = window_offsets(image.height, chip_size, stride)
    cols = window_offsets(image.width, chip_size, stride)
    row_spans, col_spans = unique_spans(rows, chip_size), unique_spans(cols, chip_size)
    total = len(rows) * len(cols)
    labeller.start(rows, cols, chip_size)
    stats = BandStats(image.count, count_fills=image.nodata is None)
    mask = own_mask(image, image.source_bands)
    writer = _ChipWriter(image, labels.schema, staging, chip_size)
    chips, done = [], 0
    for r_index, row in enumerate(rows):
        for c_index, col in enumerate(cols):
            if events.cancel_requested:
                raise Cancelled("Chip export cancelled: nothing was written.")
            window = rio_windows.Window(col, row, chip_size, chip_size)
            data = read(image, window=window)
            valid = _valid(data, image, mask, window)
            (r0, r1), (c0, c1) = row_spans[r_index], col_spans[c_index]
            stats.add(data[:, r0:r1, c0:c1], valid[r0:r1, c0:c1])
            bounds = window_envelope(window, image.transform)
            if labels.has_labels(bounds):
                found = labeller.chips(window, image.window_transform(window), bounds, valid, ((r0, r1), (c0, c1)))
                chips += writer.write(window, data, found)
            done += 1
            events.progress(0.9 * done / total, f"window {done}/{total}, {len(chips)} chips")
    missing = labeller.cover.missing_pixels() if labeller.cover is not None else 0
    for window in labeller.extra_windows():
        if events.cancel_requested:
            raise Cancelled("Chip export cancelled: nothing was written.")
        data = read(image, window=window)
        bounds = window_envelope(window, image.transform)
        found = labeller.chips(window, image.window_transform(window), bounds, _valid(data, image, mask, window),
                               None, force=True)
        chips += writer.write(window, data, found)
        left = labeller.cover.missing_pixels()
        events.progress(0.9 + 0.05 * (1 - left / max(1, missing)), "windows for the rest of the training polygons")
    if image.nodata is None:
        warning = fill_warning(image.name, stats.fills, stats.count, "pixels",
                               "counted in the band statistics and labelled like land cover")
        if warning:
            events.warning(warning)
    return chips, stats, total


def _valid(data, image, mask, window) -> np.ndarray:
    """Pixels of ``data`` (``window`` of ``image``) that hold real values: not nodata, NaN or masked."""
    valid = valid_mask(data, image.nodata)
    if mask is not None:
        valid &= mask.valid(window)
    return valid


class _ChipWriter:
    """Writes a window's image chip once and each of its label chips, and describes them for dataset.json."""

    def __init__(self, image, schema, staging, chip_size):
        # Image chips uncompressed: satellite numbers compress by ~10 % and twice as slowly; labels compress well.
        common = {"driver": "GTiff", "width": chip_size, "height": chip_size, "crs": image.crs}
        self.image_profile = dict(common, count=image.count, dtype=image.dtypes[0], nodata=image.nodata)
        self.label_profile = dict(common, count=1, dtype="uint8", nodata=0, compress="deflate", zlevel=1)
        self.colormap = {c.id: c.rgb + (255,) for c in schema}
        self.descriptions = tuple(d or f"band {i + 1}" for i, d in enumerate(image.descriptions))
        self.image, self.staging, self.chip_size = image, staging, chip_size

    def write(self, window, data, found) -> list:
        if not found:
            return []
        row, col = int(window.row_off), int(window.col_off)
        name = f"r{row:06d}_c{col:06d}"
        image_file = f"{IMAGES_DIR}/{name}.tif"
        transform = self.image.window_transform(window)
        if not (self.staging / image_file).exists():
            with _chip_file(self.staging / image_file, transform, self.image_profile) as dst:
                dst.write(data)
                dst.descriptions = self.descriptions
        records = []
        for suffix, split, label in found:
            counts = np.bincount(label.ravel(), minlength=256)
            chip = {"id": name + suffix, "image": image_file, "label": f"{LABELS_DIR}/{name}{suffix}.tif",
                    "window": {"row_off": row, "col_off": col, "height": self.chip_size, "width": self.chip_size},
                    "labelled_pixels": int(label.size - counts[0]),
                    "class_counts": {str(i): int(counts[i]) for i in np.flatnonzero(counts[1:]) + 1}}
            if split is not None:
                chip["split"] = split
            with _chip_file(self.staging / chip["label"], transform, self.label_profile) as dst:
                dst.write(label, 1)
                dst.write_colormap(1, self.colormap)
            records.append(chip)
        return records


@contextmanager
def _chip_file(path, transform, profile):
    """A chip written in memory, then to ``path`` by Python: GDAL only prints a failed write (a full disk) and
    leaves a broken chip, where Python raises (see :func:`.dataset.write_bytes`)."""
    with MemoryFile() as memory:
        with memory.open(transform=transform, **profile) as dst:
            yield dst
        write_bytes(path, memory.getbuffer())
