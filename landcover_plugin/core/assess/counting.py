"""Counting a classified raster against the reference, window by window (run by :mod:`.assess`).

:func:`_count` streams the windows of the grid extended to the reference data (:mod:`.reference`): the confusion
counts of the reference against the map, the pixels and area mapped as each class, and the reference pixels
left out (outside the raster, on its no data). :func:`_area_info` gives the pixel area of each row.
"""
import numpy as np
from rasterio.windows import transform as window_transform

from ..errors import BadInputError, Cancelled
from ..rasters import read
from .metrics import ConfusionCounter
from .reference import ExtendedGrid, window_bounds

EARTH_RADIUS_M = 6371007.2  # authalic sphere, for areas in a geographic CRS


def _count(src, reference, block, row_area, events, training=None) -> dict:
    """The counts; ``training`` (a :class:`.training_pixels.TrainingPixels`, or None) adds ``on_training``: the
    assessed reference pixels the map's model was trained on, and how many of them the map has right."""
    grid = ExtendedGrid(src.transform, src.width, src.height, reference.bounds)
    reference.prepare(grid)
    counter = ConfusionCounter()
    mapped = np.zeros(256, dtype=np.int64)
    mapped_area = np.zeros(256, dtype=np.float64)
    outside = on_nodata = 0
    on_training = [0, 0]  # pixels, of which mapped right
    nodata, warned_255 = src.nodata, False
    windows = list(grid.windows(block))
    for number, window in enumerate(windows, 1):
        if events.cancel_requested:
            raise Cancelled("Accuracy assessment cancelled: no output was written.")
        events.progress((number - 1) / len(windows), f"window {number}/{len(windows)}")
        inside = grid.inside_part(window)
        box = window_bounds(src.transform, window)
        has_reference = reference.intersects(box)
        if inside is None and not has_reference:
            continue
        shape = (int(window.height), int(window.width))
        classes = np.zeros(shape, dtype=np.uint8)
        within = np.zeros(shape, dtype=bool)
        if inside is not None:
            raster_window, slices = inside
            data = read(src, 1, window=raster_window)
            valid = _classified_valid(data, nodata)
            if not warned_255 and nodata != 255 and (data == 255).any():
                warned_255 = True
                events.warning("The classified raster holds value 255, which is never a class: treated as no data.")
            values = data[valid].astype(np.int64)
            classes[slices][valid] = values
            within[slices] = True
            mapped += np.bincount(values, minlength=256)
            rows = np.arange(raster_window.row_off, raster_window.row_off + raster_window.height)
            weights = np.broadcast_to(row_area[rows][:, None], data.shape)[valid]
            mapped_area += np.bincount(values, weights=weights, minlength=256)
        if not has_reference:
            continue
        if reference.kind == "points":  # each sample point counts once, in the pixel it falls in
            ids, mapped_ids, point_outside, point_nodata = reference.pairs(window, classes, within)
            outside += point_outside
            on_nodata += point_nodata
            counter.update(ids, mapped_ids)
            continue
        transform = window_transform(window, src.transform)
        ids = reference.read(transform, box, shape, window=window)
        has_ref = ids > 0
        outside += int((has_ref & ~within).sum())
        on_nodata += int((has_ref & within & (classes == 0)).sum())
        pair = has_ref & (classes > 0)
        counter.update(ids[pair], classes[pair])
        if training is not None and pair.any():
            taught = pair & training.mask(transform, box, shape)
            on_training[0] += int(taught.sum())
            on_training[1] += int((taught & (ids == classes)).sum())
    events.progress(1.0, "counted")
    return {"counter": counter, "mapped": mapped, "mapped_area": mapped_area, "outside": outside,
            "on_nodata": on_nodata, "conflicts": reference.conflicts, "reference_kind": reference.kind,
            "on_training": on_training if training is not None else None}


def _classified_valid(data: np.ndarray, nodata) -> np.ndarray:
    valid = data != 0
    if nodata is not None:
        valid &= data != nodata
    bad = data[valid & ((data < 0) | (data > 255))]
    if bad.size:
        raise BadInputError(f"The classified raster holds value {bad[0]}, which is not a class id (1..254). "
                            "Choose a classified map with class ids 1..254 and 0 as no data.")
    return valid & (data != 255)  # 255 is never a class (DESIGN.md): treated as no data


def _area_info(transform, crs, height) -> dict:
    """Pixel area per row: square metres (unit "ha" in reports) in a projected or geographic CRS,
    else squared map units."""
    rows = np.arange(height, dtype=np.float64)
    flat = abs(transform.a * transform.e - transform.b * transform.d)
    if crs is not None and crs.is_geographic:
        top = np.radians(transform.f + transform.e * rows)
        bottom = np.radians(transform.f + transform.e * (rows + 1))
        row_area = EARTH_RADIUS_M ** 2 * np.radians(abs(transform.a)) * np.abs(np.sin(top) - np.sin(bottom))
        return {"row_area": row_area, "unit": "ha", "to_unit": 1e-4,
                "note": "The raster is in a geographic CRS: pixel areas are computed per row on a sphere "
                        "(approximate to about 0.5 %)."}
    factor = None
    if crs is not None:
        try:
            factor = crs.linear_units_factor[1]
        except Exception:  # noqa: BLE001 - a CRS without linear units
            factor = None
    if factor:
        return {"row_area": np.full(height, flat * factor ** 2), "unit": "ha", "to_unit": 1e-4,
                "note": f"Pixel area {flat * factor ** 2:g} m² from the raster's transform."}
    return {"row_area": np.full(height, flat), "unit": "map units²", "to_unit": 1.0,
            "note": "The raster has no CRS with known linear units: areas are in squared map units, not hectares."}
