"""Writing the classified raster (DESIGN.md, "Classified raster") and its optional confidence raster.

uint8 GeoTIFF on the input grid, nodata 0, 256 px tiles, DEFLATE, embedded colour table, category names
(GDAL keeps them in the ``.aux.xml`` beside a GeoTIFF), the classes as JSON in the ``landcover_classes``
tag, internal overviews, and a ``.qml`` beside it (QGIS loads ``<name>.qml`` as the layer's default style).
The confidence raster is the blended top-class probability in percent (uint8, 1..100, nodata 0).
The labels' overviews (nearest neighbour) are built from the rows as they are written
(:mod:`.overview_rows`); the confidence raster's (average) by GDAL once it is complete.

Every file is written under a hidden temporary name in the target folder and renamed only when complete;
on any failure, cancel or full disk the temporary files are removed, so no half-written raster is left
looking valid. Writing uses GDAL's own bindings (one thread) because they report write errors such as a
full disk, which GDAL otherwise only prints while the file is flushed.

The checks on output paths before a run are in :mod:`.output_paths`; reading the classes back from a written
raster is in :mod:`.raster_classes`.
"""
import json
import os
import shutil

import numpy as np
from osgeo import gdal

from .errors import BadInputError, Cancelled, write_failure
from .output_folder import remove_stale
from .output_paths import partial_path
from .overview_rows import NearestLevels
from .qml import write_paletted_qml

BLOCK = 256
# DEFLATE level 4: on classified maps within ~8 % of level 6's size at a third of its time.
CREATION_OPTIONS = ["TILED=YES", f"BLOCKXSIZE={BLOCK}", f"BLOCKYSIZE={BLOCK}", "COMPRESS=DEFLATE", "ZLEVEL=4",
                    "BIGTIFF=IF_SAFER"]
NODATA = 0
# Overviews GDAL builds once a raster is complete; the labels' (nearest) are written with their rows.
OVERVIEW_RESAMPLING = {"confidence": "AVERAGE"}
CONFIDENCE_DESCRIPTION = "confidence (percent)"


def overview_factors(width: int, height: int, smallest: int = BLOCK) -> list:
    """2, 4, 8, ... until the coarsest overview fits in one block."""
    factors, factor = [], 2
    while max(width, height) / (factor // 2) > smallest:
        factors.append(factor)
        factor *= 2
    return factors


def colour_table(classes: list):
    """The GDAL colour table of a classified raster: class colours, nodata (0) transparent."""
    table = gdal.ColorTable()
    table.SetColorEntry(NODATA, (0, 0, 0, 0))
    for item in classes:
        colour = item["colour"]
        table.SetColorEntry(int(item["id"]), tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5)) + (255,))
    return table


def category_names(classes: list) -> list:
    """Band category names: the class name at each class id, "" elsewhere."""
    names = [""] * (max(int(c["id"]) for c in classes) + 1)
    for item in classes:
        names[int(item["id"])] = item["name"]
    return names


def _claim(targets) -> None:
    """Create every target exclusively (each then replaced by its finished file): of two runs that both found
    the paths free, only one may publish there without ``overwrite``."""
    claimed = []
    for target in targets:
        try:
            os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError as exc:
            for path in claimed:
                os.remove(path)
            raise BadInputError(f"The output {target} was created by another run while this one was working: "
                                f"choose another path, or allow overwriting (--overwrite). This run's result was "
                                f"removed.") from exc
        claimed.append(target)


# Files GDAL reads beside a GeoTIFF: statistics and names, external overviews (used when the file has none of its
# own: a small map), a mask (hides pixels as no data). Left from an earlier map, they would describe the new one.
STALE_SIDECARS = (".aux.xml", ".ovr", ".msk")


class ClassifiedRasterWriter:
    """Writes label rows (and confidence rows) in 256-row block strips; ``finish()`` publishes the files.

    Use as a context manager: leaving it by an exception removes every temporary file.
    """

    def __init__(self, path: str, *, width: int, height: int, crs_wkt: str, geotransform, classes: list,
                 confidence_path: str = None, progress=None, overwrite: bool = True, tags: dict = None):
        self.path, self.width, self.height = path, int(width), int(height)
        self.tags = tags or {}  # more metadata items of the map (JSON), as the model that made it (map_record)
        self.overwrite = overwrite
        self.classes = classes
        self.confidence_path = confidence_path
        self.progress = progress or (lambda fraction, message: True)
        self._targets = [("labels", path)] + ([("confidence", confidence_path)] if confidence_path else [])
        self._temps = {kind: partial_path(target) for kind, target in self._targets}
        self._datasets = {}
        self._crs_wkt, self._geotransform = crs_wkt, tuple(geotransform)
        self._pending = {kind: [] for kind, _ in self._targets}
        self._pending_rows = 0
        self._written_rows = 0

    # -- life cycle --------------------------------------------------------------------------------
    def __enter__(self):
        for kind, target in self._targets:
            folder = os.path.dirname(self._temps[kind])
            try:
                os.makedirs(folder, exist_ok=True)
                remove_stale(target)
            except OSError as exc:
                raise BadInputError(f"Cannot create the output folder {folder} ({write_failure(exc, folder)}). "
                                    f"Choose a folder you can write to.") from exc
            self._check_free_space(folder)
            self._datasets[kind] = self._create(self._temps[kind], target)
        band = self._datasets["labels"].GetRasterBand(1)
        band.SetRasterColorTable(self._colour_table())
        band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
        self._datasets["labels"].SetMetadataItem("landcover_classes", json.dumps(self.classes))
        for key, value in self.tags.items():
            self._datasets["labels"].SetMetadataItem(key, json.dumps(value))
        if "confidence" in self._datasets:  # tells it from a classified map (rasters.written_as)
            self._datasets["confidence"].GetRasterBand(1).SetDescription(CONFIDENCE_DESCRIPTION)
        self._levels = self._nearest_levels(self._datasets["labels"])
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.abort()
        return False

    def abort(self):
        """Close and remove every temporary file (failure, cancel, full disk)."""
        self._levels = None  # holds a band of the labels' dataset
        self._datasets.clear()  # GDAL closes a dataset when its last reference goes
        for temp in self._temps.values():
            for leftover in (temp, temp + ".aux.xml", temp + ".ovr"):
                if os.path.exists(leftover):
                    os.remove(leftover)

    # -- rows ----------------------------------------------------------------------------------------
    def write_rows(self, labels: np.ndarray, confidence: np.ndarray = None):
        """Append rows (in order, top to bottom); written in whole block rows for compact tiles."""
        self._pending["labels"].append(labels)
        if self.confidence_path:
            self._pending["confidence"].append(confidence)
        self._pending_rows += labels.shape[0]
        if self._pending_rows >= BLOCK or self._written_rows + self._pending_rows >= self.height:
            self._flush_pending()

    def _flush_pending(self):
        for kind, rows in self._pending.items():
            if not rows:
                continue
            block = np.concatenate(rows, axis=0) if len(rows) > 1 else rows[0]
            usable = block.shape[0] if self._written_rows + block.shape[0] >= self.height else \
                (block.shape[0] // BLOCK) * BLOCK
            dataset = self._datasets[kind]
            self._gdal(lambda: dataset.GetRasterBand(1).WriteArray(block[:usable], 0, self._written_rows), kind)
            if kind == "labels" and self._levels:
                self._levels.add(block[:usable], self._written_rows)
            self._gdal(dataset.FlushCache, kind)  # compress finished blocks now, not all at the end
            self._pending[kind] = [block[usable:]] if usable < block.shape[0] else []
        written = usable
        self._written_rows += written
        self._pending_rows -= written

    # -- publishing ----------------------------------------------------------------------------------
    def finish(self) -> dict:
        """Flush, build overviews, close, add category names, rename into place, write the .qml."""
        if self._pending_rows:
            self._flush_pending()
        if self._written_rows != self.height:
            raise RuntimeError(f"wrote {self._written_rows} of {self.height} rows")
        if self._levels:
            self._levels.finish()
            self._levels = None  # holds a band of the labels' dataset, which must close below
        factors = overview_factors(self.width, self.height)
        for kind, dataset in self._datasets.items():
            self._gdal(dataset.FlushCache, kind)
            if factors and kind in OVERVIEW_RESAMPLING:
                self._gdal(lambda: dataset.BuildOverviews(OVERVIEW_RESAMPLING[kind], factors,
                                                          self._overview_callback), kind)
                if getattr(self, "_cancelled", False):
                    raise Cancelled("Cancelled while building overviews; no output was kept.")
            self._gdal(dataset.FlushCache, kind)
        dataset = None  # noqa: F841 - the last reference but the dict's: clearing it closes every file
        self._datasets.clear()
        self._add_category_names(self._temps["labels"])
        if not self.overwrite:
            _claim([target for _kind, target in self._targets])
        outputs = {}
        for kind, target in self._targets:
            for sidecar in STALE_SIDECARS:  # of a file being replaced: GDAL would apply them to the new one
                if os.path.exists(target + sidecar):
                    os.remove(target + sidecar)
            if os.path.exists(self._temps[kind] + ".aux.xml"):
                os.replace(self._temps[kind] + ".aux.xml", target + ".aux.xml")
            os.replace(self._temps[kind], target)
            outputs[kind] = target
        outputs["qml"] = write_paletted_qml(os.path.splitext(self.path)[0] + ".qml", self.classes)
        return outputs

    # -- helpers -------------------------------------------------------------------------------------
    def _create(self, temp: str, target: str):
        """The GeoTIFF ``temp`` that becomes ``target`` once complete; a failure names ``target``, the file the
        analyst asked for, and GDAL's reason (its own line on stderr is kept out of the log)."""
        driver = gdal.GetDriverByName("GTiff")
        gdal.ErrorReset()
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            dataset = driver.Create(temp, self.width, self.height, 1, gdal.GDT_Byte, CREATION_OPTIONS)
        except RuntimeError as exc:  # when someone turned on gdal.UseExceptions()
            dataset, message = None, str(exc)
        else:
            message = gdal.GetLastErrorMsg()
        finally:
            gdal.PopErrorHandler()
        if dataset is None:
            reason = message.rsplit("failed: ", 1)[-1].strip() or "GDAL gave no reason"
            raise BadInputError(f"Cannot write {target}: {reason} (in {os.path.dirname(temp)}). Choose a folder you "
                                f"can write to, with free space.")
        dataset.SetGeoTransform(self._geotransform)
        if self._crs_wkt:
            dataset.SetProjection(self._crs_wkt)
        dataset.GetRasterBand(1).SetNoDataValue(NODATA)
        return dataset

    def _nearest_levels(self, dataset):
        """Empty overview levels in ``dataset`` and the :class:`NearestLevels` that fills them row by row."""
        factors = overview_factors(self.width, self.height)
        if not factors:
            return None
        self._gdal(lambda: dataset.BuildOverviews("NONE", factors), "labels")
        band = dataset.GetRasterBand(1)

        def write(level, rows, first_row):
            overview = band.GetOverview(level)
            self._gdal(lambda: overview.WriteArray(rows, 0, first_row), "labels")
            self._gdal(overview.FlushCache, "labels")  # the dataset's FlushCache leaves overviews' blocks to closing
        return NearestLevels(self.height, self.width, factors, write, block=BLOCK)

    def _colour_table(self):
        return colour_table(self.classes)

    def _add_category_names(self, temp: str):
        dataset = gdal.Open(temp)  # read-only: GDAL keeps the names in the .aux.xml beside the file
        dataset.GetRasterBand(1).SetCategoryNames(category_names(self.classes))
        dataset = None  # noqa: F841 - closing writes the .aux.xml

    def _overview_callback(self, fraction, _message, _data):
        keep_going = self.progress(fraction, "building overviews")
        self._cancelled = not keep_going
        return 1 if keep_going else 0

    def _gdal(self, call, kind):
        """Run a GDAL call and turn any error it reports (full disk above all) into a clear BadInputError."""
        gdal.ErrorReset()
        try:
            result = call()
        except RuntimeError as exc:  # when someone turned on gdal.UseExceptions()
            message = str(exc)
        else:
            if gdal.GetLastErrorType() < gdal.CE_Failure:
                return result
            message = gdal.GetLastErrorMsg()
        if getattr(self, "_cancelled", False):
            raise Cancelled("Cancelled while building overviews; no output was kept.")
        target = dict(self._targets)[kind]
        folder = os.path.dirname(target)
        free_mb = shutil.disk_usage(folder).free / 2**20
        if free_mb < 64 or "space" in message.lower():
            raise BadInputError(f"Not enough disk space at {folder} to write {os.path.basename(target)} "
                                f"({free_mb:.0f} MB free; GDAL said: {message}). Free some space or choose "
                                f"another folder. The partial file was removed.")
        raise BadInputError(f"Writing {target} failed: {message}. The disk at {folder} still has {free_mb:.0f} MB "
                            f"free, so a file-size limit or quota probably stopped it: choose another folder. "
                            f"The partial file was removed.")

    def _check_free_space(self, folder: str):
        # A classified map compresses well, but not below ~1/8 of a byte per pixel with overviews.
        needed = self.width * self.height / 8 + 2**20
        free = shutil.disk_usage(folder).free
        if free < needed:
            raise BadInputError(f"Not enough disk space at {folder}: {free / 2**20:.0f} MB free, about "
                                f"{needed / 2**20:.0f} MB needed for a {self.width}x{self.height} px classified "
                                f"raster. Free some space or choose another folder.")
