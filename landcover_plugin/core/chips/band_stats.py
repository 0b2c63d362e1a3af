"""Per-band mean and standard deviation over valid pixels, accumulated window by window.

Uses Chan et al.'s pairwise update in float64, so large uint16 or float32 rasters keep full
precision without ever holding more than one window in memory.
"""
import numpy as np

from ..rasters import fill_counts


class BandStats:
    """Running per-band statistics; feed it (band, row, col) windows and their valid masks. ``count_fills``: also
    count the valid pixels that are a common fill value (0, -9999, ...) in every band (``fills``: {value: count})."""

    def __init__(self, band_count: int, count_fills: bool = False):
        self.count, self.fills, self.count_fills = 0, {}, count_fills
        self.mean = np.zeros(band_count, dtype=np.float64)
        self._m2 = np.zeros(band_count, dtype=np.float64)

    def add(self, data: np.ndarray, valid: np.ndarray) -> None:
        """Add the pixels of ``data`` (band, row, col) where ``valid`` (row, col) is True."""
        values = data.reshape(data.shape[0], -1) if valid.all() else data[:, valid]
        n = values.shape[1]
        if n == 0:
            return
        if self.count_fills:
            for value, found in fill_counts(values).items():
                self.fills[value] = self.fills.get(value, 0) + found
        mean = values.mean(axis=1, dtype=np.float64)
        centred = values - mean[:, None]  # float64 whatever the input dtype
        m2 = np.einsum("ij,ij->i", centred, centred)
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * (n / total)
        self._m2 += m2 + delta ** 2 * (self.count * n / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        if self.count == 0:
            return np.zeros_like(self.mean)
        return np.sqrt(self._m2 / self.count)


def pooled(parts) -> tuple:
    """``(count, mean, std)`` over the pixels of several rasters from each one's ``(count, mean, std)`` (per-band
    sequences, population std as :class:`BandStats` gives): what one :class:`BandStats` fed every pixel would say."""
    counts = np.array([float(count) for count, _mean, _std in parts])
    means = np.array([np.asarray(mean, dtype=np.float64) for _count, mean, _std in parts])
    stds = np.array([np.asarray(std, dtype=np.float64) for _count, _mean, std in parts])
    total = counts.sum()
    if total == 0:
        return 0, means[0], stds[0]
    mean = (counts[:, None] * means).sum(axis=0) / total
    var = (counts[:, None] * (stds ** 2 + (means - mean) ** 2)).sum(axis=0) / total
    return int(total), mean, np.sqrt(var)
