"""Chips as torch samples: read with rasterio, standardise per band, nodata -> 0, augment.

Labels are kept in memory as output-channel indices (class id order of dataset.json), with
``IGNORE`` where a pixel has no label or no data. Image chips are kept in memory in their source dtype
when they fit in ``cache_mb``; otherwise each sample is read from disk (use DataLoader workers then).
Augmentation is drawn from a generator seeded by (seed, epoch, chip), so runs are reproducible
whatever the number of workers, and a resumed run sees the same samples as an uninterrupted one.
"""
import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from landcover_plugin.core.errors import BadInputError

IGNORE = 255


class ChipStore:
    """Labels (always) and images (when they fit) of every chip of a dataset spec."""

    def __init__(self, spec, cache_mb: int = 2048, events=None):
        self.spec = spec
        self.lut = np.full(256, IGNORE, dtype=np.uint8)
        for channel, class_id in enumerate(spec.schema.ids):
            self.lut[class_id] = channel
        self.mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
        self.inv_std = (1.0 / np.asarray(spec.std, dtype=np.float32))[:, None, None]
        # per band: how far zero lies below the mean in standard deviations (radiometric augmentation's scale)
        self.mean_over_std = (np.asarray(spec.mean, dtype=np.float64) * self.inv_std[:, 0, 0]).astype(np.float32)
        self.nodata = spec.nodata
        size = spec.chip_size
        chips = spec.chips
        image_bytes = len(chips) * spec.band_count * size * size * np.dtype(_np_dtype(spec.dtype)).itemsize
        self.cached = image_bytes <= cache_mb * 2 ** 20
        self.images = None
        with ThreadPoolExecutor(max_workers=4) as pool:
            raw_labels = list(pool.map(self._read_label, chips))
            if self.cached:  # filled in place: no second copy of every chip at the peak
                for index, data in enumerate(pool.map(self._read_image, chips)):
                    if self.images is None:
                        self.images = np.empty((len(chips),) + data.shape, dtype=data.dtype)
                    elif data.dtype != self.images.dtype:
                        raise BadInputError(f"Image chip '{chips[index].image}' holds {data.dtype} pixels, the "
                                            f"others {self.images.dtype}. Export the chips again.")
                    self.images[index] = data
        self.labels = np.stack([self.lut[lab] for lab in raw_labels])
        unknown = sorted({int(v) for lab in raw_labels for v in np.unique(lab)} - set(spec.schema.ids) - {0})
        if events is not None:
            if unknown:
                events.warning(f"Label chips hold values {unknown} that are not classes of dataset.json; "
                               f"those pixels are ignored.")
            where = f"in memory ({image_bytes / 2 ** 20:.0f} MB)" if self.cached else "from disk for each batch"
            events.info(f"Chip dataset: {len(chips)} chips of {size}x{size} px, {spec.band_count} bands "
                        f"({spec.dtype}), {len(spec.schema)} classes; images read {where}.")
            for source in spec.sources:
                if source.get("image_recorded"):
                    events.info(f"The chips' raster is not at {source['image_recorded']}, where the export recorded "
                                f"it; it is read from {source['image']}, the same place relative to the chip dataset.")

    def _read_label(self, chip) -> np.ndarray:
        data = _read(chip.label, chip.name, "label")
        if data.shape != (1, self.spec.chip_size, self.spec.chip_size):
            raise BadInputError(f"Label chip '{chip.label}' has shape {data.shape[1:]} and {data.shape[0]} bands; "
                                f"expected one band of {self.spec.chip_size}x{self.spec.chip_size}. "
                                f"Export the chips again.")
        return data[0].astype(np.uint8, copy=False)

    def _read_image(self, chip) -> np.ndarray:
        data = _read(chip.image, chip.name, "image")
        expected = (self.spec.band_count, self.spec.chip_size, self.spec.chip_size)
        if data.shape != expected:
            raise BadInputError(f"Image chip '{chip.image}' has shape {data.shape} (bands, rows, cols); "
                                f"dataset.json says {expected}. Export the chips again.")
        return data

    def relabelled(self, labels: np.ndarray) -> "ChipStore":
        """The same chips (images shared, not copied) with other labels, e.g. one cross-validation fold's."""
        if labels.shape != self.labels.shape:
            raise ValueError(f"labels of shape {labels.shape} for a store of {self.labels.shape}")
        other = copy.copy(self)
        other.labels = labels
        return other

    def image(self, index: int) -> np.ndarray:
        return self.images[index] if self.cached else self._read_image(self.spec.chips[index])

    def sample(self, index: int):
        """Standardised float32 image (C, H, W) with nodata set to 0, and labels (H, W) uint8."""
        raw = self.image(index)
        valid = _valid(raw, self.nodata)
        image = (raw.astype(np.float32) - self.mean) * self.inv_std
        label = self.labels[index]
        if not valid.all():
            image[:, ~valid] = 0.0
            label = np.where(valid, label, IGNORE).astype(np.uint8)
        return image, label

    def class_pixel_counts(self, indices) -> np.ndarray:
        """Labelled pixels per output channel over the given chips (nodata pixels excluded)."""
        counts = np.zeros(len(self.spec.schema), dtype=np.int64)
        for index in indices:
            label = self.labels[index]
            if self.cached:
                label = np.where(_valid(self.images[index], self.nodata), label, IGNORE)
            counts += np.bincount(label.ravel(), minlength=256)[:len(counts)]
        return counts


class ChipDataset(Dataset):
    """Samples of some chips of a store; training samples are augmented.

    With augmentation, indices are ``(epoch, i)`` tuples from :class:`EpochSampler`.
    """

    def __init__(self, store: ChipStore, indices, augment: bool = False, colour_augment: bool = False,
                 seed: int = 0):
        self.store = store
        self.indices = list(indices)
        self.augment = augment
        self.colour_augment = colour_augment
        self.seed = seed

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, item):
        epoch, i = item if isinstance(item, tuple) else (0, item)
        image, label = self.store.sample(self.indices[i])
        if self.augment or self.colour_augment:
            rng = np.random.default_rng([self.seed, epoch, i])
            image, label = augment(image, label, rng, geometric=self.augment, colour=self.colour_augment,
                                   mean_over_std=self.store.mean_over_std)
        return torch.from_numpy(np.ascontiguousarray(image)), torch.from_numpy(np.ascontiguousarray(label))


class EpochSampler(Sampler):
    """A seeded shuffle per epoch that yields ``(key, i)``, the key seeding chip i's augmentation.

    ``samples``: draw at least this many per epoch. With few chips an epoch is then more than one shuffle of
    them (further shuffles, each with its own augmentation key, the last one cut short), so a small dataset
    still gets enough optimizer steps per epoch; the first shuffle is the same as without it.
    """

    def __init__(self, length: int, seed: int = 0, samples: int = 0):
        self.length = length
        self.samples = max(length, int(samples or 0))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        drawn, repeat = [], 0
        while len(drawn) < self.samples:
            seed = [self.seed, self.epoch, 7] + ([repeat] if repeat else [])
            key = self.epoch + repeat * 1_000_003
            drawn += [(key, int(i)) for i in np.random.default_rng(seed).permutation(self.length)]
            repeat += 1
        return iter(drawn[:self.samples])

    def __len__(self):
        return self.samples


GAIN = 0.2         # radiometric augmentation: a chip's values times 1 +- this (the sun, the sensor's gain) ...
BAND_GAIN = 0.03   # ... each band's a little more or less ...
OFFSET = 0.1       # ... plus or minus this share of each band's mean (haze, a processing level's offset)


def relit(z: np.ndarray, gain, mean_over_std, offset_share=0.0) -> np.ndarray:
    """Standardised bands ``z`` (bands on axis -3: a chip or a batch) as they read when each band's raw values x
    are ``gain`` x + ``offset_share`` m (another date's light; m the band's mean, s its std): g z + ((g - 1) m + o)
    / s. ``gain`` and ``offset_share``: one for all bands or one a band; ``mean_over_std``: m / s a band. float32."""
    gain = np.broadcast_to(np.asarray(gain, dtype=np.float64), np.shape(mean_over_std))
    ratio = np.asarray(mean_over_std, dtype=np.float64)
    shift = (gain - 1.0) * ratio + np.asarray(offset_share, dtype=np.float64) * ratio
    return z * gain.astype(np.float32)[:, None, None] + shift.astype(np.float32)[:, None, None]


def augment(image: np.ndarray, label: np.ndarray, rng, geometric: bool = True, colour: bool = False,
            mean_over_std=None):
    """Joint random flips and 90 degree rotation; with ``colour``, a radiometric jitter of the standardised
    ``image`` and noise.

    The jitter is what another date or scene does to the raw values x of a band: x' = g x + o, a gain g common to
    the bands (1 +- :data:`GAIN`, each band +- :data:`BAND_GAIN`) and an offset o (+- :data:`OFFSET` of the band's
    mean m). Standardised, z = (x - m) / s becomes g z + ((g - 1) m + o) / s: ``mean_over_std`` (m / s per band)
    sets its scale. Jitter of the standardised values alone (as before) moved them by about a tenth of a standard
    deviation, where 15 % more light moves Landsat digital numbers by 0.5-1.1 of one: a Zion model mapped such a
    scene at 10 % overall accuracy (69 % as it is; trained with this jitter, 39 % in two bench runs of three, 68 %
    in one)."""
    if geometric:
        k = int(rng.integers(4))
        if k:
            image, label = np.rot90(image, k, axes=(1, 2)), np.rot90(label, k)
        if rng.random() < 0.5:
            image, label = image[:, :, ::-1], label[:, ::-1]
    if colour:
        image = np.array(image, dtype=np.float32)
        nodata = (image == 0.0).all(axis=0)  # set to 0 by sample(); a real pixel is never exactly 0 in all bands
        bands = image.shape[0]
        ratio = np.zeros(bands) if mean_over_std is None else np.asarray(mean_over_std, dtype=np.float64)
        gain = rng.uniform(1.0 - GAIN, 1.0 + GAIN) * rng.uniform(1.0 - BAND_GAIN, 1.0 + BAND_GAIN, size=bands)
        image = relit(image, gain, ratio, rng.uniform(-OFFSET, OFFSET, size=bands))
        image += rng.normal(0.0, 0.03, size=image.shape).astype(np.float32)
        image[:, nodata] = 0.0
    return image, label


def _valid(raw: np.ndarray, nodata) -> np.ndarray:
    valid = np.ones(raw.shape[1:], dtype=bool)
    if np.issubdtype(raw.dtype, np.floating):
        valid &= np.isfinite(raw).all(axis=0)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        try:
            value = np.asarray(nodata).astype(raw.dtype)
        except (OverflowError, ValueError):
            return valid
        if value == nodata:
            valid &= (raw != value).all(axis=0)
    return valid


def _read(path, name: str, what: str) -> np.ndarray:
    # rasterio is imported when chips are read: the GPU check (bench/gpu_check.py) imports the trainer's
    # networks, loss and step on machines that have no rasterio.
    from landcover_plugin.core.errors import BadInputError
    from landcover_plugin.core.rasters import open_raster

    fix = "It cannot be read: the chip folder is incomplete or damaged; export the chips again."
    with open_raster(path, f"{what} chip of chip '{name}'", fix) as src:
        try:
            return src.read()
        except OSError as exc:  # opens, but is cut short (RasterioIOError is an OSError)
            raise BadInputError(f"Cannot read the {what} chip of chip '{name}' {path} ({str(exc).strip()[:300]}). "
                                f"{fix}") from exc


def _np_dtype(name: str):
    try:
        return np.dtype(name)
    except TypeError:
        return np.dtype("float32")
