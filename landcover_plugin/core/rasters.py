"""Raster helpers shared by chips, inference, accuracy and the trainer: opening a raster with a clear
error, and pure functions over (band, row, col) arrays."""
import math

import numpy as np
import rasterio
from rasterio.enums import MaskFlags

from .band_kinds import alpha_holds_image
from .errors import BadInputError

GDAL_FIX = "Choose a raster file GDAL reads."


def open_raster(path, what: str = "raster", fix: str = GDAL_FIX):
    """``rasterio.open(path)``, or a :class:`BadInputError` naming the file, what it is (``what``) and the fix;
    also for a raster placed on the map by control points only (:func:`placed_by_points`)."""
    try:
        dataset = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise BadInputError(f"Cannot open the {what} {path} ({exc}). {fix}") from exc
    how = placed_by_points(dataset)
    if how:
        dataset.close()
        rpc = " -rpc" if "RPC" in how else ""
        raise BadInputError(
            f"The {what} {path} is georeferenced by {how}, not on a map grid (QGIS warps it on the fly to show "
            f"it), so its pixels have no place on the map here. Warp it onto a grid first and use the warped "
            f"raster: in QGIS, Raster > Projections > Warp (Reproject){' with its RPCs' if rpc else ''}; or "
            f"gdalwarp{rpc} -r bilinear \"{path}\" warped.tif.")
    return dataset


def placed_by_points(dataset):
    """How a raster without a geotransform is georeferenced: "N ground control points" (GCPs, as Sentinel-1
    GRD and georeferencer outputs are) or "rational polynomial coefficients (RPCs)" (satellite level-1 scenes);
    None for a raster on a grid, or one not georeferenced at all."""
    if not dataset.transform.is_identity:
        return None
    points = dataset.gcps[0]
    if points:
        return f"{len(points)} ground control points"
    return "rational polynomial coefficients (RPCs)" if getattr(dataset, "rpcs", None) else None


WRITTEN_AS = {"classified": "the classified map (the Output of 'Classify raster with model')",
              "uncertainty": "the uncertainty raster (the Uncertainty output of 'Classify raster with model')",
              "confidence": "the confidence raster (the Confidence output of 'Classify raster with model')"}


def written_as(dataset):
    """Which of the classifier's rasters ``dataset`` is, by what the classifier writes in it: "classified" (its
    ``landcover_classes`` tag), "uncertainty" or "confidence" (their band descriptions), or None (any other
    raster)."""
    if "landcover_classes" in dataset.tags():
        return "classified"
    description = dataset.descriptions[0] or ""
    if description.startswith("uncertainty ("):
        return "uncertainty"
    if description.startswith("confidence ("):
        return "confidence"
    return None


def check_written_as(dataset, wanted: str, path) -> None:
    """Refuse one of the classifier's rasters given where another of them is wanted (an uncertainty raster as
    the classified map, say): the run would go on and report nonsense (an overall accuracy of 0 %)."""
    kind = written_as(dataset)
    if kind is not None and kind != wanted:
        raise BadInputError(f"{path} is {WRITTEN_AS[kind]}, not {WRITTEN_AS[wanted]}. Give that one here.")


def check_classified(dataset, path) -> None:
    """Refuse as the classified map a raster that is not one: another of the classifier's rasters, or one whose
    pixels are not integer class ids (a confidence or probability raster made elsewhere)."""
    check_written_as(dataset, "classified", path)
    if not np.issubdtype(np.dtype(dataset.dtypes[0]), np.integer):
        raise BadInputError(f"The classified raster has pixel type {dataset.dtypes[0]}; it must hold integer "
                            "class ids (1..254, 0 = no data). Choose the classified map, not a confidence "
                            "or probability raster.")


MIXED_DTYPE = "float32"  # holds 8- and 16-bit values exactly, 32-bit ones to 7 digits, and NaN for no data


def band_view(dataset, indexes=None) -> tuple:
    """``(dtype, nodata)`` that :func:`read` gives the bands ``indexes`` (default all) in: their own where they
    share their pixel type and nodata value; else float32 with NaN for each band's own nodata value (a stack of
    16-bit imagery and a float elevation band: one pixel type for chips and models, and a band's nodata value
    never taken for another band's data, e.g. 0 m of elevation for the imagery's nodata 0)."""
    numbers = list(indexes or range(1, dataset.count + 1))
    if _mixed(dataset, numbers):
        return MIXED_DTYPE, float("nan")
    return dataset.dtypes[numbers[0] - 1], dataset.nodatavals[numbers[0] - 1]


def _mixed(dataset, numbers) -> bool:
    nodatas = {"nan" if v is not None and math.isnan(v) else v for v in (dataset.nodatavals[b - 1] for b in numbers)}
    return len({dataset.dtypes[b - 1] for b in numbers}) > 1 or len(nodatas) > 1


def read(dataset, indexes=None, **kwargs):
    """``dataset.read(indexes, **kwargs)`` in the pixel type of :func:`band_view` (bands of mixed types or nodata
    values: float32, NaN where each band holds its nodata value); a damaged or truncated file is a
    :class:`BadInputError` naming it."""
    try:
        numbers = [indexes] if isinstance(indexes, int) else list(indexes or range(1, dataset.count + 1))
        if not _mixed(dataset, numbers):  # one band is never mixed
            return dataset.read(indexes, **kwargs)
        data = None
        for k, number in enumerate(numbers):  # band by band: rasterio reads one pixel type at a time
            band = dataset.read(number, **kwargs)
            data = np.empty((len(numbers),) + band.shape, MIXED_DTYPE) if data is None else data
            data[k] = band
            nodata = dataset.nodatavals[number - 1]
            if nodata is not None and not math.isnan(nodata):
                data[k][band == nodata] = np.nan  # compared in the band's own type
        return data
    except (rasterio.errors.RasterioError, rasterio.errors.RasterioIOError) as exc:
        raise BadInputError(f"Cannot read {dataset.name}: the file is damaged or incomplete (GDAL says: "
                            f"{str(exc).strip()[:300]}). Copy or export it again, then run again.") from exc


def check_pixel_type(dataset, what: str = "raster") -> None:
    """Refuse pixel types no step can use (complex numbers): they have no order, no mean, no class."""
    for name in dataset.dtypes:
        dtype = np.dtype(name)
        if np.issubdtype(dtype, np.complexfloating) or dtype.kind not in "uif":
            raise BadInputError(f"The {what} {dataset.name} holds {name} pixels (complex numbers, e.g. "
                                f"radar SLC data); land-cover steps need real-valued bands. Convert it first (e.g. "
                                f"to amplitude or intensity with the Raster Calculator).")


def valid_mask(data: np.ndarray, nodata=None) -> np.ndarray:
    """(row, col) bool mask: True where every band holds a real value (not nodata, not NaN/inf).

    ``nodata`` may come as rasterio gives it (a float, even for integer rasters: ``255.0``); a value
    the dtype cannot hold (``-9999`` for uint8, ``0.5`` for int16) matches no pixel.
    """
    bands = data.reshape((-1,) + data.shape[-2:])
    mask = np.ones(bands.shape[1:], dtype=bool)
    scratch = np.empty_like(mask)  # band by band: a (band, row, col) temporary reduced over bands costs 2-10x more
    if np.issubdtype(data.dtype, np.floating):
        for band in bands:
            mask &= np.isfinite(band, out=scratch)
    if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)):
        return mask
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        if float(nodata) != int(nodata) or not info.min <= int(nodata) <= info.max:
            return mask
        nodata = int(nodata)
    value = np.asarray(nodata, dtype=data.dtype)
    for band in bands:
        mask &= np.not_equal(band, value, out=scratch)
    return mask


class OwnMask:
    """GDAL's mask of a raster that has one of its own (an internal or ``.msk`` mask, an alpha band): pixels it
    hides are no data, like nodata values and NaN. See :func:`own_mask`."""

    def __init__(self, dataset, bands, alpha_band=None):
        self.dataset, self.bands, self.alpha_band = dataset, bands, alpha_band

    def valid(self, window) -> np.ndarray:
        """(row, col) bool: True where the mask shows the pixel in every band read."""
        try:
            if self.alpha_band is not None:
                return self.dataset.read(self.alpha_band, window=window) != 0
            masks = self.dataset.read_masks(self.bands, window=window)
        except (rasterio.errors.RasterioError, rasterio.errors.RasterioIOError) as exc:
            raise BadInputError(f"Cannot read the mask of {self.dataset.name}: the file or its mask is damaged or "
                                f"incomplete (GDAL says: {str(exc).strip()[:300]}). Copy or export it again, then "
                                f"run again.") from exc
        return masks[0] != 0 if len(masks) == 1 else np.all(masks, axis=0)


def own_mask(dataset, indexes=None, alpha_band=None):
    """An :class:`OwnMask` for the bands ``indexes`` (default all) when the raster has a mask of its own, else
    None: an ordinary raster (all valid, or masked by its nodata value only), or one whose alpha band holds an
    image band (:func:`.band_kinds.alpha_holds_image`), reads no mask. ``alpha_band``:
    the band that holds the mask (a ``WarpedVRT`` made with ``add_alpha``), read instead of GDAL's masks."""
    if alpha_band is not None:
        return OwnMask(dataset, [], alpha_band)
    flags = dataset.mask_flag_enums
    masked = [b for b in (indexes or range(1, dataset.count + 1))
              if not {MaskFlags.all_valid, MaskFlags.nodata} & set(flags[b - 1])]
    if not masked:
        return None
    if all(MaskFlags.alpha in flags[b - 1] for b in masked) and alpha_holds_image(dataset):
        return None  # an image band GDAL tagged alpha by default: data, not a mask (band_kinds.alpha_warning)
    if all(MaskFlags.per_dataset in flags[b - 1] for b in masked):
        masked = masked[:1]  # one mask for every band: read it once
    return OwnMask(dataset, masked)


FILL_SHARE = 0.05  # of the valid pixels at one fill value in every band, in a raster without a nodata value
# Values that tools write for "no data" without always declaring it: 0, GIS fills (-9999, -99999), int16 fills
# (-32768, -32767), uint16's largest value, float32's lowest. A pixel at one of them in every band is fill.
FILL_VALUES = (0, -9999, -99999, -32768, -32767, 65535, float(np.finfo(np.float32).min))


def fill_counts(values: np.ndarray) -> dict:
    """{fill value: number of pixels of ``values`` (band, pixel) at that value in every band}, for the
    :data:`FILL_VALUES` some pixel holds in every band."""
    if not values.size:
        return {}
    firsts = values[0, (values == values[:1]).all(axis=0)]  # the value of each pixel at one value in every band
    counts = {value: int(np.count_nonzero(firsts == value)) for value in FILL_VALUES}
    return {value: found for value, found in counts.items() if found}


def fill_warning(name, counts: dict, pixels: int, what: str, consequence: str):
    """The warning for a raster without a nodata value whose pixels (``counts`` of ``pixels``, from
    :func:`fill_counts`; ``what``: "sampled pixels") are often one fill value in every band, or None when they
    are few: a fill border or gaps saved as 0 or -9999 are read as land cover (``consequence``)."""
    value, found = max(counts.items(), key=lambda item: item[1], default=(0, 0))
    if not pixels or found < FILL_SHARE * pixels:
        return None
    shown = f"{value:.9g}"  # float32's lowest read back exactly
    return (f"{found / pixels:.0%} of the {what} of {name} are {shown} in every band, and the raster has no nodata "
            f"value: those look like no data (a fill border or gaps), yet they are {consequence}. Set {shown} as "
            f"the raster's nodata value (in QGIS: Raster > Conversion > Translate, with 'Assign a specified nodata "
            f"value to output bands' set to {shown}; or gdal_edit -a_nodata {shown}) and run again on that raster.")
