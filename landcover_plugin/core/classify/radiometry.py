"""Another date of the training raster's place, brought to its radiometry: a gain and an offset per band.

A model trained on one date learns that date's light with its classes (see :mod:`.light_shift`: a Zion model mapped
a copy of its scene 15 % brighter at 19 % overall accuracy instead of 68 %). Where the raster to classify covers
ground the training raster covers too (another date of the same place, the analyst's usual reason to classify
again), the two can be compared pixel by pixel there: relative radiometric normalisation. The training raster is
read onto the raster's grid (a rasterio ``WarpedVRT``, nearest neighbour, any CRS), both are sampled over the shared
ground as the pre-flight samples (small windows spread over it), and each band's line ``training = gain x raster +
offset`` is first drawn through the pairs of the two value distributions' quantiles (changed ground moves it by
its share only), then refitted again and again as the reduced-major-axis line (the ratio of the spreads: both
dates are noisy, and it stays sane while unmatched pairs are still in) of the pairs whose residuals lie within 3
robust spreads in all bands together, leaving out land cover that changed, clouds and misregistration, until the
same pairs are kept (the iterated no-change selection of IR-MAD normalisation, kept simple). Tried and dropped: a
start through the medians with the nearer half of the pairs (it locked 8-bit bands onto pairs of one value) and
principal-axis lines (their gain ran to 7-19 with 40 % of the ground changed and noise). The line is folded into
the standardisation: the model reads ``(gain x value + offset - mean) / std``, i.e. the raster's values with the
mean ``(mean - offset) / gain`` and the std ``std / gain``, so the run costs nothing more and every path (tiles,
shards, the pre-flight's check) sees the matched values.

Measured by ``make bench`` (case ``other_dates``: the Zion sparse-polygon model on copies of the scene's east 40 %
brighter, darker, hazier, and hazier with noise, a pixel off and a quarter of other ground) and in the user guide.
It cannot tell another date's light from land cover that changed on most of the shared ground (a whole scene
flooded, or under snow): the log gives each band's line and the share of pairs left out, and a gain far from 1, or
most pairs left out, is warned of.

QGIS-free.
"""
import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds
from rasterio.windows import bounds as window_bounds

from ..band_choice import choose_bands
from ..band_kinds import band_names, mask_alpha
from ..errors import BadInputError
from ..model.map_record import same_file, training_images
from ..rasters import band_view, open_raster, read, valid_mask
from ..spread_windows import spread_windows

MIN_PIXELS = 1000  # sampled pixels valid in both rasters over the shared ground
CUT = 3.0  # a pair's residuals, root mean square over the bands, in robust spreads: over it, left out as changed
QUANTILES = np.linspace(0.02, 0.98, 49)
MAX_ROUNDS = 10
MIN_KEPT = 0.5
MIN_SHARED = 0.05  # of the raster's area (the window classified) that the training raster must cover
GAIN_WARNING = (0.6, 1.6)


def match_training_raster(dataset, window, indexes, card: dict, events, mask=None):
    """``{"raster", "gain", "offset", "shared", "pairs", "kept"}`` matching the bands ``indexes`` of ``dataset`` over
    ``window`` to the training raster the ``card`` records that shares the most ground with it (said in the log),
    or None where ``dataset`` is that raster itself. A :class:`BadInputError` where no training raster is recorded,
    found, or shares ground with it. ``mask``: the raster's own mask (:func:`..rasters.own_mask`)."""
    name = getattr(dataset, "src_dataset", dataset).name
    images = training_images(card)
    if any(same_file(name, image) for image in images):
        events.info("Match to the training raster: this is the training raster; its values are read as they are.")
        return None
    bounds = window_bounds(window, dataset.transform)
    shares = [(shared, image) for image in images if (shared := _shared(dataset, bounds, image)) is not None]
    found = [image for _, image in shares]
    if not found:
        raise BadInputError(
            "Matching the raster to the training raster needs the training raster, and "
            + (f"the model records {', '.join(images)}, not found here. Put it back at that path, or turn off "
               f"'Match to the training raster'." if images else
               "the model does not record one (a model made elsewhere, or by an older version). Turn off 'Match "
               "to the training raster'."))
    (share, ground), image = max(shares, key=lambda pair: pair[0][0])
    if share < MIN_SHARED:
        raise BadInputError(
            f"The raster shares {share:.0%} of its ground with the training raster ({', '.join(found)}): matching "
            f"needs another date of the same place (at least {MIN_SHARED:.0%} of the area classified in common). "
            f"Turn off 'Match to the training raster' for a raster of another place.")
    with open_raster(image, "training raster") as train:
        train_bands = choose_bands(train.count, dict(card["bands"], count=len(indexes)),
                                   raster_names=band_names(train), alpha=mask_alpha(train))[0]
        here, there = _pairs(dataset, indexes, mask, train, train_bands, _window(dataset, ground))
    if here.shape[1] < MIN_PIXELS:
        raise BadInputError(
            f"Too few pixels valid in both the raster and the training raster where they meet ({here.shape[1]} "
            f"sampled; {MIN_PIXELS} needed) to match their values. Turn off 'Match to the training raster'.")
    gain, offset, kept = _fit(here, there)
    matched = {"raster": str(image), "gain": gain, "offset": offset, "shared": round(share, 4),
               "pairs": int(here.shape[1]), "kept": round(kept, 4)}
    _tell(matched, card, events)
    return matched


def matched_card(card: dict, matched) -> dict:
    """The card the run reads the raster with: its mean and std in the raster's own values (see the module)."""
    if matched is None:
        return card
    gain, offset = np.asarray(matched["gain"]), np.asarray(matched["offset"])
    mean = (np.asarray(card["mean"], dtype=np.float64) - offset) / gain
    std = np.asarray(card["std"], dtype=np.float64) / gain
    return dict(card, mean=mean.tolist(), std=std.tolist(), matched_to_training=matched)


def _pairs(dataset, indexes, mask, train, train_bands, window):
    """(raster values, training raster values): (band, pixel) float64 arrays of the same ground, sampled over
    ``window`` of ``dataset``'s grid where both are valid."""
    nodata, train_nodata = band_view(dataset, indexes)[1], band_view(train, train_bands)[1]
    here, there = [np.zeros((len(indexes), 0))], [np.zeros((len(indexes), 0))]
    with WarpedVRT(train, crs=dataset.crs or train.crs, transform=dataset.transform, width=dataset.width,
                   height=dataset.height, resampling=Resampling.nearest, add_alpha=True) as onto:
        for piece in spread_windows(window):
            mine, theirs = read(dataset, indexes, window=piece), read(onto, train_bands, window=piece)
            valid = valid_mask(mine, nodata) & valid_mask(theirs, train_nodata) & (onto.read(onto.count,
                                                                                                window=piece) > 0)
            if mask is not None:
                valid &= mask.valid(piece)
            here.append(mine[:, valid].astype(np.float64))
            there.append(theirs[:, valid].astype(np.float64))
    return np.concatenate(here, axis=1), np.concatenate(there, axis=1)


def _fit(here: np.ndarray, there: np.ndarray):
    """Per band, ``there ~ gain x here + offset``: first the line through the two value distributions' quantiles
    (:func:`_quantile_lines`), then, again and again, the reduced-major-axis lines of the pairs kept, a pair
    kept where its residuals, each in its band's robust residual spread, are within :data:`CUT` of the lines (root
    mean square over the bands), until the same pairs are kept. Returns (gains, offsets, share of the pairs kept)."""
    floor = 0.01 * np.maximum(there.std(axis=1), 1e-12)[:, None]  # integer or constant values: no zero spread
    keep = np.ones(here.shape[1], dtype=bool)
    gain, offset = _quantile_lines(here, there)
    for _ in range(MAX_ROUNDS):
        residual = gain[:, None] * here + offset[:, None] - there
        spread = np.maximum(1.4826 * np.median(np.abs(residual[:, keep]), axis=1)[:, None], floor)
        kept = np.sqrt(np.mean((residual / spread) ** 2, axis=0)) <= CUT
        if (kept == keep).all() or kept.sum() < MIN_PIXELS:
            break
        keep = kept
        fitted_gain, fitted_offset = _lines(here[:, keep], there[:, keep])
        varied = np.isfinite(fitted_gain)  # a band the kept pairs hold at one value keeps its line
        gain, offset = np.where(varied, fitted_gain, gain), np.where(varied, fitted_offset, offset)
    if not (np.isfinite(gain).all() and (gain > 0).all()):
        raise BadInputError("The raster's values fall where the training raster's rise over the ground they "
                            "share (a band inverted, or other bands): they cannot be matched. Check the bands, "
                            "or turn off 'Match to the training raster'.")
    return [round(float(g), 6) for g in gain], [round(float(o), 6) for o in offset], float(keep.mean())


def _quantile_lines(x: np.ndarray, y: np.ndarray):
    """Per band, the least-squares line through the pairs of the two distributions' quantiles (2 % to 98 %): a
    start that needs no pixel to match its pair and that changed ground moves by its share only."""
    qx, qy = np.quantile(x, QUANTILES, axis=1), np.quantile(y, QUANTILES, axis=1)  # (quantile, band)
    mx, my = qx.mean(axis=0), qy.mean(axis=0)
    sxx = ((qx - mx) ** 2).sum(axis=0)
    gain = np.where(sxx > 0, ((qx - mx) * (qy - my)).sum(axis=0) / np.where(sxx > 0, sxx, 1.0), 1.0)
    return gain, my - gain * mx


def _lines(x: np.ndarray, y: np.ndarray):
    """Per band (rows), the reduced-major-axis line ``y = gain x + offset``: gain the ratio of the standard
    deviations (both dates are noisy, so neither is the regressor; and unlike the principal axis it stays near the
    ratio of the two spreads when unmatched pairs are still in); NaN for a band of one value, or whose values fall
    as the other's rise."""
    mx, my = x.mean(axis=1), y.mean(axis=1)
    sxx, syy = x.var(axis=1), y.var(axis=1)
    sxy = ((x - mx[:, None]) * (y - my[:, None])).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where((sxx > 0) & (sxy > 0), np.sqrt(syy / sxx), np.nan)
    return gain, my - gain * mx


def _tell(matched: dict, card: dict, events) -> None:
    names = (card.get("bands") or {}).get("names") or []
    names = names if len(names) == len(matched["gain"]) else [f"band {b + 1}" for b in range(len(matched["gain"]))]
    lines = "; ".join(f"{name} x {gain:.3f} {'+' if offset >= 0 else '-'} {abs(offset):.4g}"
                      for name, gain, offset in zip(names, matched["gain"], matched["offset"]))
    events.info(f"Matched the raster's values to the training raster {matched['raster']} over the ground they share "
                f"({matched['shared']:.0%} of the area classified; {matched['pairs']} pixel pairs sampled, "
                f"{matched['kept']:.0%} of them kept, the rest left out as changed): {lines}.")
    low, high = GAIN_WARNING
    far = [name for name, gain in zip(names, matched["gain"]) if not low <= gain <= high]
    if far or matched["kept"] < MIN_KEPT:
        why = (f"a gain outside {low} to {high} ({', '.join(far)}): more than another date's light does" if far else
               f"only {matched['kept']:.0%} of the pixel pairs agree with the lines")
        events.warning(f"Matching to the training raster found {why}. Where the land cover changed over much of the "
                       f"shared ground (flood, snow, harvest) matching can hide it: classify without 'Match to the "
                       f"training raster' too and compare.")


def _shared(dataset, bounds, image):
    """(share of ``bounds`` the raster at ``image`` covers, the shared bounds in ``dataset``'s CRS), or None where
    that raster cannot be opened (moved, deleted)."""
    try:
        with rasterio.open(image) as train:
            theirs = transform_bounds(train.crs, dataset.crs, *train.bounds) if train.crs and dataset.crs and \
                train.crs != dataset.crs else tuple(train.bounds)
    except rasterio.errors.RasterioIOError:
        return None
    left, bottom = max(bounds[0], theirs[0]), max(bounds[1], theirs[1])
    right, top = min(bounds[2], theirs[2]), min(bounds[3], theirs[3])
    area = (bounds[2] - bounds[0]) * (bounds[3] - bounds[1])
    if right <= left or top <= bottom or area <= 0:
        return 0.0, None
    return (right - left) * (top - bottom) / area, (left, bottom, right, top)


def _window(dataset, ground):
    """The window of ``dataset`` over ``ground`` (bounds in its CRS), whole pixels, within the raster."""
    window = from_bounds(*ground, transform=dataset.transform).round_offsets().round_lengths()
    return window.intersection(Window(0, 0, dataset.width, dataset.height))
