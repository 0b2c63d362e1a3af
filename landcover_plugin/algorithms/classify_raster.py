"""Classify raster with model: ONNX model + raster layer -> classified GeoTIFF with its legend (engine ``classify``)."""
import json
import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
    QgsRasterLayer,
    QgsUnitTypes,
)

from ..core.band_choice import choose_bands
from ..core.classify.options import ClassifyOptions
from ..core.errors import BadInputError
from ..core.ground import steps_for_ground_metres
from ..core.model.metadata import model_resolution_of, read_metadata_props
from ..core.options import DEVICES, choices_of, default_of
from ..qgis_glue.layers import (
    engine_bands,
    raster_file_path,
    raster_layer_to_path,
    renders_colours,
    vector_layer_to_gpkg,
)
from ..qgis_glue.output_places import LAST_MODEL, REMEMBERED, remembered
from .base import DEVICE_OPTIONS, EngineAlgorithm, number_range

UNCERTAINTY_MEASURES = choices_of(ClassifyOptions, "uncertainty_measure")
# Post-processors must outlive the algorithm instance until QGIS has loaded the layers.
_POST_PROCESSORS = {}


class ClassifyRasterAlgorithm(EngineAlgorithm):
    COMMAND = "classify"
    INPUT = "INPUT"
    MODEL = "MODEL"
    BANDS = "BANDS"
    EXTENT = "EXTENT"
    MASK = "MASK"
    OVERLAP = "OVERLAP"
    BATCH_SIZE = "BATCH_SIZE"
    DEVICE = "DEVICE"
    CLASS_NAMES = "CLASS_NAMES"
    MEAN = "MEAN"
    STD = "STD"
    RESAMPLE = "RESAMPLE"
    MATCH_TRAINING_RASTER = "MATCH_TRAINING_RASTER"
    WEIGH_CLASS_SHARES = "WEIGH_CLASS_SHARES"
    CONFIDENCE = "CONFIDENCE"
    UNCERTAINTY = "UNCERTAINTY"
    UNCERTAINTY_MEASURE = "UNCERTAINTY_MEASURE"
    DASK_SCHEDULER = "DASK_SCHEDULER"
    OUTPUT = "OUTPUT"

    def name(self):
        return "classify_raster"

    def displayName(self):
        return self.tr("Classify raster with model")

    def shortHelpString(self):
        return self.tr(
            "Classifies a raster with an ONNX segmentation model and writes a classified GeoTIFF (class ids "
            "1..254, 0 = no data) on the raster's grid, with a colour table, class names and a QGIS style, "
            "so the legend shows the classes.\n\n"
            "<b>Model</b>: a model from 'Train segmentation model', a Deepness model, or any ONNX model that "
            "takes one image tensor (N, bands, H, W) and gives class probabilities (N, classes, H, W). For a "
            "model with no metadata, give the <b>class names</b> (comma-separated, one per output channel) and "
            "the per-band <b>mean</b> and <b>standard deviation</b> (comma-separated; pixels are fed as "
            "(value - mean) / std). What the model does not say is assumed and reported in the log.\n\n"
            "<b>Bands</b>: the model takes the bands it was trained on, in that order; the log names them "
            "(e.g. '3 bands, in this order: 1 'band 3' (source band 3), ...'). A model from 'Export label "
            "chips' records them: where the training raster's bands had names (band descriptions) and this "
            "raster names each of them on one band, the bands of those names are read, whatever their numbers; "
            "else a raster like the training raster (or one with more bands) is read through the recorded "
            "bands, and a raster with exactly the model's bands is read as it is. Otherwise choose the raster "
            "bands to feed it, one per model band, in the model's order (the log warns where a band chosen "
            "bears another of the model's band names). A raster with too few bands is refused before the run, "
            "naming the bands expected. A resolution far "
            "from the model's is reported; turn on <b>Resample to the model's resolution</b> to classify on "
            "a grid at the model's resolution instead. Resolutions are compared on the ground, in any CRS: "
            "Web Mercator's stretched units and a raster in degrees (EPSG:4326) are measured at the raster's "
            "centre. Web and virtual layers are first saved to a temporary GeoTIFF, at the model's "
            "resolution; a web map layer (XYZ, WMS) covers the whole world, so give the <b>Extent</b> to "
            "classify. It reaches the model as red, green and blue (and an alpha mask).\n\n"
            "The raster is classified in overlapping tiles whose class probabilities are blended, so no tile "
            "edges show. <b>Overlap</b> is in percent of the tile (empty: the model's recommendation, at least "
            "12.5 %). "
            "A model trained here runs tiles bigger than its chips (up to 512 px, fewer overlapping pixels to "
            "compute) where the trainer measured at export that they give the same class on 99 % of the "
            "pixels; the log says which tile ran. "
            "No-data and NaN pixels, and pixels outside the <b>mask</b> polygons, are no data in the output; "
            "tiles with no valid pixel are not run. <b>Weigh classes by the scene's shares</b>: a model trained "
            "on polygons learned every class about as likely as the next (polygons sample classes about evenly); "
            "its trainer estimated the classes' shares of the scene and the map weighs each class by them "
            "(halfway), so that rare classes stop taking the common ones' pixels (the log lists the shares). On "
            "the Zion sparse-polygon example the map's overall accuracy rose from 0.60 to 0.68-0.69. The log warns "
            "of a class the weighing all but removes from the map. Off: the model's own probabilities. Models "
            "without those shares (trained on a labels raster, or made elsewhere) are not affected. "
            "<b>Device</b>: auto uses CUDA when the engine's onnxruntime has it, else the CPU. "
            "<b>Confidence</b> (optional): the blended probability of the "
            "chosen class, in percent. <b>Uncertainty</b> (optional): how unsure the model is, in percent "
            "(0 = certain, 100 = unsure; 255 = no data), from the blended probabilities: the normalised "
            "<i>entropy</i> over the classes the model maps (not those it had no training pixels of), or the "
            "<i>margin</i> 1 - (top - second); styled from dark "
            "(certain) to yellow (unsure). It shows where to digitise more training areas.\n\n"
            "The map records the model that made it and the trainer's held-out estimate of its accuracy (the "
            "log says it, and when it may not describe this map); 'Assess accuracy' sets it beside what it "
            "measures. Another raster brighter or darker than the training data in every band (another date's "
            "light or haze), or in every band and far in one that varies little (a thermal band), is warned of: a "
            "model trained on one date can map it far worse than its estimate. "
            "<b>Match to the training raster</b>: for another date of the place the model was trained on, each "
            "band is brought to the training raster's values by a gain and offset fitted to the two rasters' pixel "
            "pairs over the ground they share, leaving out pairs whose land cover changed; the log lists them and "
            "the map records them. It needs the training "
            "raster at the path the model records. A gain far from 1 is warned of: land cover that changed over "
            "most of the ground (flood, snow) would be matched away.\n\n"
            "<b>Dask scheduler</b> (optional, advanced): classify on a Dask cluster, <i>local:N</i> (N worker "
            "processes on this machine) or a scheduler address (<i>tcp://host:8786</i>). The raster is split into "
            "shards of whole tile rows, each written to the folder <i>&lt;output&gt;.shards</i>; the output is then "
            "one Cloud-Optimised GeoTIFF with the same pixels as a run without Dask. The raster, the model and the "
            "output folder must be on storage every worker reaches at the same paths. A rerun resumes: shards "
            "already done are kept. Not with confidence or uncertainty rasters.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster to classify")))
        model = QgsProcessingParameterFile(self.MODEL, self.tr("Model (ONNX)"), extension="onnx",
                                           defaultValue=remembered(LAST_MODEL))
        model.setMetadata({REMEMBERED: "the last model written by 'Train segmentation model'"})
        self.addParameter(model)
        self.addParameter(QgsProcessingParameterBand(
            self.BANDS, self.tr("Bands to feed the model, in its order (none chosen: the model's recorded bands, "
                                "else all)"), parentLayerParameterName=self.INPUT, optional=True, allowMultiple=True))
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, self.tr("Extent (default: the whole raster)"),
                                                       optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.MASK, self.tr("Classify only inside these polygons"), [QgsProcessing.TypeVectorPolygon],
            optional=True))
        self.addParameter(QgsProcessingParameterNumber(
            self.OVERLAP, self.tr("Tile overlap (% of the tile; empty: the model's)"),
            QgsProcessingParameterNumber.Double, optional=True, **number_range(ClassifyOptions, "overlap")))
        self.addParameter(QgsProcessingParameterNumber(
            self.BATCH_SIZE, self.tr("Tiles per batch"), QgsProcessingParameterNumber.Integer,
            default_of(ClassifyOptions, "batch_size"), **number_range(ClassifyOptions, "batch_size")))
        self.addParameter(QgsProcessingParameterEnum(
            self.DEVICE, self.tr("Device"), DEVICE_OPTIONS,
            defaultValue=DEVICES.index(default_of(ClassifyOptions, "device"))))
        self.addParameter(QgsProcessingParameterBoolean(
            self.RESAMPLE, self.tr("Resample to the model's resolution"),
            defaultValue=default_of(ClassifyOptions, "resample")))
        self.addParameter(QgsProcessingParameterBoolean(
            self.MATCH_TRAINING_RASTER,
            self.tr("Match to the training raster (another date of the same place: its brightness and haze)"),
            defaultValue=default_of(ClassifyOptions, "match_training_raster")))
        self.addParameter(QgsProcessingParameterBoolean(
            self.WEIGH_CLASS_SHARES, self.tr("Weigh classes by the scene's shares (models trained on polygons)"),
            defaultValue=default_of(ClassifyOptions, "class_shares") == "model"))
        for name, label in ((self.CLASS_NAMES, "Class names, comma-separated (models without metadata)"),
                            (self.MEAN, "Per-band mean, comma-separated (models without metadata)"),
                            (self.STD, "Per-band standard deviation, comma-separated (models without metadata)")):
            parameter = QgsProcessingParameterString(name, self.tr(label), optional=True)
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Classified raster")))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.CONFIDENCE, self.tr("Confidence (%)"), optional=True, createByDefault=False))
        measure = QgsProcessingParameterEnum(
            self.UNCERTAINTY_MEASURE, self.tr("Uncertainty measure"), list(UNCERTAINTY_MEASURES),
            defaultValue=UNCERTAINTY_MEASURES.index(default_of(ClassifyOptions, "uncertainty_measure")))
        measure.setFlags(measure.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(measure)
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.UNCERTAINTY, self.tr("Uncertainty (%)"), optional=True, createByDefault=False))
        dask = QgsProcessingParameterString(self.DASK_SCHEDULER, self.tr("Dask scheduler (local:N or tcp://host:8786)"),
                                             optional=True)
        dask.setFlags(dask.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(dask)

    def checkParameterValues(self, parameters, context):
        """Bands the raster cannot give the model are refused before the run, naming the bands expected."""
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        model = self.parameterAsFile(parameters, self.MODEL, context)
        if layer is not None and renders_colours(layer) and parameters.get(self.EXTENT) in (None, ""):
            return False, self.tr("'{0}' is a web map layer, which covers the whole world: set Extent to the area to "
                                  "classify (from the map canvas, a layer, or drawn on the map).").format(layer.name())
        card_bands = card_bands_of(model) if layer is not None and model else None
        if card_bands:
            count, names, alpha = engine_bands(layer)  # a web layer reaches the engine as red, green, blue, alpha
            try:
                choose_bands(count, card_bands, self.parameterAsInts(parameters, self.BANDS, context), names, alpha)
            except BadInputError as exc:
                return False, f"'{layer.name()}': {exc.message}"
        extra = [self.parameterDefinition(name).description() for name in (self.CONFIDENCE, self.UNCERTAINTY)
                 if parameters.get(name) not in (None, "")
                 and self.parameterAsOutputLayer(parameters, name, context)]
        if self.parameterAsString(parameters, self.DASK_SCHEDULER, context).strip() and extra:
            return False, self.tr("{0} cannot be written on Dask yet: skip {1}, or leave the Dask scheduler "
                                  "empty.").format(" and ".join(extra), "them" if len(extra) > 1 else "it")
        return super().checkParameterValues(parameters, context)

    def engine_options(self, parameters, context, feedback) -> ClassifyOptions:
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.tr("Choose the raster to classify."))
        model = self.parameterAsFile(parameters, self.MODEL, context)
        if not model:
            raise QgsProcessingException(self.tr("Choose the ONNX model file."))
        extent = None
        if parameters.get(self.EXTENT) not in (None, ""):
            extent = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
        pixel_size = None
        units = layer.crs().mapUnits()
        if raster_file_path(layer) is None and units in (QgsUnitTypes.DistanceMeters, QgsUnitTypes.DistanceDegrees):
            metres = model_resolution_of(model)  # fetch a web or virtual layer at the model's resolution
            if metres:  # on the ground: an XYZ layer's Web Mercator units are stretched away from the equator,
                # and a layer in degrees has none
                centre = (extent if extent is not None and not extent.isEmpty() else layer.extent()).center()
                pixel_size = steps_for_ground_metres(layer.crs().toWkt(), centre.x(), centre.y(), metres)
                if pixel_size != (metres, metres):
                    shown = (f"{pixel_size[0]:.1f}" if units == QgsUnitTypes.DistanceMeters else
                             " x ".join(f"{v:.3g}" for v in pixel_size))
                    feedback.pushInfo(f"Fetching '{layer.name()}' at {shown} {layer.crs().authid()} units per "
                                      f"pixel: the model's {metres:.3g} m on the ground at the extent's centre.")
        if renders_colours(layer) and pixel_size is None:
            raise QgsProcessingException(self.tr(
                "The model does not say its resolution, so the web map layer '{0}' cannot be fetched at it. Save the "
                "area as a GeoTIFF at the resolution the model was trained at (right-click the layer > Export > "
                "Save As..., 'Rendered image') and classify that file.").format(layer.name()))
        options = ClassifyOptions(
            raster=raster_layer_to_path(layer, context, feedback, extent=extent, pixel_size=pixel_size),
            model=model, output=self.parameterAsOutputLayer(parameters, self.OUTPUT, context),
            overwrite=True,  # Processing's convention: the chosen file is replaced
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            resample=self.parameterAsBoolean(parameters, self.RESAMPLE, context),
            match_training_raster=self.parameterAsBoolean(parameters, self.MATCH_TRAINING_RASTER, context),
            class_shares="model" if self.parameterAsBoolean(parameters, self.WEIGH_CLASS_SHARES, context) else "off",
            bands=self.parameterAsInts(parameters, self.BANDS, context) or None)
        if extent is not None and not extent.isEmpty():
            options.extent = [extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()]
        mask = self.parameterAsVectorLayer(parameters, self.MASK, context)
        if mask is not None:
            options.mask = vector_layer_to_gpkg(mask, context, feedback, layer.crs())
        if parameters.get(self.OVERLAP) not in (None, ""):
            options.overlap = self.parameterAsDouble(parameters, self.OVERLAP, context)
        for name, field in ((self.CLASS_NAMES, "class_names"), (self.MEAN, "mean"), (self.STD, "std")):
            setattr(options, field, self.parameterAsString(parameters, name, context).strip() or None)
        if parameters.get(self.CONFIDENCE) not in (None, ""):
            options.confidence = self.parameterAsOutputLayer(parameters, self.CONFIDENCE, context) or None
        dask = self.parameterAsString(parameters, self.DASK_SCHEDULER, context).strip()
        if dask:  # the output the user chose is a GeoTIFF: one COG assembled from the shards
            options.dask, options.cog = dask, True
        if parameters.get(self.UNCERTAINTY) not in (None, ""):
            options.uncertainty = self.parameterAsOutputLayer(parameters, self.UNCERTAINTY, context) or None
            options.uncertainty_measure = UNCERTAINTY_MEASURES[
                self.parameterAsEnum(parameters, self.UNCERTAINTY_MEASURE, context)]
        return options

    def processing_outputs(self, outputs, context, feedback) -> dict:
        # the engine's log already gave the size, time and speed: only what it did not say
        feedback.pushInfo("Classes: " + ", ".join(f"{c['id']}={c['name']}" for c in outputs["CLASSES"]))
        if outputs.get("BLANK"):  # a map of no data is a result the user must not miss
            feedback.reportError(outputs["BLANK"], fatalError=False)
        if context.willLoadLayerOnCompletion(outputs["OUTPUT"]):
            post_processor = _POST_PROCESSORS[outputs["OUTPUT"]] = ApplyClassStyle(outputs["QML"])
            context.layerToLoadOnCompletionDetails(outputs["OUTPUT"]).setPostProcessor(post_processor)
        if outputs.get("UNCERTAINTY") and context.willLoadLayerOnCompletion(outputs["UNCERTAINTY"]):
            qml = os.path.splitext(outputs["UNCERTAINTY"])[0] + ".qml"
            post_processor = _POST_PROCESSORS[outputs["UNCERTAINTY"]] = ApplyClassStyle(qml)
            context.layerToLoadOnCompletionDetails(outputs["UNCERTAINTY"]).setPostProcessor(post_processor)
        return super().processing_outputs(outputs, context, feedback)


def card_bands_of(model_path):
    """The ``bands`` entry of our card in a model (count, names, maybe the source bands), or None for a model
    without our card."""
    try:
        card = json.loads(read_metadata_props(model_path).get("landcover_card") or "null")
    except (OSError, ValueError):
        return None
    bands = (card or {}).get("bands") or {}
    return bands if bands.get("count") or bands.get("names") else None


class ApplyClassStyle(QgsProcessingLayerPostProcessorInterface):
    """Gives the loaded classified raster its paletted style, so the legend lists the class names."""

    def __init__(self, qml_path: str):
        super().__init__()
        self.qml_path = qml_path

    def postProcessLayer(self, layer, context, feedback):
        if isinstance(layer, QgsRasterLayer):
            message, ok = layer.loadNamedStyle(self.qml_path)
            if not ok:
                feedback.reportError(f"Could not apply the class style {self.qml_path}: {message}")
            layer.triggerRepaint()
