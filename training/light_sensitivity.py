"""How much the trained model's map depends on the training raster's exact light: the share of its labels that
change over a spread sample of the raster when every band is 5 % brighter, or darker (another date's light
commonly differs by 5-15 %), and when one band alone is 5 % brighter (which band the model leans on most).

A model can be right on its own raster and useless on the next date: the trainer's model of rstoolbox
(cross-validated at 0.997) kept 12 % of its labels on a copy 5 % brighter, since it leans on the thermal band,
whose values vary by 1.8 of 138; the Zion sparse-polygon model lost 3 points of overall accuracy at 5 % and 49 at
15 %; a 6-minute training of it changed 18 % of its map on a copy 5 % brighter (its overall accuracy on the
east 40 % fell from 69 % to 64 %): two dates' maps differ where nothing changed on the ground. Neither the
validation score nor the held-out estimate can see that: both are of the training raster.
:func:`light_sensitivity` measures it on the exported model (onnxruntime, the classifier's own reading of the
raster), the card records it (``light_sensitivity``), the trainer's log says it and Classify's light warning
quotes it (:mod:`landcover_plugin.core.classify.light_shift`).

A digital number x' = g x is (x' - mean) / std = g z + (g - 1) mean / std in the standardised units the model
takes, so the tiles are read once and changed in those units, as colour augmentation changes chips
(dataset.py's ``relit``). Labels are those of the map Classify makes by default: the top class after weighing the
classes by the scene's shares where the card has them (a 6-minute Zion model changed 18 % of the weighed map's
labels on a copy 5 % brighter, 46 % of the unweighed map's).
"""
from pathlib import Path
from typing import Optional

import numpy as np

from landcover_plugin.core.band_choice import band_label
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.class_shares import card_weights
from landcover_plugin.core.model.map_record import LIGHT_FRAGILE as FRAGILE
from landcover_plugin.core.model.session import load_model

from .dataset import relit
from .scene_sample import spread_batches

GAIN = 0.05          # 5 % more (and less) light
SAMPLE_TILES = 32    # tiles of the raster, spread evenly
BAND_TILES = 8       # of them, the ones each band is changed alone on (a pass a band)
NARROW = 1.5         # a band that 5 % more light moves by this many of its stds varies little (a thermal band)


def light_sensitivity(model_path, raster_path) -> Optional[dict]:
    """``{"gain", "brighter", "darker", "bands", "pixels", "tiles", "raster", "classes_weighed"}``: the shares of
    the sampled valid pixels whose label changes at 5 % more light in every band, 5 % less, and 5 % more in each
    band alone (over the first :data:`BAND_TILES` tiles); None when the raster is not here or holds no valid pixel.
    Raises what reading the raster or running the model raises (the caller keeps the model and warns)."""
    if not raster_path or not Path(raster_path).exists():
        return None
    model = load_model(model_path, device="cpu", events=RecordingEvents())
    ratio = np.asarray(model.card["mean"], np.float64) / np.asarray(model.card["std"], np.float64)  # m / s
    weights = card_weights(model, RecordingEvents())  # as Classify weighs the classes by default

    def labels_of(x):
        probs = model.run(x)
        return (probs if weights is None else probs * np.asarray(weights, probs.dtype)[None, :, None, None]
                ).argmax(axis=1)

    changed, band_changed = np.zeros(2), np.zeros(model.bands)
    pixels = band_pixels = tiles_run = 0
    for batch in spread_batches(model, raster_path, SAMPLE_TILES):
        x, valid = batch.x, batch.valid
        labels = labels_of(x)
        for k, gain in enumerate((1 + GAIN, 1 - GAIN)):
            moved = labels_of(relit(x, gain, ratio))
            changed[k] += np.count_nonzero((moved != labels) & valid)
        pixels += int(valid.sum())
        if tiles_run < BAND_TILES:
            for band in range(model.bands):
                alone = np.where(np.arange(model.bands) == band, 1 + GAIN, 1.0)  # this band's light only
                band_changed[band] += np.count_nonzero((labels_of(relit(x, alone, ratio)) != labels) & valid)
            band_pixels += int(valid.sum())
        tiles_run += len(batch.tiles)
    if not pixels:
        return None
    return {"gain": GAIN, "brighter": round(float(changed[0] / pixels), 4),
            "darker": round(float(changed[1] / pixels), 4),
            "bands": [round(float(c / max(1, band_pixels)), 4) for c in band_changed],
            "pixels": pixels, "tiles": tiles_run, "raster": Path(raster_path).name,
            "classes_weighed": weights is not None}


def describe(entry: dict, band_names, mean, std) -> tuple:
    """(level, message) for the trainer's log: info, or a warning when 5 % changes :data:`FRAGILE` of the labels.
    ``mean``, ``std``: the training data's per band; a band that 5 % moves by :data:`NARROW` of its std or more
    (values that vary little, as a thermal band's) is named as one to leave out when the model leans on it most."""
    worst = int(np.argmax(entry["bands"]))
    name = band_label(band_names, worst)
    text = (f"Light sensitivity, over {entry['tiles']} tiles of {entry['raster']}: every band {entry['gain']:.0%} "
            f"brighter changes {entry['brighter']:.0%} of the model's labels, {entry['gain']:.0%} darker "
            f"{entry['darker']:.0%}; of the bands alone, {name} changes most, {entry['bands'][worst]:.0%}.")
    if max(entry["brighter"], entry["darker"]) < FRAGILE:
        return "info", text
    moves = entry["gain"] * abs(mean[worst]) / max(std[worst], 1e-12)  # the worst band's stds at 5 %
    return "warning", (
        text + " Maps of other dates (their light commonly differs by 5-15 %) will differ from this one where "
        "nothing changed on the ground, and can be far less accurate than the held-out estimate, which is of this "
        "raster's light (the Zion example's model lost 3 points of overall accuracy at 5 % brighter, 49 at 15 %). "
        "Classify another date of this place with 'Match to the training raster', or train with Colour "
        "augmentation or with labels on other dates too"
        + (f"; {name} varies little over this raster ({entry['gain']:.0%} moves it by {moves:.1f} of its "
           f"standard deviations, as a thermal band's values do): leave it out (Bands in Export label chips) if it "
           f"should not decide the classes" if moves >= NARROW else "") + ".")
