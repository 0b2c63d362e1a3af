"""Another date's light: a raster brighter, or darker, than the model's training data in every band.

A model trained on one date learns that date's brightness with its classes. The bench case ``other_dates`` (the
Zion sparse-polygon model, the scene's east 40 % scored against NLCD) mapped a copy of the scene 15 % brighter at
14 % overall accuracy instead of 68 %. Such a raster passes the pre-flight check for gross mistakes (:mod:`.preflight`:
means 4 training standard deviations apart): its bands move by 0.5 to 1.1 of them.

:func:`light_warning` tells the analyst when, over the pre-flight's sampled pixels, every band's mean lies on the
same side of the training data's, each by at least :data:`SHIFT_EVERY` of that band's training standard deviation
(the unit the network sees its input in) and the median band by :data:`SHIFT_MEDIAN`. On that model and scene a copy
10 % brighter lost 21 points of overall accuracy and is caught (its red band moved least, by 0.27), 5 % brighter
lost 3 and is not (0.07); darker copies lost less (15 % darker: 4 points). Other land cover than the training
raster's moves the bands too, so the message names both causes: over the Zion, rstoolbox and eolearn Sentinel-2
scenes no half or 512 px window moves so, but one 128 px window of Zion in six does (one 256 px window in ten, one
64 px window of rstoolbox in thirty). Not said for the training raster itself, nor for models made elsewhere, whose
mean and std need not be their training data's. The message quotes the model's own light sensitivity where the
trainer measured it (the card's ``light_sensitivity``: training/light_sensitivity.py), else the Zion example's loss.

One band may move far where the others move little: a band whose values vary little over the training raster,
such as Landsat 5's thermal band on rstoolbox (137.6 +- 1.8 in 8 bits), moves by 1.7 of its standard deviations
when the scene is 2 % brighter. The trainer's model of rstoolbox (cross-validated at 0.997) then mapped copies 2 %,
3 % and 5 % brighter with 34 %, 20 % and 12 % of its labels unchanged (1 % brighter: 93 %) and nothing warned: the
bands moved 0.1-0.2 of theirs, under :data:`SHIFT_EVERY`, and the thermal band 1.7-3.9, under the gross check's 4.
So every band moving the same way with one of them by :data:`SHIFT_ONE_BAND` or more (and the median band by
:data:`SHIFT_ONE_MEDIAN`) warns too, naming that band: no half or window (64 px and up, overlapping by half) of the
three scenes moves so, where 1.25 standard deviations would have flagged 9 of 1462 64 px windows of Zion and 1 of 336
128 px windows (1 standard deviation: 25 and 7). The copies of rstoolbox 2 % brighter and darker and more are caught
(the thermal band 1.7 and 2.2 of its standard deviations off at 2 % and 3 %, the median band 0.05 and 0.13), 1 % not
(0.6). Rounding to 8 bits leaves a band of low values where it was, or a hair the other way (+0.002 in two bands of
the copy 2 % darker): a band that moved under :data:`STILL` counts as going the others' way (the same windows pass).

QGIS-free.
"""
from typing import Optional

import numpy as np

from ..band_choice import band_label
from ..model.map_record import light_found, same_file, training_images

SHIFT_EVERY = 0.25  # of each band's training std, every band the same way
SHIFT_MEDIAN = 0.4  # the median band's
SHIFT_ONE_BAND = 1.5  # or one band this far, every band the same way
SHIFT_ONE_MEDIAN = 0.02  # and the median band at least this (not a tie of noise)
STILL = 0.02  # a band that moved less than this either way went with the others (8 bits round some back)


def light_warning(values: np.ndarray, card: dict, raster_path) -> Optional[str]:
    """The warning for a raster whose sampled ``values`` ((band, pixel), the bands fed to the model in its order)
    are all brighter, or all darker, than the training data the ``card`` describes; None otherwise."""
    training, images = card.get("training"), training_images(card)
    if not isinstance(training, dict) or not images or any(same_file(raster_path, image) for image in images):
        return None
    mean = values.mean(axis=1)
    trained_mean = np.asarray(card["mean"], dtype=np.float64)
    trained_std = np.maximum(np.asarray(card["std"], dtype=np.float64), 1e-12)
    shift = (mean - trained_mean) / trained_std
    size, brighter = np.abs(shift), bool(np.median(shift) > 0)
    every = size.min() >= SHIFT_EVERY and np.median(size) >= SHIFT_MEDIAN
    one = size.max() >= SHIFT_ONE_BAND and np.median(size) >= SHIFT_ONE_MEDIAN
    if not np.all(shift * (1 if brighter else -1) >= -STILL) or not (every or one):
        return None
    how = f"{size.min():.1f} to {size.max():.1f} training standard deviations"
    if np.all(trained_mean > 0):
        change = np.abs(mean / trained_mean - 1)
        how = (f"band means {_percent(change.min())} to {_percent(change.max())} {'higher' if brighter else 'lower'}"
               f", {how}")
    far = int(np.argmax(size))
    names = (card.get("bands") or {}).get("names") or []
    one_band = band_label(names, far) if size[far] >= SHIFT_ONE_BAND else None
    if one_band:
        how += f"; most in {one_band}"
    if training.get("colour_augment"):
        advice = ("The model was trained with colour augmentation, which narrowed that loss (39 %, 39 % and 68 % "
                  "in three runs instead of 14 %) but may not remove it: label some polygons on rasters of other "
                  "dates too (Export label chips, Add to the chip dataset in the output folder) and train again.")
    else:
        advice = ("For rasters of other dates, label some polygons on them too (Export label chips, Add to the chip "
                  "dataset in the output folder) or train with Colour augmentation, and train again.")
    if one_band and not every:
        advice += (f" The band that moved most, {one_band}, varies little over the training raster (a thermal "
                   f"band, say), so a small change moves it far for the model: where it should not decide the "
                   f"classes, leave it out (Bands in Export label chips) and train again.")
    advice += (" Another date of the training raster's place can also be read as the training raster's values: "
               "turn on 'Match to the training raster'.")
    return (f"The raster is {'brighter' if brighter else 'darker'} than the model's training data in every band "
            f"({how}, from {values.shape[1]} sampled pixels): as another date's light or haze would make it, or land "
            f"cover unlike the training raster's. A model trained on one date can map such a raster far worse than "
            f"its training estimate ({_own_sensitivity(card)}). Check this map with 'Assess accuracy' before "
            f"relying on it. " + advice)


def _own_sensitivity(card: dict) -> str:
    """The model's own light sensitivity, as the trainer measured it (the card's ``light_sensitivity``), else the
    Zion example's loss."""
    return light_found(card.get("light_sensitivity")) or (
        "the Zion example's model mapped a copy of its scene 15 % brighter at 14 % overall accuracy instead of 68 %")


def _percent(share: float) -> str:
    return f"{100 * share:.0f} %" if share >= 0.005 else "under 1 %"
