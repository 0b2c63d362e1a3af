"""Error-adjusted area and accuracy estimates from a stratified reference sample (QGIS-free, numpy only).

Olofsson, Foody, Herold, Stehman, Woodcock & Wulder (2014), "Good practices for estimating area and
assessing accuracy of land change", Remote Sensing of Environment 148: 42-57, section 5 (equations
numbered as there). The strata are the map classes; stratum weights W_i are the shares of the map's area
in each class (its pixel counts). With ``n_ij`` sample units mapped as class i whose reference class is j
and ``n_i.`` sample units in stratum i:

- estimated area proportions  p_ij = W_i n_ij / n_i.                                   (eq. 9)
- overall accuracy            O = sum_j p_jj,      V(O) = sum_i W_i^2 U_i (1 - U_i) / (n_i. - 1)   (eq. 1, 5)
- user's accuracy of class i  U_i = p_ii / p_i.,   V(U_i) = U_i (1 - U_i) / (n_i. - 1)             (eq. 2, 6)
- producer's accuracy of j    P_j = p_jj / p_.j,   V(P_j) of eq. 7 (Card 1982)
- area proportion of class j  p_.j = sum_i p_ij,   S(p_.j) = sqrt(sum_i W_i^2 (n_ij/n_i.)(1 - n_ij/n_i.)
                                                                                  / (n_i. - 1))  (eq. 10)
- area of class j             A_j = A p_.j,        95 % confidence interval A_j +- 1.96 A S(p_.j)  (eq. 11)

The same estimators serve a simple random sample post-stratified by map class (Olofsson et al. 2013).
The design side of the paper (sample size for a target standard error of overall accuracy, eq. 13, and
allocation to strata) is in :mod:`landcover_plugin.core.sample.design`.

Matrices here follow the paper: rows are **map** classes (strata), columns **reference** classes, both in
the order of ``class_ids``. (The accuracy report elsewhere puts the reference in rows; the caller
transposes.)
"""
import math

import numpy as np

from ..errors import BadInputError

Z95 = 1.959963984540054  # two-sided 95 % normal quantile; the paper rounds it to 1.96


def stratified_estimates(sample_counts, mapped_pixels, pixel_area=None, z: float = Z95) -> dict:
    """Estimates from a (K, K) sample error matrix (rows map class = stratum, columns reference class).

    :param sample_counts: counts ``n_ij``; row i is the stratum of map class i.
    :param mapped_pixels: (K,) pixels (or any area measure) mapped as each class: the stratum sizes N_i.
        A class that was never mapped has 0 here (it may still occur in the reference).
    :param pixel_area: area of one unit of ``mapped_pixels`` (e.g. hectares per pixel); None gives areas
        in pixels only (``*_area`` keys are then the pixel figures).
    :param z: the normal quantile of the confidence intervals (1.96 for 95 %).
    :returns: dict of floats and (K,) arrays: ``proportions`` (K, K), ``weights``, ``users``, ``users_se``,
        ``producers``, ``producers_se``, ``overall``, ``overall_se``, ``area_proportion``,
        ``area_proportion_se``, ``mapped_pixels``, ``estimated_pixels``, ``pixels_ci``, ``mapped_area``,
        ``estimated_area``, ``area_ci`` and ``*_ci`` half-widths (z times the standard error); NaN where a
        figure is undefined (the user's accuracy of a class never mapped, a producer's accuracy of a class
        with an estimated area of 0).
    :raises BadInputError: a mapped class with fewer than 2 sample units (its variance is undefined), or
        inputs of the wrong shape or sign.
    """
    n = np.asarray(sample_counts, dtype=np.float64)
    mapped = np.asarray(mapped_pixels, dtype=np.float64)
    k = mapped.shape[0] if mapped.ndim == 1 else -1
    if n.shape != (k, k):
        raise ValueError(f"sample counts must be (K, K) with K = {k} map classes, got {n.shape}")
    if (n < 0).any() or (mapped < 0).any():
        raise ValueError("sample counts and mapped pixels must not be negative")
    total = mapped.sum()
    if total <= 0:
        raise BadInputError("The classified raster has no classified pixel: no area can be estimated.")
    strata = mapped > 0
    n_i = n.sum(axis=1)
    thin = np.flatnonzero(strata & (n_i < 2))
    if thin.size:
        raise BadInputError(
            f"Map class(es) at position(s) {', '.join(str(i + 1) for i in thin)} have fewer than 2 labelled "
            "sample points; the stratified estimator needs at least 2 in every mapped class.")
    stray = np.flatnonzero(~strata & (n_i > 0))
    if stray.size:
        raise ValueError(f"sample units in strata {stray.tolist()} that have no mapped pixels")

    weights = mapped / total
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(strata[:, None], n / np.where(n_i > 0, n_i, 1.0)[:, None], 0.0)  # n_ij / n_i.
        proportions = weights[:, None] * share                                              # p_ij
        denominator = np.where(strata, n_i - 1.0, np.inf)                                   # n_i. - 1
        users = np.where(strata, np.diag(share), np.nan)
        users_var = np.where(strata, users * (1.0 - users) / denominator, np.nan)
        overall = float(np.trace(proportions))
        overall_var = float(np.nansum(weights ** 2 * np.nan_to_num(users * (1.0 - users)) / denominator))
        area_proportion = proportions.sum(axis=0)                                           # p_.j
        area_var = (weights[:, None] ** 2 * share * (1.0 - share) / denominator[:, None]).sum(axis=0)
        producers, producers_var = _producers(n, n_i, mapped, strata, users, denominator)
    to_area = 1.0 if pixel_area is None else float(pixel_area)
    se = np.sqrt(area_var)
    out = {
        "class_count": k, "sample_size": int(n.sum()), "z": z,
        "proportions": proportions, "weights": weights,
        "users": users, "users_se": np.sqrt(users_var), "producers": producers,
        "producers_se": np.sqrt(producers_var), "overall": overall, "overall_se": math.sqrt(overall_var),
        "area_proportion": area_proportion, "area_proportion_se": se,
        "mapped_pixels": mapped, "estimated_pixels": area_proportion * total, "pixels_ci": z * se * total,
        "mapped_area": mapped * to_area, "estimated_area": area_proportion * total * to_area,
        "area_ci": z * se * total * to_area,
    }
    for key in ("users", "producers", "overall"):
        out[f"{key}_ci"] = z * out[f"{key}_se"]
    return out


def _producers(n, n_i, mapped, strata, users, denominator) -> tuple:
    """Producer's accuracy P_j = N_j. U_j / N_.j and its variance (eq. 7; N_i. = stratum sizes in pixels,
    N_.j = sum_i N_i. n_ij / n_i. the estimated reference total of class j)."""
    k = n.shape[0]
    share = np.where(strata[:, None], n / np.where(n_i > 0, n_i, 1.0)[:, None], 0.0)
    reference_total = (mapped[:, None] * share).sum(axis=0)                                 # N_.j
    producers = np.full(k, np.nan)
    variance = np.full(k, np.nan)
    for j in range(k):
        if reference_total[j] <= 0:
            continue
        p = mapped[j] * share[j, j] / reference_total[j]
        producers[j] = p
        own = 0.0
        if strata[j]:
            own = mapped[j] ** 2 * (1.0 - p) ** 2 * users[j] * (1.0 - users[j]) / denominator[j]
        others = [mapped[i] ** 2 * share[i, j] * (1.0 - share[i, j]) / denominator[i]
                  for i in range(k) if i != j and strata[i]]
        variance[j] = (own + p ** 2 * sum(others)) / reference_total[j] ** 2
    return producers, variance
