"""The classifier's input side: checking a raster against the model, and reading it as standardised tiles.

:func:`open_source` checks the raster against the model (band count, pixel type, CRS units, resolution),
resamples it on the fly to the model's resolution when asked (a rasterio ``WarpedVRT``), limits it to an
extent (snapped outward to whole pixels of the input grid) and rasterises an optional mask per tile.
:meth:`RasterSource.batches` then yields batches of tiles: nodata, NaN, padded and outside-mask pixels, and
pixels the raster's own mask hides (an internal or ``.msk`` mask, an alpha band: :func:`..rasters.own_mask`),
are invalid and set to 0 after standardisation; tiles with no valid pixel are skipped, never run.
"""
import contextlib
import json
import math
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_geom
from rasterio.windows import Window

from ..band_choice import choose_bands, describe_model_bands, name_mismatch_warning, parse_bands
from ..band_kinds import alpha_warning, band_names, mask_alpha
from ..errors import BadInputError
from ..ground import raster_pixel_size
from ..model.metadata import card_resolution_m
from ..rasters import band_view, check_pixel_type, open_raster, own_mask, read, valid_mask
from .preflight import check_band_statistics, preflight_warnings
from .radiometry import match_training_raster, matched_card

RESOLUTION_TOLERANCE = 1.5  # warn when raster and model resolutions differ by more than this factor
GDAL_CACHE_BYTES = 256 * 2**20  # bounded block cache: strip-organised rasters are decoded once per tile row


@dataclass
class Batch:
    tiles: list  # tiling.Tile, in grid order
    x: np.ndarray  # (n, bands, T, T) float32, standardised; invalid and padded pixels 0
    valid: np.ndarray  # (n, T, T) bool


class RasterSource:
    """A checked raster window ready to be read as tiles; its grid is the output grid."""

    def __init__(self, dataset, window: Window, model, shapes, events, indexes=None, bands_given: bool = False,
                 mask=None):
        self.dataset, self.window, self.shapes = dataset, window, shapes
        self.mask = mask  # the raster's own mask (rasters.OwnMask), or None: read only when there is one
        self.indexes = list(indexes or range(1, dataset.count + 1))  # raster bands fed to the model, in order
        self.bands_given = bands_given  # the analyst chose them (Bands): advice speaks of their choice
        self.width, self.height = int(window.width), int(window.height)
        self.transform = dataset.window_transform(window)
        self.bounds = rasterio.windows.bounds(window, dataset.transform)
        self.crs_wkt = dataset.crs.to_wkt() if dataset.crs else ""
        self.nodata = band_view(dataset, self.indexes)[1]  # mixed bands: NaN, each band's own value read so
        self.mean = np.asarray(model.card["mean"], dtype=np.float32)[:, None, None]
        self.inv_std = (1.0 / np.asarray(model.card["std"], dtype=np.float32))[:, None, None]
        self.bands, self.tile = model.bands, model.tile
        self.events, self._model = events, model
        self._strip_rows, self._strip = None, None  # the tile row read last: (row, rows), (standardised, valid)

    def batches(self, grid, batch_size: int):
        """Yield :class:`Batch` es of up to ``batch_size`` tiles of one size that hold at least one valid pixel.

        ``grid``: a :class:`tiling.TileGrid` (its tile size may be bigger than the model's, for a model that
        takes any size, and its last tiles smaller) or a list of its tiles."""
        tiles, x, valid = [], None, None
        # A whole grid is read a tile row at a time (one read per row instead of one per tile: 720 reads of
        # 64 px tiles cost 0.25 s of a 4.2 s Zion run); a mask or a sample of tiles reads tile by tile.
        strips = hasattr(grid, "row_offsets") and self.shapes is None
        for tile in grid:
            shape = (tile.height, tile.width)
            if tiles and x.shape[2:] != shape:  # a batch holds tiles of one size
                yield Batch(tiles, x[:len(tiles)], valid[:len(tiles)])
                tiles, x, valid = [], None, None
            if x is None or x.shape[2:] != shape:
                x = np.zeros((batch_size, self.bands) + shape, dtype=np.float32)
                valid = np.zeros((batch_size,) + shape, dtype=bool)
            if self._read_tile(tile, x[len(tiles)], valid[len(tiles)], strips):
                tiles.append(tile)
                if len(tiles) == batch_size:
                    yield Batch(tiles, x, valid)
                    tiles, x, valid = [], None, None
        if tiles:
            yield Batch(tiles, x[:len(tiles)], valid[:len(tiles)])

    def statistics_warnings(self) -> list:
        """The pre-flight warnings (the bands do not look like the training data's, zeros that look like no
        data; see :mod:`.preflight`): a sample of windows, read on the thread that reads the tiles (a dataset is
        read by one thread at a time)."""
        return preflight_warnings(self.dataset, self.window, self._model, self.indexes, self.bands_given, self.mask)

    def _read_tile(self, tile, x: np.ndarray, valid: np.ndarray, strips: bool = False) -> bool:
        window = Window(self.window.col_off + tile.col, self.window.row_off + tile.row, tile.cols, tile.rows)
        inside = valid[:tile.rows, :tile.cols]
        if self.shapes is not None:
            inside[:] = geometry_mask(self.shapes, out_shape=(tile.rows, tile.cols),
                                      transform=self.dataset.window_transform(window), invert=True)
            if not inside.any():
                inside[:] = False
                return False
        else:
            inside[:] = True
        if strips:  # standardised once per tile row: a tile is a copy
            data, ok = self._tile_row(tile)
            inside &= ok[:, tile.col:tile.col + tile.cols]
            if not inside.any():
                return False
            x[:, :tile.rows, :tile.cols] = data[:, :, tile.col:tile.col + tile.cols]
            return True
        data = read(self.dataset, self.indexes, window=window)
        inside &= valid_mask(data, self.nodata)
        if self.mask is not None:
            inside &= self.mask.valid(window)
        if not inside.any():
            return False  # all False already
        self._standardise(data, inside, x[:, :tile.rows, :tile.cols])
        return True

    def _standardise(self, data: np.ndarray, valid: np.ndarray, out: np.ndarray) -> None:
        """``out`` = (``data`` - mean) / std in float32, 0 where not ``valid``."""
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(data, self.mean, out=out, casting="unsafe")
            out *= self.inv_std
        if not valid.all():
            out[:, ~valid] = 0.0

    def _tile_row(self, tile) -> tuple:
        """The raster rows of ``tile``'s grid row across the whole width, standardised (float32, invalid pixels 0),
        and their validity; read and standardised once per row (one vectorised pass instead of one per tile:
        overlapping tiles share pixels; bands x tile x width floats, as bounded as the blending strip)."""
        if self._strip_rows != (tile.row, tile.rows):
            window = Window(self.window.col_off, self.window.row_off + tile.row, self.width, tile.rows)
            data = read(self.dataset, self.indexes, window=window)
            ok = valid_mask(data, self.nodata)
            if self.mask is not None:
                ok &= self.mask.valid(window)
            if self._strip is None or self._strip[0].shape[:2] != (len(data), tile.rows):
                self._strip = (np.empty((len(data), tile.rows, self.width), dtype=np.float32), None)
            standardised = self._strip[0]
            self._standardise(data, ok, standardised)
            self._strip_rows, self._strip = (tile.row, tile.rows), (standardised, ok)
        return self._strip


@contextlib.contextmanager
def open_source(raster_path, model, *, extent=None, mask_path=None, resample=False, events, bands=None,
                preflight=True, match=False):
    """Open, check and frame the raster for ``model``; yields a :class:`RasterSource`. ``bands``: the raster
    bands to feed the model, in its order (default: see :func:`..band_choice.choose_bands`). ``preflight``:
    check the bands' statistics against the training data's now (:mod:`.preflight`); else the source's
    :meth:`RasterSource.statistics_warnings` does, on the thread that reads it, and the caller tells it.
    ``match``: read the raster as the training raster's values (:mod:`.radiometry`; the model's card then holds
    the mean and std in the raster's own values, and ``matched_to_training``)."""
    with _bounded_block_cache(), open_raster(raster_path) as src, contextlib.ExitStack() as stack:
        indexes = _check(src, model, events, bands)
        given = parse_bands(bands) is not None
        dataset, own = src, own_mask(src, indexes)
        target = _target_grid(src, model, resample, events)
        if target is not None:  # a raster with a mask of its own: the warped mask is an added alpha band
            dataset = stack.enter_context(WarpedVRT(src, crs=src.crs, resampling=Resampling.bilinear,
                                                    add_alpha=own is not None, **target))
            own = own_mask(dataset, alpha_band=dataset.count) if own is not None else None
        window = extent_window(extent, dataset)
        if match:
            model.card = matched_card(model.card, match_training_raster(dataset, window, indexes, model.card,
                                                                        events, own))
        shapes = load_mask(mask_path, dataset.crs) if mask_path else None
        if preflight:  # before spending the run
            check_band_statistics(dataset, window, model, events, indexes, given, own)
        yield RasterSource(dataset, window, model, shapes, events, indexes, given, own)


@contextlib.contextmanager
def _bounded_block_cache():
    """GDAL's block cache held at :data:`GDAL_CACHE_BYTES` while the raster is read, through GDAL's own bindings
    where this Python has them (they share rasterio's GDAL in QGIS's and Debian's Pythons); a bare engine with
    only pip's rasterio (a GPU server that trains) reads with GDAL's default cache."""
    try:
        from osgeo import gdal  # noqa: PLC0415 - optional here
    except ImportError:
        yield
        return
    previous = gdal.GetCacheMax()
    gdal.SetCacheMax(GDAL_CACHE_BYTES)
    try:
        yield
    finally:
        gdal.SetCacheMax(previous)


def _check(src, model, events, bands=None) -> list:
    """Check the raster against the model; returns the raster bands to feed it, in the model's order."""
    card = model.card
    check_pixel_type(src)
    if src.count != model.bands and card["bands"].get("assumed") and not bands:
        raise BadInputError(f"The model's input does not fix how many bands it takes (its channel axis is "
                            f"dynamic) and its metadata does not say it, so the raster's {src.count} bands cannot "
                            f"be checked against it. Give the per-band mean and std, one value per band "
                            f"({src.count} here), so the band count is known.")
    card_bands = dict(card["bands"], count=model.bands)
    names = band_names(src)
    indexes, how = choose_bands(src.count, card_bands, bands, names, mask_alpha(src))
    if not card["bands"].get("assumed"):
        events.info(f"The model takes {describe_model_bands(card_bands)}; reading raster bands "
                    f"{', '.join(map(str, indexes))} ({how}).")
        mismatch = name_mismatch_warning(indexes, card_bands, names)
        if mismatch:
            events.warning(mismatch)
    said = alpha_warning(src)
    if said:
        events.warning(said)
    dtype = band_view(src, indexes)[0]
    if card.get("input_dtype") and card["input_dtype"] != dtype:
        events.warning(f"The raster's pixels are {dtype} but the model was trained on "
                       f"{card['input_dtype']} pixels: if their value ranges differ (e.g. 8-bit vs 16-bit "
                       f"digital numbers), the classes will be wrong. Convert the raster, or use a model "
                       f"trained on this kind of image.")
    if src.crs is None:
        events.warning(f"The raster {src.name} has no CRS: the classified raster will have none either, and "
                       f"its resolution cannot be compared with the model's.")
    elif card.get("crs") and not _same_crs(src.crs, card["crs"]):
        events.info(f"The raster's CRS is {_crs_text(src.crs)}; the model was trained in "
                    f"{_crs_text(_parse_crs(card['crs'])) if _parse_crs(card['crs']) else card['crs'][:60]}.")
    return indexes


def _target_grid(src, model, resample: bool, events):
    """Keyword arguments of a WarpedVRT at the model's resolution, or None to read the raster as it is."""
    model_res = card_resolution_m(model.card)
    if not model_res:
        if resample:
            events.warning("Resampling was asked for but the model does not say its resolution: not resampled.")
        return None
    size = None if src.crs is None else raster_pixel_size(src.crs, src.transform, src.width, src.height,
                                                            _crs_text(src.crs))
    if size is None:
        units = "no CRS" if src.crs is None else f"a CRS whose pixel size cannot be measured ({_crs_text(src.crs)})"
        message = (f"The raster has {units}, but the model was trained at {model_res:.3g} m per pixel: the "
                   f"resolutions cannot be compared. Reproject the raster to a projected CRS in metres")
        if resample:
            raise BadInputError(message + " before resampling it to the model's resolution.")
        events.warning(message + " if the classes look wrong.")
        return None
    if size.stretched:  # Web Mercator's units are not ground metres away from the equator; degrees never are
        why = "" if size.sides else " (its CRS stretches distances there)"
        events.info(f"The raster's pixel size is {size.note()}{why}: the size on the ground is what is compared "
                    f"with the model's {model_res:.3g} m.")
    metres = size.ground
    ratio = metres / model_res
    sides = size.sides or (metres, metres)
    aspect = max(sides) / min(sides)  # a geographic CRS's pixels are longer north-south away from the equator
    if not resample:
        if not 1 / RESOLUTION_TOLERANCE <= ratio <= RESOLUTION_TOLERANCE:
            events.warning(f"The raster's resolution is {metres:.3g} m per pixel"
                           f"{' on the ground' if size.stretched else ''} but the model was trained at "
                           f"{model_res:.3g} m per pixel ({ratio:.2f}x): objects will look "
                           f"{'smaller' if ratio > 1 else 'larger'} "
                           f"than in training. Turn on resampling to the model's resolution, or use a "
                           f"model trained at this resolution.")
        elif aspect > RESOLUTION_TOLERANCE:
            events.warning(f"The raster's pixels are {sides[0]:.3g} m east-west by {sides[1]:.3g} m north-south on "
                           f"the ground ({size.crs_name} in degrees): objects look {aspect:.2f} times stretched "
                           f"against the model's {model_res:.3g} m. Turn on resampling to the model's resolution "
                           f"(square on the ground), or reproject the raster to a projected CRS in metres (its UTM "
                           f"zone).")
        return None
    if abs(ratio - 1) < 0.01 and aspect < 1.01:
        events.info(f"The raster is already at the model's resolution ({model_res:.3g} m): not resampled.")
        return None
    xstep, ystep = size.steps_for(model_res, src.transform)  # CRS units per model pixel
    left, bottom, right, top = src.bounds
    width, height = max(1, round((right - left) / xstep)), max(1, round((top - bottom) / ystep))
    units = ""
    if size.sides:
        units = f" ({xstep:.4g} x {ystep:.4g} {size.unit}: square on the ground at the raster's centre)"
    elif size.stretched:
        units = f" ({xstep:.4g} {size.crs_name} units)"
    shown = f"{metres:.3g} m" if aspect < 1.01 else f"{sides[0]:.3g} m x {sides[1]:.3g} m"
    events.info(f"Resampled (bilinear) from {shown} to the model's {model_res:.3g} m per pixel{units}: "
                f"{src.width}x{src.height} -> {width}x{height} px; the classified raster is on that grid.")
    return {"transform": rasterio.transform.from_origin(left, top, xstep, ystep), "width": width, "height": height}


def extent_window(extent, dataset) -> Window:
    """The pixel window covering ``extent`` (xmin, ymin, xmax, ymax), snapped outward, within the raster."""
    full = Window(0, 0, dataset.width, dataset.height)
    if not extent:
        return full
    xmin, ymin, xmax, ymax = (float(v) for v in extent)
    if not (xmin < xmax and ymin < ymax):
        raise BadInputError(f"The extent {xmin}, {ymin}, {xmax}, {ymax} is empty: give xmin < xmax and ymin < ymax.")
    inverse = ~dataset.transform
    cols, rows = zip(*(inverse * corner for corner in ((xmin, ymin), (xmin, ymax), (xmax, ymin), (xmax, ymax))))
    col0, row0 = max(0, math.floor(min(cols) + 1e-6)), max(0, math.floor(min(rows) + 1e-6))
    col1, row1 = min(dataset.width, math.ceil(max(cols) - 1e-6)), min(dataset.height, math.ceil(max(rows) - 1e-6))
    if col1 <= col0 or row1 <= row0:
        left, bottom, right, top = dataset.bounds
        shown = ", ".join  # 10 digits: metres of a UTM northing to the mm (':g' said 5.09e+06 for 5090000)
        raise BadInputError(f"The extent {shown(f'{v:.10g}' for v in (xmin, ymin, xmax, ymax))} does not overlap "
                            f"the raster, which covers {shown(f'{v:.10g}' for v in (left, bottom, right, top))} in "
                            f"its CRS "
                            f"({_crs_text(dataset.crs)}). Choose an extent over the raster.")
    return Window(col0, row0, col1 - col0, row1 - row0)


def load_mask(path, crs) -> list:
    """The polygons of the first layer of an OGR file, as GeoJSON-like dicts in ``crs``."""
    from osgeo import ogr  # noqa: PLC0415 - GDAL's bindings, only when a mask is given
    try:
        source = ogr.Open(str(path))
    except RuntimeError:  # when someone turned on ogr.UseExceptions()
        source = None
    if source is None or source.GetLayerCount() == 0:
        raise BadInputError(f"Cannot read the mask layer {path}: give a polygon file GDAL/OGR can open.")
    layer = source.GetLayer(0)
    shapes = [json.loads(feature.GetGeometryRef().ExportToJson()) for feature in layer
              if feature.GetGeometryRef() is not None and "POLYGON" in feature.GetGeometryRef().GetGeometryName()]
    if not shapes:
        raise BadInputError(f"The mask layer {path} has no polygons: give polygons that outline the area to "
                            f"classify.")
    reference = layer.GetSpatialRef()
    if reference is not None and crs is not None:
        try:
            if (reference.GetName() or "").lower().startswith("undefined"):  # a GeoPackage's srs_id 0 or -1
                raise ValueError("the GeoPackage records no CRS for it")
            mask_crs = rasterio.crs.CRS.from_wkt(reference.ExportToWkt())
            if mask_crs != crs:
                shapes = transform_geom(mask_crs, crs, shapes)
        except (rasterio.errors.CRSError, rasterio.errors.RasterioError, RuntimeError, ValueError) as exc:
            name = reference.GetName() or "unnamed"
            raise BadInputError(f"The mask layer {path} has a CRS that cannot be used ('{name}': "
                                f"{str(exc).strip()[:200]}), so its polygons cannot be placed on the raster. "
                                f"Assign the mask its real CRS (in QGIS: Layer Properties > Source, or "
                                f"'Assign projection'), or save it in the raster's CRS.") from exc
    return shapes



def mask_bounds(shapes) -> tuple:
    """(xmin, ymin, xmax, ymax) of GeoJSON-like polygons."""
    boxes = [rasterio.features.bounds(shape) for shape in shapes]
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def _parse_crs(text):
    """A CRS from the card's text (WKT or an authority code), or None when it is not one."""
    try:
        return rasterio.crs.CRS.from_user_input(text)
    except (rasterio.errors.CRSError, ValueError, TypeError):
        return None


def _same_crs(crs, text) -> bool:
    """Compare CRS objects: the card stores WKT, the raster may say EPSG:xxxx; the same CRS is never news."""
    other = _parse_crs(text)
    return other is not None and (other == crs or (other.to_epsg() is not None and other.to_epsg() == crs.to_epsg()))


def _crs_text(crs) -> str:
    if crs is None:
        return "none"
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()[:60]
