"""Pre-flight check of the input against the model: do the raster's bands look like the training data?

At the start of a run (beside its first model runs: classify/pipeline.py, ``_Preflight``), a fast sample of windows
spread over the area gives each band's mean and std, compared with the mean/std in the model card (the
training data's). A band far off (means several training stds
apart, or spreads five times apart) is reported with the numbers per band and the likely cause: another
scaling (reflectance 0-1 vs digital numbers 0-10000), the same bands in another order, or another sensor or
processing level. A raster not that far off but brighter or darker in every band (another date) is warned of too
(:mod:`.light_shift`). It is a warning, never an error: the user may know better. The same sample warns of a
raster without a nodata value where many pixels are one fill value (0, -9999, ...) in every band (a fill border
read as land cover; the bands are then compared without those pixels); a sample too small to say anything (a
raster of a few pixels) gets no verdict.
"""
import itertools

import numpy as np
from rasterio.windows import Window

from ..band_choice import choose_bands
from ..band_kinds import band_names, mask_alpha
from ..errors import BadInputError
from ..rasters import band_view, fill_counts, fill_warning, read, valid_mask
from ..spread_windows import spread_windows
from .light_shift import light_warning

MEAN_TOLERANCE = 4.0  # training stds between the means
SPREAD_TOLERANCE = 5.0  # ratio of the stds, either way
MAX_PERMUTED_BANDS = 8  # 40320 orders at most
MIN_SAMPLE_PIXELS = 256  # fewer valid pixels (a raster of a few pixels) say nothing about a band's spread


def sample_values(dataset, window: Window, nodata, indexes=None, mask=None) -> np.ndarray:
    """(band, pixel) float64 values of the valid pixels of a grid of small windows spread over ``window``;
    ``indexes``: the bands to read, in order (default: all); ``mask``: the raster's own mask
    (:func:`..rasters.own_mask`), whose hidden pixels are not valid."""
    indexes = list(indexes or range(1, dataset.count + 1))
    values = [np.zeros((len(indexes), 0))]
    for piece in spread_windows(window):
        data = read(dataset, indexes, window=piece)
        valid = valid_mask(data, nodata)
        if mask is not None:
            valid &= mask.valid(piece)
        values.append(data[:, valid].astype(np.float64))
    return np.concatenate(values, axis=1)


def check_band_statistics(dataset, window: Window, model, events, indexes=None, bands_given: bool = False,
                          mask=None) -> bool:
    """Warn when the raster's bands differ by far from the training data's, or look padded with zeros; True
    when it warned. ``bands_given``: the analyst chose ``indexes`` (Bands), so advice speaks of their choice;
    ``mask``: the raster's own mask (:func:`..rasters.own_mask`)."""
    messages = preflight_warnings(dataset, window, model, indexes, bands_given, mask)
    for message in messages:
        events.warning(message)
    return bool(messages)


def preflight_warnings(dataset, window: Window, model, indexes=None, bands_given: bool = False, mask=None) -> list:
    """The warnings :func:`check_band_statistics` gives (none when the bands look like the training data's)."""
    nodata = band_view(dataset, indexes)[1]
    values = sample_values(dataset, window, nodata, indexes, mask)
    if values.shape[1] < MIN_SAMPLE_PIXELS:
        return []  # no valid pixel (the run itself says so), or too few to judge
    warnings = []
    if nodata is None:
        counts = fill_counts(values)
        message = fill_warning(dataset.name, counts, values.shape[1], "sampled pixels", "classified as land cover")
        if message:
            warnings.append(message)
            # the bands are compared without the fill: -9999 in them is not another sensor or scaling
            fill = (values == values[:1]).all(axis=0) & np.isin(values[0], list(counts))
            values = values[:, ~fill]
            if values.shape[1] < MIN_SAMPLE_PIXELS:
                return warnings
    message = _band_statistics_warning(values, dataset, model, indexes, bands_given, mask)
    if message is None:  # not far off: maybe lit otherwise (another date)
        message = light_warning(values, model.card, getattr(dataset, "src_dataset", dataset).name)
    return warnings + [message] if message else warnings


def _band_statistics_warning(values, dataset, model, indexes, bands_given, mask):
    if any("no normalisation" in a for a in model.assumptions):
        return None  # the card's mean/std were guessed: nothing to compare with
    mean, std, pixels = values.mean(axis=1), values.std(axis=1), values.shape[1]
    trained_mean = np.asarray(model.card["mean"], dtype=np.float64)
    trained_std = np.maximum(np.asarray(model.card["std"], dtype=np.float64), 1e-12)
    off = [b for b in range(len(mean)) if _far(mean[b], std[b], trained_mean[b], trained_std[b])]
    if not off:
        return None
    bands = _Bands(dataset, model, indexes, bands_given, mask)
    cause = _likely_cause(mean, std, trained_mean, trained_std, bands, _declared_scaling(dataset, model, indexes))
    numbers = "; ".join(f"{bands.describe(b)}: mean {mean[b]:.4g} (std {std[b]:.3g}) vs trained "
                        f"{trained_mean[b]:.4g} (std {trained_std[b]:.3g})" for b in off)
    return (f"The raster's values do not look like the model's training data ({len(off)} of {len(mean)} "
            f"bands far off, from {pixels} sampled pixels): {numbers}. Likely cause: "
            f"{cause} The classes will be wrong unless this is fixed: check before relying on this run.")


def _far(mean, std, trained_mean, trained_std) -> bool:
    spread = (std + 1e-12) / trained_std
    return abs(mean - trained_mean) > MEAN_TOLERANCE * trained_std or not \
        1 / SPREAD_TOLERANCE <= spread <= SPREAD_TOLERANCE


class _Bands:
    """The raster bands fed to the model (``numbers``, in the model's order) and how they were chosen, for advice."""

    def __init__(self, dataset, model, indexes, given: bool, mask=None):
        self.numbers = list(indexes or range(1, dataset.count + 1))
        alpha = mask is not None and mask.alpha_band is not None  # a warped raster's added alpha band
        self.given, self.raster_count = given, dataset.count - alpha
        self.card_bands = dict(model.card["bands"], count=model.bands)
        self.names = band_names(dataset)[:self.raster_count]
        own_alpha = mask_alpha(dataset)  # the raster's own, not the one a warp added
        self.alpha = own_alpha if own_alpha and own_alpha <= self.raster_count else None

    def describe(self, b: int) -> str:
        """The model's band ``b`` (0-based) by its name, and the raster band fed to it where that differs."""
        names = self.card_bands.get("names") or []
        name = names[b] if len(names) == len(self.numbers) else f"band {b + 1}"
        return name if name == f"band {self.numbers[b]}" else f"{name} (raster band {self.numbers[b]})"

    def default_choice(self):
        """The bands read when Bands is left empty, or None when none would be."""
        try:
            return choose_bands(self.raster_count, self.card_bands, raster_names=self.names, alpha=self.alpha)[0]
        except BadInputError:
            return None

    def chose_others(self) -> bool:
        """Whether the analyst chose (Bands) other bands than the model's recorded ones read by default."""
        default = self.default_choice()
        return self.given and default is not None and default != self.numbers

    def order_advice(self, order) -> str:
        """What to do when the band fed as the model's band i + 1 looks like its band ``order[i]`` + 1."""
        moved = "; ".join(f"raster band {self.numbers[i]}, fed as the model's band {i + 1}, looks like its band "
                          f"{j + 1}" for i, j in enumerate(order) if i != j)
        fitting = [self.numbers[order.index(j)] for j in range(len(order))]
        shown = ",".join(map(str, fitting))
        if not self.given:
            return (f"the bands are in another order ({moved}). Choose Bands {shown} (the raster's bands in the "
                    f"model's order), or reorder the raster's bands (e.g. with 'Rearrange bands') to the order the "
                    f"model was trained on.")
        clear = " clear Bands (the model's recorded bands are then read) or" if self.default_choice() == fitting \
            else ""
        return (f"the bands you chose look out of order ({moved}). Give them in the model's order:{clear} choose "
                f"Bands {shown}.")


def _likely_cause(mean, std, trained_mean, trained_std, bands, declared=None) -> str:
    """The likely cause and its fix; ``declared``: the raster's own scale/offset, in words (see
    :func:`_declared_scaling`), which the model does not apply."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.abs(mean) / np.abs(trained_mean)
    finite = ratios[np.isfinite(ratios) & (ratios > 0)]
    if finite.size and (finite.max() / finite.min() < 3) and not 0.2 < np.median(finite) < 5:
        factor = float(np.median(finite))
        shown = f"{factor:.3g} times" if factor > 1 else f"1/{1 / factor:.3g} of"
        cause = (f"another scaling: the raster's values are about {shown} the training data's (e.g. reflectance "
                 f"0-1 vs digital numbers 0-10000, or 8-bit vs 16-bit).")
        return f"{cause} {declared}" if declared else (f"{cause} Rescale the raster to the training data's units, "
                                                       f"or use a model trained on this kind of values.")
    order = _better_order(mean, std, trained_mean, trained_std)
    if order is not None:
        cause = bands.order_advice(list(order))
    elif bands.chose_others():  # more bands than the orders tried: the choice, not the sensor, is the suspect
        recorded = ",".join(map(str, bands.default_choice()))
        cause = (f"the bands you chose ({','.join(map(str, bands.numbers))}) are not the ones the model learnt "
                 f"from, in its order ({recorded}). Clear Bands (the model's recorded bands are then read), or "
                 f"choose Bands {recorded}.")
    else:
        cause = ("another sensor, processing level or scene type than the training data. Use a raster like the "
                 "training image (same sensor and processing), or train a model on this kind of image.")
    return f"{cause} {declared}" if declared else cause


GDAL_TYPES = {"uint8": "Byte", "int8": "Int8", "uint16": "UInt16", "int16": "Int16", "uint32": "UInt32",
              "int32": "Int32", "float32": "Float32", "float64": "Float64"}


def _declared_scaling(dataset, model, indexes):
    """What to say when the bands read declare a scale/offset other than 1/0 (GDAL metadata, e.g. packed
    reflectance): the model reads the stored values, never the scaled ones; None when none does."""
    numbers = list(indexes or range(1, dataset.count + 1))
    scales, offsets = dataset.scales, dataset.offsets
    declared = [(b, scales[b - 1], offsets[b - 1]) for b in numbers
                if (scales[b - 1], offsets[b - 1]) not in ((1.0, 0.0), (None, None))]
    if not declared:
        return None
    if len(declared) == len(numbers) and len({(scale, offset) for _, scale, offset in declared}) == 1:
        shown, more = f"every band: value x {declared[0][1]:.6g} + {declared[0][2]:.6g}", ""
    else:
        shown = "; ".join(f"band {b}: value x {scale:.6g} + {offset:.6g}" for b, scale, offset in declared[:4])
        more = f" and {len(declared) - 4} more" if len(declared) > 4 else ""
    gdal_type = GDAL_TYPES.get(model.card.get("input_dtype") or "", "Float32")
    return (f"The raster declares a scale and offset for its values ({shown}{more}), but the model reads the "
            f"stored values: the scale and offset are not applied. If the training data held the scaled values, "
            f"make a raster of them (in QGIS: Raster > Conversion > Translate, with '-unscale -ot {gdal_type}' as "
            f"additional command-line parameters; or gdal_translate -unscale -ot {gdal_type}) and classify that; "
            f"else use a model trained on the stored values.")


def _better_order(mean, std, trained_mean, trained_std):
    """The order of the raster's bands that fits the training data best, when every band fits under it."""
    count = len(mean)
    if count > MAX_PERMUTED_BANDS or count < 2:
        return None
    fits = [order for order in itertools.permutations(range(count)) if order != tuple(range(count)) and not any(
        _far(mean[i], std[i], trained_mean[j], trained_std[j]) for i, j in enumerate(order))]
    if not fits:
        return None

    def cost(order):
        return sum(((mean[i] - trained_mean[j]) / trained_std[j]) ** 2
                   + np.log((std[i] + 1e-12) / trained_std[j]) ** 2 for i, j in enumerate(order))
    return min(fits, key=cost)
