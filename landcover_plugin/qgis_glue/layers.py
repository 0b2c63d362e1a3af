"""Turn QGIS map layers into files the engine can read.

A file-based GDAL raster is passed by path (the engine reads it window by window). Any other raster
(WMS/XYZ, virtual, in-memory, a sub-dataset with options) is first written to a temporary GeoTIFF.
Vector layers are always written to a temporary GeoPackage in the target CRS, so the engine gets one
format and one CRS whatever the source (shapefile, PostGIS, memory, a selection).
"""
import hashlib
import os

from osgeo import gdal
from qgis.core import (
    Qgis,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeatureRequest,
    QgsProcessingException,
    QgsProcessingUtils,
    QgsRasterBlockFeedback,
    QgsRasterFileWriter,
    QgsRasterPipe,
    QgsRectangle,
    QgsVectorFileWriter,
)

from ..core.band_choice import COLOUR_NAMES
from ..core.fetch_areas import fetch_boxes, pixels
from ..core.ground import steps_for_ground_metres


def raster_file_path(layer):
    """The local file behind a GDAL raster layer, or None when there is none."""
    if layer.providerType() != "gdal":
        return None
    path = layer.source().split("|")[0]
    return path if os.path.isfile(path) else None


def renders_colours(layer) -> bool:
    """Whether a raster layer's provider gives rendered colours, not band values: web map services (XYZ, WMS,
    WMTS). Such a layer covers the whole world at no fixed resolution, and a GeoTIFF made of it has four bands:
    red, green, blue and alpha."""
    return layer.dataProvider().dataType(1) in (Qgis.ARGB32, Qgis.ARGB32_Premultiplied)


WEB_FETCH_LIMIT = 400e6  # pixels of a web map layer fetched for chips: 20000 x 20000, 1.6 GB of RGBA


def web_fetch_areas(layer, labels, metres: float, margin: int, context, selected_only: bool = False) -> tuple:
    """``(areas, (x step, y step))``: the extents (QgsRectangle, in a web map layer's CRS) to fetch it in around
    ``labels`` (a vector layer, or its selected features: around each group of polygons, see
    :func:`..core.fetch_areas.fetch_boxes`; a raster: its extent) at ``metres`` a pixel on the ground, ``margin``
    pixels wider on each side (a chip around a polygon at the edge); a QgsProcessingException when that is more
    than :data:`WEB_FETCH_LIMIT` pixels."""
    transform = QgsCoordinateTransform(labels.crs(), layer.crs(), context.transformContext())
    try:
        boxes = [transform.transformBoundingBox(box) for box in _label_boxes(labels, selected_only)]
    except QgsCsException as exc:
        raise QgsProcessingException(f"The labels '{labels.name()}' cannot be placed on the web map layer "
                                     f"'{layer.name()}' ({exc}): check the labels' CRS.") from exc
    if not boxes:
        raise QgsProcessingException(f"The labels '{labels.name()}' hold no feature with a geometry: nothing to "
                                     f"fetch the web map layer '{layer.name()}' around.")
    centre = combined_extent(boxes).center()
    steps = steps_for_ground_metres(layer.crs().toWkt(), centre.x(), centre.y(), metres)
    areas = fetch_boxes([(b.xMinimum(), b.yMinimum(), b.xMaximum(), b.yMaximum()) for b in boxes], *steps, margin)
    needed = pixels(areas, *steps)
    if needed > WEB_FETCH_LIMIT:
        raise QgsProcessingException(
            f"The labels of '{labels.name()}' need {needed:,} pixels of {metres:g} m around them: too "
            f"much to fetch from the web map layer '{layer.name()}' at once. Choose a coarser resolution, or export "
            f"the chips area by area (Selected features only) with 'Add to the chip dataset in the output folder'.")
    return [QgsRectangle(*area) for area in areas], steps


def combined_extent(rectangles) -> QgsRectangle:
    """The extent holding all of ``rectangles`` (one or more QgsRectangle)."""
    whole = QgsRectangle(rectangles[0])
    for rectangle in rectangles[1:]:
        whole.combineExtentWith(rectangle)
    return whole


def _label_boxes(labels, selected_only: bool) -> list:
    """The boxes of a vector layer's features (or its selected ones), in its CRS; a raster layer's extent."""
    if not hasattr(labels, "getFeatures"):
        return [labels.extent()]
    request = QgsFeatureRequest().setNoAttributes()
    features = labels.getSelectedFeatures(request) if selected_only else labels.getFeatures(request)
    return [feature.geometry().boundingBox() for feature in features if feature.hasGeometry()]


def engine_bands(layer) -> tuple:
    """``(band count, band names or None, alpha band or None)`` of the raster the engine will read for ``layer``
    (:func:`raster_layer_to_path`): a web layer's red, green, blue and alpha, or the file's own bands."""
    if renders_colours(layer):
        return 4, ["red", "green", "blue", ""], 4
    return layer.bandCount(), raster_band_names(layer), None


def raster_band_names(layer):
    """The band names of a file-based GDAL raster layer (descriptions, else red/green/blue from the colour
    interpretation; '' where a band has neither), to match a model's band names
    (:func:`..core.band_choice.bands_by_name`); None for any other layer or an unreadable file."""
    dataset = _gdal_open(raster_file_path(layer))
    if dataset is None:
        return None
    names = []
    for number in range(1, dataset.RasterCount + 1):  # as core.band_kinds.band_names reads them
        band = dataset.GetRasterBand(number)
        colour = gdal.GetColorInterpretationName(band.GetColorInterpretation()).lower()
        names.append(band.GetDescription().strip() or (colour if colour in COLOUR_NAMES else ""))
    return names


def raster_layer_to_path(layer, context, feedback, extent: QgsRectangle = None, pixel_size=None) -> str:
    """A path the engine can open for ``layer``; non-file layers are written to a temporary GeoTIFF.

    ``extent`` (in the layer's CRS; or several, fetched each and mosaicked in a virtual raster: they must lie on one
    grid of ``pixel_size``, as :func:`web_fetch_areas` gives them) and ``pixel_size`` (map units; one number, or x
    and y) bound what is fetched from a web or virtual layer; a file-based layer is passed whole and the engine
    windows it itself.
    """
    if layer is None or not layer.isValid():
        raise QgsProcessingException("The raster layer is not valid: check that its source still exists.")
    if not has_crs(layer):
        raise QgsProcessingException(f"The raster layer '{layer.name()}' has no coordinate reference system. "
                                     f"Set it in the layer's properties (Source > Assigned CRS).")
    path = raster_file_path(layer)
    if path is not None:
        return _in_layer_crs(layer, path, feedback)
    areas = extent if isinstance(extent, (list, tuple)) else [extent]
    areas = [area for area in areas if area is not None and not area.isEmpty()]
    if renders_colours(layer) and (not areas or not pixel_size):
        raise QgsProcessingException(
            f"'{layer.name()}' is a web map layer: tiles drawn by a server, over the whole world, at no fixed "
            f"resolution. 'Classify raster with model' runs a model on it over an Extent; for this step, save the "
            f"area as a GeoTIFF first (right-click the layer > Export > Save As..., 'Rendered image', with the "
            f"extent and resolution wanted) and use that file.")
    areas = areas or [layer.extent()]
    xsize, ysize = pixel_size if isinstance(pixel_size, tuple) else (pixel_size, pixel_size)
    if xsize is None or xsize <= 0 or ysize <= 0:
        if layer.dataProvider().capabilities() & layer.dataProvider().Size and layer.width() > 0:
            xsize, ysize = layer.rasterUnitsPerPixelX(), layer.rasterUnitsPerPixelY()
        else:
            raise QgsProcessingException(
                f"The layer '{layer.name()}' has no native resolution (a web or virtual layer): "
                f"give a pixel size (or use a model that records its resolution).")
    if len(areas) == 1:
        return _written(layer, areas[0], xsize, ysize, context, feedback)
    feedback.pushInfo(f"Fetching '{layer.name()}' in {len(areas)} areas around the labels (not the land between "
                      f"them), mosaicked into one virtual raster.")
    parts = [_written(layer, area, xsize, ysize, context, feedback, f"area {number} of {len(areas)}: ")
             for number, area in enumerate(areas, start=1)]
    target = QgsProcessingUtils.generateTempFilename(f"{_safe(layer.name())}.vrt")
    gdal.BuildVRT(target, parts).FlushCache()
    return target


def _written(layer, extent, xsize: float, ysize: float, context, feedback, what: str = "") -> str:
    """``layer`` over ``extent`` at pixels of ``xsize`` by ``ysize`` written to a temporary GeoTIFF: its path."""
    width = max(1, int(round(extent.width() / xsize)))
    height = max(1, int(round(extent.height() / ysize)))
    target = QgsProcessingUtils.generateTempFilename(f"{_safe(layer.name())}.tif")
    feedback.pushInfo(f"{what}Writing '{layer.name()}' ({layer.providerType()}) to a temporary GeoTIFF "
                      f"of {width} x {height} pixels: {target}")
    pipe = QgsRasterPipe()
    if not pipe.set(layer.dataProvider().clone()):
        raise QgsProcessingException(f"Cannot read the raster layer '{layer.name()}'.")
    writer = QgsRasterFileWriter(target)
    writer.setOutputFormat("GTiff")
    writer.setCreateOptions(["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"])
    block_feedback = QgsRasterBlockFeedback()  # writeRaster takes this kind; relay progress and cancel
    block_feedback.progressChanged.connect(feedback.setProgress)
    feedback.canceled.connect(block_feedback.cancel)
    error = writer.writeRaster(pipe, width, height, extent, layer.crs(), context.transformContext(),
                               block_feedback)
    if feedback.isCanceled():
        raise QgsProcessingException("Cancelled while fetching the layer.")
    if error != QgsRasterFileWriter.NoError:
        raise QgsProcessingException(f"Could not write '{layer.name()}' to a temporary GeoTIFF "
                                     f"(QgsRasterFileWriter error {int(error)}).")
    return target


FID_COLUMN = "fid"  # the feature id column of the GeoPackage vector_layer_to_gpkg writes


def vector_layer_to_gpkg(layer, context, feedback, target_crs, selected_only: bool = False, fields=None) -> str:
    """Write ``layer``'s features (optionally the selected ones, optionally only ``fields``) to a
    temporary GeoPackage in ``target_crs``; returns its path."""
    if layer is None or not layer.isValid():
        raise QgsProcessingException("The vector layer is not valid: check that its source still exists.")
    if not has_crs(layer):
        raise QgsProcessingException(f"The vector layer '{layer.name()}' has no coordinate reference system, so its "
                                     f"features cannot be placed on the raster. Set it in the layer's properties "
                                     f"(Source > Assigned Coordinate Reference System; the raster's, if it was "
                                     f"digitised on it), then run again.")
    if selected_only and layer.selectedFeatureCount() == 0:
        raise QgsProcessingException(f"'Selected features only' is on but no feature of '{layer.name()}' is "
                                     f"selected. Select the training polygons or turn the option off.")
    transform = QgsCoordinateTransform(layer.crs(), target_crs, context.transformContext())
    _check_transform(layer, transform, target_crs)
    target = QgsProcessingUtils.generateTempFilename(f"{_safe(layer.name())}.gpkg")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "labels"
    options.fileEncoding = "UTF-8"
    options.ct = transform
    options.onlySelectedFeatures = selected_only
    options.feedback = feedback
    if fields:
        # A field named like the GeoPackage's feature id column becomes the copy's feature ids, not an attribute
        # the engine can read: a GeoPackage's own 'fid' numbers the features, it holds no class.
        usable = ", ".join(class_field_candidates(layer)) or "(none)"
        ids = [f for f in fields if f.lower() == FID_COLUMN]
        if ids:
            raise QgsProcessingException(f"'{ids[0]}' is the feature id of '{layer.name()}' (one number per "
                                         f"feature), not a class: choose the field that holds the class. Its "
                                         f"fields are: {usable}.")
        missing = [f for f in fields if layer.fields().indexOf(f) < 0]
        if missing:
            raise QgsProcessingException(f"The layer '{layer.name()}' has no field "
                                         f"{', '.join(repr(f) for f in missing)}. Its fields are: {usable}.")
        options.attributes = [layer.fields().indexOf(f) for f in fields]
    result = QgsVectorFileWriter.writeAsVectorFormatV3(layer, target, context.transformContext(), options)
    error, message = result[0], result[1]
    if error != QgsVectorFileWriter.NoError:
        raise QgsProcessingException(f"Could not copy '{layer.name()}' into the raster's CRS "
                                     f"({target_crs.authid() or target_crs.description()}): {message}")
    return target


def class_field_candidates(layer) -> list:
    """The fields of ``layer`` that can hold a class: all but a GeoPackage's feature id column."""
    return [name for name in layer.fields().names() if name.lower() != FID_COLUMN]


def _in_layer_crs(layer, path: str, feedback) -> str:
    """``path``, or a virtual raster over it in the layer's CRS where QGIS places the layer in another CRS than the
    file's: where the file has none (QGIS takes the project's, or the one chosen under Source > Assigned CRS), or
    where the analyst assigned one over the file's (a file whose CRS is wrong: digitised polygons lie where the layer
    shows it). The engine reads files: it saw no CRS, or the wrong one, and its chips, models and maps with it."""
    dataset = _gdal_open(path)
    if dataset is None or dataset.GetGeoTransform(can_return_null=True) is None:
        return path  # the engine says what is wrong with it, or that it is not on a grid
    crs = layer.crs().authid() or layer.crs().description()
    if dataset.GetSpatialRef() is None:
        said = f"The file of '{layer.name()}' has no CRS; QGIS places the layer in {crs}, so the engine reads it in " \
               f"that CRS"
    elif has_crs(layer) and layer.crs() != layer.dataProvider().crs():
        own = layer.dataProvider().crs()
        said = f"'{layer.name()}' is assigned {crs} in QGIS (Source > Assigned CRS), its file says " \
               f"{own.authid() or own.description()}: the engine reads it in {crs}, where QGIS shows it and its " \
               f"labels were drawn. If the file was right, set the layer back to it"
    else:
        return path
    # one name per file and CRS: later steps see the raster they trained on as the same file (a session's)
    digest = hashlib.sha1(f"{os.path.abspath(path)}|{layer.crs().toWkt()}".encode()).hexdigest()[:12]
    target = os.path.join(QgsProcessingUtils.tempFolder(), f"{_safe(layer.name())}_{digest}.vrt")
    gdal.Translate(target, dataset, format="VRT", outputSRS=layer.crs().toWkt()).FlushCache()
    feedback.pushInfo(f"{said} (through {target}).")
    return target


def _gdal_open(path):
    """QGIS's GDAL's dataset of ``path``, or None for no path or a file GDAL cannot open (the engine says why)."""
    try:
        return gdal.Open(path) if path else None
    except RuntimeError:
        return None


def has_crs(layer) -> bool:
    """False for a layer without a CRS, also a GeoPackage's written without one: QGIS reads those as a valid
    "Undefined geographic SRS" (srs_id 0) or "Undefined Cartesian SRS" (srs_id -1)."""
    return layer.crs().isValid() and not layer.crs().description().startswith("Undefined ")


def _check_transform(layer, transform, target_crs) -> None:
    """Fail early, with both CRSs named, when the layer cannot be brought into the target CRS."""
    if layer.crs() == target_crs:
        return
    request = QgsFeatureRequest().setLimit(1).setNoAttributes()
    for feature in layer.getFeatures(request):
        if not feature.hasGeometry():
            continue
        try:
            geometry = feature.geometry()
            geometry.transform(transform)
        except QgsCsException as exc:
            raise QgsProcessingException(
                f"The features of '{layer.name()}' ({layer.crs().authid()}) cannot be transformed to the "
                f"raster's CRS ({target_crs.authid() or target_crs.description()}): {exc}. Check both layers' "
                f"CRS in their properties.") from exc
        if geometry.isEmpty() or not geometry.boundingBox().isFinite():
            raise QgsProcessingException(
                f"The features of '{layer.name()}' ({layer.crs().authid()}) do not transform to valid "
                f"coordinates in the raster's CRS ({target_crs.authid() or target_crs.description()}). "
                f"Check both layers' CRS in their properties.")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "layer"
