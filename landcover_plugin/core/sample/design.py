"""Sampling design for a stratified random sample with the map classes as strata (QGIS-free, numpy).

Olofsson et al. (2014), section 5.1.1: the total sample size for a target standard error of overall
accuracy S(O) (eq. 13, Cochran 1977 eq. 5.25),

    n = (sum_i W_i S_i)^2 / (S(O)^2 + (1/N) sum_i W_i S_i^2),   S_i = sqrt(U_i (1 - U_i)),

with W_i the mapped share of class i, U_i its anticipated user's accuracy and N the number of pixels;
then an allocation of n to the strata: ``proportional`` (n W_i), ``equal`` (n / K), or ``recommended``
(the paper's advice for rare classes: every class gets at least a minimum, e.g. 50, and the rest is
shared proportionally among the others).
"""
import math

import numpy as np

from ..errors import BadInputError
from .options import ALLOCATIONS


def sample_size(weights, users_accuracy, target_se: float, population: float = None) -> int:
    """Eq. 13: the total sample size whose overall accuracy has standard error ``target_se``."""
    w = np.asarray(weights, dtype=np.float64)
    u = np.asarray(users_accuracy, dtype=np.float64)
    if w.shape != u.shape:
        raise BadInputError(f"Give one anticipated user's accuracy per class ({w.size}), got {u.size}.")
    if not 0 < target_se < 0.5:
        raise BadInputError(f"The target standard error of overall accuracy must be between 0 and 0.5 "
                            f"(e.g. 0.01), got {target_se}.")
    if ((u <= 0) | (u > 1)).any():
        raise BadInputError("Anticipated user's accuracies must be between 0 and 1 (e.g. 0.85).")
    w = w / w.sum()
    s = np.sqrt(u * (1.0 - u))
    finite = (w * s ** 2).sum() / population if population else 0.0
    n = (w * s).sum() ** 2 / (target_se ** 2 + finite)
    return max(int(math.ceil(n - 1e-9)), 1)


def allocate(total: int, stratum_pixels, method: str = "recommended", minimum: int = 50) -> np.ndarray:
    """Points per stratum (int array) summing to ``total`` (fewer only where strata have fewer pixels).

    ``stratum_pixels``: pixels of each map class (strata with 0 pixels get 0 points). No stratum gets
    more points than it has pixels; what a full stratum cannot take goes to the others.
    """
    if method not in ALLOCATIONS:
        raise BadInputError(f"Unknown allocation {method!r}: use one of {', '.join(ALLOCATIONS)}.")
    size = np.asarray(stratum_pixels, dtype=np.int64)
    total = int(total)
    if total < 1:
        raise BadInputError(f"The sample size must be at least 1, got {total}.")
    present = size > 0
    if not present.any():
        raise BadInputError("The classified raster has no classified pixel to sample.")
    total = min(total, int(size.sum()))
    if method == "equal":
        target = np.where(present, total / present.sum(), 0.0)
    elif method == "proportional":
        target = total * size / size.sum()
    else:
        target = _recommended(total, size, int(minimum))
    return _round_capped(target, size, total)


def _recommended(total: int, size: np.ndarray, minimum: int) -> np.ndarray:
    """At least ``minimum`` per class (or all its pixels, or an equal share if the total is too small),
    the rest proportional to the mapped area among the classes above the minimum."""
    present = size > 0
    floor = np.where(present, np.minimum(size, max(minimum, 0)), 0).astype(np.float64)
    if floor.sum() >= total:  # not even the minimum for every class: share equally
        return np.where(present, total / present.sum(), 0.0)
    fixed = np.zeros(size.shape, dtype=bool)
    while True:
        free = present & ~fixed
        left = total - floor[fixed].sum()
        target = np.where(fixed, floor, 0.0)
        target[free] = left * size[free] / size[free].sum()
        low = free & (target < floor)
        if not low.any():
            return target
        fixed |= low


def _round_capped(target: np.ndarray, size: np.ndarray, total: int) -> np.ndarray:
    """Integers near ``target`` (largest remainders first), never above ``size``, summing to ``total``
    (``total`` is at most ``size.sum()``): what a full stratum cannot take goes to the others."""
    target = np.minimum(target, size)
    counts = np.floor(target).astype(np.int64)
    while counts.sum() < total:
        room = np.flatnonzero(counts < size)
        remainder = (target - counts)[room]
        order = room[np.argsort(-remainder, kind="stable")]
        counts[order[:total - counts.sum()]] += 1
    return counts
