"""The optional uncertainty raster of ``classify``: how unsure the model is about each pixel, from the
blended class probabilities (QGIS-free).

- ``entropy``: the normalised Shannon entropy of the probabilities, -sum p log p / log K (0 = one class
  certain, 100 = all K classes equally likely), K the classes the model can map (a class its trainer left out
  for lack of training pixels has probability 0: counted, it capped the entropy at log K / log all, 53 % for
  3 of 8 classes; see :mod:`..model.mappable`);
- ``margin``: 1 - (p1 - p2), one minus the gap between the two most likely classes (0 = the top class
  certain, 100 = a tie between the top two).

uint8 GeoTIFF, 0..100 in percent, 255 = no data (a pixel the classifier left as no data), on the
classified raster's grid, tiled, DEFLATE, overviews, a ``.qml`` beside it (a pseudocolour ramp from
certain to unsure). Written under a temporary name and renamed when complete.

The hook in :mod:`.run` is two lines: :class:`UncertaintyRaster` makes the :class:`UncertaintyBlender`
(a ``StripBlender`` that also hands each finished strip's probabilities to the raster) and is finished
after the classified raster.
"""
import contextlib
import os
import xml.etree.ElementTree as ET

import numpy as np
from osgeo import gdal

from ..classified_raster import CREATION_OPTIONS, overview_factors
from ..errors import BadInputError
from ..output_paths import check_output_path, partial_path
from ..qml import QGIS_VERSION
from .tiling import StripBlender

MEASURES = ("entropy", "margin")
NODATA = 255
# Certain (dark blue) to unsure (yellow): viridis' ends and middle, readable on any basemap.
RAMP = [(0, "#440154", "certain"), (25, "#3b528b", ""), (50, "#21918c", ""), (75, "#5ec962", ""),
        (100, "#fde725", "unsure")]


def uncertainty_percent(probs: np.ndarray, valid: np.ndarray, measure: str, classes: int = None) -> np.ndarray:
    """(rows, cols) uint8 uncertainty, 0..100, ``NODATA`` where not ``valid``; ``probs`` (K, rows, cols)
    are blended (weighted) probabilities: each pixel is normalised to sum 1 first. ``classes``: how many of
    the K the model can map (the others' probability is 0; None: all K); the entropy is scaled to them."""
    k = probs.shape[0] if classes is None else min(int(classes), probs.shape[0])
    total = probs.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = probs / np.where(total > 0, total, 1.0)
        if k < 2:
            value = np.zeros(total.shape, dtype=np.float32)
        elif measure == "entropy":
            value = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=0) / np.log(k)
        elif measure == "margin":
            top2 = np.partition(p, p.shape[0] - 2, axis=0)[p.shape[0] - 2:]
            value = 1.0 - (top2[1] - top2[0])
        else:
            raise BadInputError(f"Unknown uncertainty measure {measure!r}: use one of {', '.join(MEASURES)}.")
    out = np.clip(np.rint(100.0 * np.nan_to_num(value, nan=1.0)), 0, 100).astype(np.uint8)
    out[~valid] = NODATA
    return out


@contextlib.contextmanager
def uncertainty_output(options, source, inputs, model=None, events=None):
    """The :class:`UncertaintyRaster` that ``options.uncertainty`` asks for on ``source``'s grid, or None; its
    entropy is scaled to the classes ``model`` can map."""
    if not options.uncertainty:
        yield None
        return
    classes = None
    if model is not None:
        classes = len(model.mappable_channels)
        if classes < len(model.classes) and events is not None:
            left_out = [c["name"] for k, c in enumerate(model.classes) if k not in set(model.mappable_channels)]
            events.info(f"The model maps {classes} of its {len(model.classes)} classes (left out for lack of "
                        f"training pixels: {', '.join(left_out)}): the uncertainty is measured among those "
                        f"{classes} (100 % = all {classes} equally likely).")
    path = check_output_path(options.uncertainty, overwrite=options.overwrite, inputs=inputs)
    others = {os.path.abspath(os.fspath(p)) for p in (options.output, options.confidence) if p}
    if path in others:
        raise BadInputError(f"The uncertainty raster {path} is also another output: give it its own path.")
    style = os.path.splitext(path)[0] + ".qml"
    if options.output and os.path.splitext(os.path.abspath(os.fspath(options.output)))[0] + ".qml" == style:
        raise BadInputError(f"The uncertainty raster {path} and the classified raster {options.output} share the "
                            f"style file {style} (each has its own beside it): give them different names.")
    with UncertaintyRaster(path, options.uncertainty_measure, width=source.width, height=source.height,
                           crs_wkt=source.crs_wkt, geotransform=source.transform.to_gdal(), classes=classes) as raster:
        yield raster


class UncertaintyBlender(StripBlender):
    """A StripBlender that also passes each strip's blended probabilities to ``sink(probs, valid)``."""

    def __init__(self, *args, sink=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.sink = sink

    def _labels(self, rows: int) -> tuple:
        self.sink(self.acc[:, :rows], self.valid[:rows])
        return super()._labels(rows)

    def release(self, until: int) -> None:
        before = self.top + min(until - self.top, self.used) if until > self.top else self.top
        super().release(until)
        if self.top > before:  # rows only skipped (all no-data) tiles covered: no data here too
            self.sink(None, np.zeros((self.top - before, self.grid.width), dtype=bool))


class UncertaintyRaster:
    """Writes the uncertainty GeoTIFF strip by strip; use as a context manager, ``finish()`` publishes."""

    def __init__(self, path: str, measure: str, *, width: int, height: int, crs_wkt: str, geotransform,
                 classes: int = None):
        """``classes``: how many classes the model can map (the entropy's scale; None: all its classes)."""
        if measure not in MEASURES:
            raise BadInputError(f"Unknown uncertainty measure {measure!r}: use one of {', '.join(MEASURES)}.")
        self.path, self.measure, self.width, self.height = path, measure, int(width), int(height)
        self.classes = classes
        self.temp = partial_path(path)
        self.row = 0
        gdal.UseExceptions()
        try:
            os.makedirs(os.path.dirname(self.temp), exist_ok=True)
            self.dataset = gdal.GetDriverByName("GTiff").Create(self.temp, self.width, self.height, 1,
                                                                gdal.GDT_Byte, CREATION_OPTIONS)
        except (OSError, RuntimeError) as exc:
            raise BadInputError(f"Cannot create the uncertainty raster {path}: {exc}. Choose a folder you can "
                                "write to.") from exc
        self.dataset.SetGeoTransform(tuple(geotransform))
        if crs_wkt:
            self.dataset.SetProjection(crs_wkt)
        band = self.dataset.GetRasterBand(1)
        band.SetNoDataValue(NODATA)
        band.SetDescription(f"uncertainty ({measure}, percent)")

    def blender(self, grid, class_ids, emit, *, confidence=False):
        """The StripBlender the classifier uses, feeding this raster too."""
        return UncertaintyBlender(grid, class_ids, emit, confidence=confidence, sink=self.write)

    def write(self, probs, valid) -> None:
        values = np.full(valid.shape, NODATA, dtype=np.uint8) if probs is None else \
            uncertainty_percent(probs, valid, self.measure, self.classes)
        self.dataset.GetRasterBand(1).WriteArray(values, 0, self.row)
        self.row += values.shape[0]

    def finish(self) -> str:
        if self.row != self.height:
            raise RuntimeError(f"uncertainty: wrote {self.row} of {self.height} rows")
        factors = overview_factors(self.width, self.height)
        if factors:
            self.dataset.BuildOverviews("AVERAGE", factors)
        self.dataset.FlushCache()
        self.dataset = None
        os.replace(self.temp, self.path)
        write_ramp_qml(os.path.splitext(self.path)[0] + ".qml", self.measure)
        return self.path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.dataset = None
            for leftover in (self.temp, self.temp + ".aux.xml"):
                if os.path.exists(leftover):
                    os.remove(leftover)
        return False


def write_ramp_qml(path: str, measure: str) -> str:
    """A singleband pseudocolour style, 0 (certain) .. 100 (unsure), no data transparent."""
    root = ET.Element("qgis", {"version": QGIS_VERSION, "styleCategories": "AllStyleCategories"})
    pipe = ET.SubElement(root, "pipe")
    renderer = ET.SubElement(pipe, "rasterrenderer", {"type": "singlebandpseudocolor", "band": "1",
                                                      "opacity": "1", "alphaBand": "-1", "classificationMin": "0",
                                                      "classificationMax": "100", "nodataColor": ""})
    ET.SubElement(renderer, "rasterTransparency")
    shader = ET.SubElement(ET.SubElement(renderer, "rastershader"), "colorrampshader",
                           {"colorRampType": "INTERPOLATED", "classificationMode": "1", "clip": "0",
                            "minimumValue": "0", "maximumValue": "100"})
    for value, colour, label in RAMP:
        ET.SubElement(shader, "item", {"value": str(value), "color": colour, "alpha": "255",
                                       "label": f"{value} {label} ({measure})".replace("  ", " ").strip()})
    ET.SubElement(pipe, "brightnesscontrast", {"brightness": "0", "contrast": "0", "gamma": "1"})
    ET.SubElement(root, "blendMode").text = "0"
    ET.indent(root)
    text = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    return path
