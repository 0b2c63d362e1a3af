"""What a raster's bands are, beyond their numbers: their names, and whether a band GDAL calls alpha is a mask.

**Names.** A band's name is its description (set by the software that stacked it: 'red', 'B04', 'nir'), else its
colour interpretation where that is red, green or blue (an aerial photo's or a drone orthomosaic's bands, which
carry no description), else none. Chip export records them, the model card carries them, Classify matches them
(:mod:`.band_choice`) and the pretrained-encoder set-up puts its RGB filters on them.

**Alpha.** A drone orthomosaic is typically 8-bit RGBA: its alpha band is a transparency mask (0 outside the
surveyed area, 255 inside), no image band. It masks the pixels (:func:`.rasters.own_mask`) and is left out of the
bands a model learns from unless chosen (:func:`default_bands`): a model that took it as a fourth band (constant
255 where valid) refused every RGB raster of three bands. But GDAL also tags the fourth band of any 4-band 8-bit
GeoTIFF written without ``PHOTOMETRIC=MINISBLACK`` as alpha, whatever it holds (often the NIR band of an RGBN
stack), and then hid its zero pixels as no data. An alpha band whose sampled pixels are often neither transparent
nor opaque is taken for such an image band: read as data, never as a mask, and said (:func:`alpha_warning`).
"""
import numpy as np
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from .band_choice import COLOUR_NAMES
from .spread_windows import spread_windows

IMAGE_SHARE = 0.25  # of the sampled pixels between transparent and opaque: an image band, not a mask (a warped
# alpha band feathers its edge, a few per cent of a small raster; an image band has most of its pixels between)


def band_names(dataset) -> list:
    """Each band's name (its description, else 'red', 'green' or 'blue' from its colour interpretation), or None
    where it has neither."""
    names = []
    for description, colour in zip(dataset.descriptions, dataset.colorinterp):
        if description and description.strip():
            names.append(description.strip())
        else:
            names.append(colour.name if colour.name in COLOUR_NAMES else None)
    return names


def alpha_band(dataset):
    """The band GDAL takes as the raster's alpha (transparency), 1-based, or None."""
    found = [number for number, colour in enumerate(dataset.colorinterp, 1) if colour == ColorInterp.alpha]
    return found[0] if found else None


def alpha_holds_image(dataset) -> bool:
    """Whether the raster's alpha band holds image values rather than a mask (see the module's notes)."""
    band = alpha_band(dataset)
    if band is None:
        return False
    between = total = 0
    for window in spread_windows(Window(0, 0, dataset.width, dataset.height)):  # as the classify preflight looks
        values = dataset.read(band, window=window)
        top = np.iinfo(values.dtype).max if values.dtype.kind in "ui" else 1.0  # opaque
        between += int(np.count_nonzero((values > 0) & (values < top)))
        total += values.size
    return total > 0 and between > IMAGE_SHARE * total


def alpha_warning(dataset):
    """The warning for a raster whose alpha band holds image values, or None."""
    if not alpha_holds_image(dataset):
        return None
    band = alpha_band(dataset)
    return (f"Band {band} of {dataset.name} is tagged as alpha (transparency), but its values are those of an "
            f"image band: GDAL tags the 4th band of a 4-band 8-bit GeoTIFF so unless told otherwise (often the NIR "
            f"band of an RGBN stack; QGIS then draws it as transparency). It is read as an image band, not as a "
            f"mask. To fix the tag, save the raster again with Raster > Conversion > Translate and the additional "
            f"command-line parameters '-colorinterp_{band} undefined'.")


def mask_alpha(dataset):
    """The raster's alpha band where it is a mask (not an image band GDAL tagged alpha), else None."""
    band = alpha_band(dataset)
    return None if band is None or alpha_holds_image(dataset) else band


def default_bands(dataset):
    """The bands a model learns from when none are chosen: every band but an alpha band that is a mask; None
    when that is every band."""
    band = mask_alpha(dataset)
    if band is None or dataset.count == 1:
        return None
    return [number for number in range(1, dataset.count + 1) if number != band]

