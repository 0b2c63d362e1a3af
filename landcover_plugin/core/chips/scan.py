"""Read every chip window once and write the chips it yields (run by :mod:`.export`).

A *labeller* says which label chips a window yields:

* :class:`BlockLabeller`: one label chip per window labelled enough; the train/val split comes later, by
  spatial blocks (raster labels, or polygons when no validation is asked for).
* :class:`PolygonLabeller`: polygons assigned to training or validation (or all to training, the split then
  made by blocks as above). A window yields a training
  chip (the training polygons' labels) when it is labelled enough, and a validation chip (the validation
  polygons' labels, only on the part of the window no earlier window covered, so each held-out pixel is
  scored once). A training polygon that no kept chip holds (small polygons under the labelled share) gets
  its best window written in a second pass: the only samples of a class are never dropped.

Both chips of a window share its image file.
"""
import numpy as np
import rasterio
from rasterio import windows as rio_windows

from ..errors import Cancelled
from ..rasters import read, valid_mask
from .band_stats import BandStats
from .dataset import IMAGES_DIR, LABELS_DIR
from .split import unique_spans, window_offsets


class BlockLabeller:
    split_known = False

    def __init__(self, labels, need: int):
        self.labels, self.need = labels, need

    def chips(self, window, transform, bounds, valid, span) -> list:
        label = self.labels.read(window, transform, bounds)
        label[~valid] = 0
        return [("", None, label)] if np.count_nonzero(label) >= self.need else []

    def extra_windows(self) -> list:
        return []


class PolygonLabeller:
    def __init__(self, labels, is_val: np.ndarray, need: int):
        self.labels, self.need = labels, need
        self.split_known = bool(is_val.any())  # else: all polygons train, split afterwards by spatial blocks
        self.train_lut = np.concatenate([[0], np.where(is_val, 0, labels.classes)]).astype(np.uint8)
        self.val_lut = np.concatenate([[0], np.where(is_val, labels.classes, 0)]).astype(np.uint8)
        self.covered = np.zeros(len(labels.classes) + 1, dtype=bool)
        self.covered[0] = True
        self.best = {}  # training polygon (index + 1) in no kept chip -> (its pixels, window) of its best window

    def chips(self, window, transform, bounds, valid, span, force: bool = False) -> list:
        index = self.labels.read_index(window, transform, bounds)
        index[~valid] = 0
        out = []
        train = self.train_lut[index]
        in_train = index[train > 0]
        if in_train.size and (force or in_train.size >= self.need):
            out.append(("", "train" if self.split_known else None, train))
            self.covered[np.unique(in_train)] = True
        elif in_train.size:
            for polygon, pixels in zip(*np.unique(in_train, return_counts=True)):
                if pixels > self.best.get(int(polygon), (0, None))[0]:
                    self.best[int(polygon)] = (int(pixels), window)
        if not force:
            val = self.val_lut[index]
            (r0, r1), (c0, c1) = span
            scored = np.zeros_like(val)
            scored[r0:r1, c0:c1] = val[r0:r1, c0:c1]
            if scored.any():
                out.append(("_val", "val", scored))
        return out

    def extra_windows(self) -> list:
        """``(window, polygons)`` to write in a second pass: the best window of each training polygon that no
        kept chip holds, each window once, the largest first."""
        by_window = {}
        for polygon, (_pixels, window) in sorted(self.best.items(), key=lambda item: (-item[1][0], item[0])):
            if not self.covered[polygon]:
                key = (int(window.row_off), int(window.col_off))
                by_window.setdefault(key, (window, []))[1].append(polygon)
        return list(by_window.values())


def scan(image, labels, labeller, staging, chip_size: int, stride: int, events):
    """Read every window once: band statistics over the part no earlier window covered; write the chips
    the labeller yields. Returns (chip records, BandStats, number of windows)."""
    (staging / IMAGES_DIR).mkdir()
    (staging / LABELS_DIR).mkdir()
    rows = window_offsets(image.height, chip_size, stride)
    cols = window_offsets(image.width, chip_size, stride)
    row_spans, col_spans = unique_spans(rows, chip_size), unique_spans(cols, chip_size)
    total = len(rows) * len(cols)
    stats = BandStats(image.count)
    writer = _ChipWriter(image, labels.schema, staging, chip_size)
    chips, done = [], 0
    for r_index, row in enumerate(rows):
        for c_index, col in enumerate(cols):
            if events.cancel_requested:
                raise Cancelled("Chip export cancelled: nothing was written.")
            window = rio_windows.Window(col, row, chip_size, chip_size)
            data = read(image, window=window)
            valid = valid_mask(data, image.nodata)
            (r0, r1), (c0, c1) = row_spans[r_index], col_spans[c_index]
            stats.add(data[:, r0:r1, c0:c1], valid[r0:r1, c0:c1])
            bounds = rio_windows.bounds(window, image.transform)
            if labels.has_labels(bounds):
                found = labeller.chips(window, image.window_transform(window), bounds, valid, ((r0, r1), (c0, c1)))
                chips += writer.write(window, data, found)
            done += 1
            events.progress(0.9 * done / total, f"window {done}/{total}, {len(chips)} chips")
    extra = labeller.extra_windows()
    for number, (window, polygons) in enumerate(extra):
        if events.cancel_requested:
            raise Cancelled("Chip export cancelled: nothing was written.")
        if labeller.covered[polygons].all():
            continue  # an earlier extra window already holds these polygons
        data = read(image, window=window)
        bounds = rio_windows.bounds(window, image.transform)
        found = labeller.chips(window, image.window_transform(window), bounds, valid_mask(data, image.nodata),
                               None, force=True)
        chips += writer.write(window, data, found)
        events.progress(0.9 + 0.05 * (number + 1) / len(extra), "small training polygons")
    return chips, stats, total


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
            with rasterio.open(self.staging / image_file, "w", transform=transform, **self.image_profile) as dst:
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
            with rasterio.open(self.staging / chip["label"], "w", transform=transform, **self.label_profile) as dst:
                dst.write(label, 1)
                dst.write_colormap(1, self.colormap)
            records.append(chip)
        return records
