"""Create reference sample: stratified random points from a classified raster, ready to label (engine
``create-sample``)."""
from qgis.core import (
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterDistance,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsVectorLayer,
)

from ..core.options import choices_of, default_of
from ..core.sample.options import SampleOptions
from ..core.schema import ClassSchema
from ..qgis_glue.layers import raster_layer_to_path
from ..qgis_glue.sample_layer import save_sample_style, style_sample_layer
from .base import EngineAlgorithm, number_range

ALLOCATIONS = choices_of(SampleOptions, "allocation")
ALLOCATION_LABELS = {"recommended": "Recommended: a minimum per class, the rest by area",
                     "proportional": "Proportional to mapped area", "equal": "Equal per class"}
_POST_PROCESSORS = {}  # kept alive until QGIS has run them


class CreateReferenceSampleAlgorithm(EngineAlgorithm):
    COMMAND = "create-sample"
    INPUT = "INPUT"
    SIZE = "SIZE"
    TARGET_SE = "TARGET_SE"
    USERS_ACCURACY = "USERS_ACCURACY"
    ALLOCATION = "ALLOCATION"
    MIN_PER_CLASS = "MIN_PER_CLASS"
    MIN_DISTANCE = "MIN_DISTANCE"
    SEED = "SEED"
    CLASSES = "CLASSES"
    OUTPUT = "OUTPUT"
    OUTPUT_LAYER = "OUTPUT_LAYER"
    SAMPLE_SIZE = "SAMPLE_SIZE"
    SEED_USED = "SEED_USED"

    def name(self):
        return "create_reference_sample"

    def displayName(self):
        return self.tr("Create reference sample")

    def shortHelpString(self):
        return self.tr(
            "Draws a stratified random sample of points from a classified raster (strata = the map's "
            "classes), for an honest accuracy assessment and error-adjusted areas with confidence intervals "
            "(Olofsson et al. 2014, 'Good practices for estimating area and assessing accuracy of land "
            "change').\n\n"
            "<b>Sample size</b>: give it directly, or leave it empty and give the <b>target standard error of "
            "overall accuracy</b> (default 0.01) with the <b>anticipated user's accuracies</b> (one value for "
            "all classes, or one per mapped class in class-id order; default 0.8): the size then follows "
            "from Cochran's formula (eq. 13 of the paper).\n\n"
            "<b>Allocation</b>: <i>recommended</i> gives every class at least the <b>minimum per class</b> "
            "(e.g. 50) so rare classes get user's accuracies with useful confidence intervals, and shares "
            "the rest by mapped area; <i>proportional</i> by mapped area; <i>equal</i> the same number per "
            "class. A <b>minimum distance</b> keeps points apart and is never lowered: a class's pixels are "
            "tried until its points are placed or none is far enough from the others (or a time bound), so some "
            "classes may get fewer points, and the log says which, how many of how many, what stopped it, and "
            "the fix (a smaller distance). "
            "The <b>seed</b> makes the sample repeatable (empty: a new one, reported).\n\n"
            "Output: a point GeoPackage, each point at a pixel centre, with <b>map_class</b> (hidden from "
            "the form, so labelling stays blind) and an empty <b>reference_class</b> to fill from imagery "
            "or field visits through a drop-down of the class names. Unlabelled points show as hollow "
            "circles. The design (pixels, weight, points allocated and drawn per class, seed) is stored in "
            "the GeoPackage (table 'landcover_sample_design' and the layer's metadata). Label the points, "
            "then run 'Assess accuracy' with this layer and the field reference_class. An existing file "
            "is never overwritten: choose a new file name.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Classified raster")))
        self.addParameter(QgsProcessingParameterNumber(
            self.SIZE, self.tr("Sample size (points; empty: from the target standard error)"),
            QgsProcessingParameterNumber.Integer, optional=True, **number_range(SampleOptions, "size")))
        self.addParameter(QgsProcessingParameterNumber(
            self.TARGET_SE, self.tr("Target standard error of overall accuracy (when no size is given)"),
            QgsProcessingParameterNumber.Double, defaultValue=0.01, optional=True,
            **number_range(SampleOptions, "target_se")))
        self.addParameter(QgsProcessingParameterString(
            self.USERS_ACCURACY, self.tr("Anticipated user's accuracies (one, or one per class; default 0.8)"),
            optional=True))
        self.addParameter(QgsProcessingParameterEnum(
            self.ALLOCATION, self.tr("Allocation to classes"), [ALLOCATION_LABELS[a] for a in ALLOCATIONS],
            defaultValue=ALLOCATIONS.index(default_of(SampleOptions, "allocation"))))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_PER_CLASS, self.tr("Minimum points per class (recommended allocation)"),
            QgsProcessingParameterNumber.Integer, default_of(SampleOptions, "min_per_class"),
            **number_range(SampleOptions, "min_per_class")))
        self.addParameter(QgsProcessingParameterDistance(
            self.MIN_DISTANCE, self.tr("Minimum distance between points (0 = none)"), 0.0, self.INPUT,
            **number_range(SampleOptions, "min_distance")))
        self.addParameter(QgsProcessingParameterNumber(
            self.SEED, self.tr("Random seed (empty: a new one)"), QgsProcessingParameterNumber.Integer,
            optional=True, **number_range(SampleOptions, "seed")))
        self.addParameter(QgsProcessingParameterFile(
            self.CLASSES, self.tr("Class list (JSON; only when the classified raster has no class names)"),
            extension="json", optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Reference sample"), self.tr("GeoPackage (*.gpkg)")))
        self.addOutput(QgsProcessingOutputVectorLayer(self.OUTPUT_LAYER, self.tr("Reference sample layer")))
        self.addOutput(QgsProcessingOutputNumber(self.SAMPLE_SIZE, self.tr("Points drawn")))
        self.addOutput(QgsProcessingOutputNumber(self.SEED_USED, self.tr("Random seed used")))

    def engine_options(self, parameters, context, feedback) -> SampleOptions:
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(self.tr("Choose the classified raster."))
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not output.lower().endswith(".gpkg"):
            output += ".gpkg"
        given = lambda name: parameters.get(name) not in (None, "")  # noqa: E731
        size = self.parameterAsInt(parameters, self.SIZE, context) if given(self.SIZE) else None
        # Without a size the target standard error applies, its default (0.01) when none is given.
        target = None if size is not None else self.parameterAsDouble(parameters, self.TARGET_SE, context)
        return SampleOptions(
            classified=raster_layer_to_path(layer, context, feedback), output=output, size=size,
            target_se=None if size is not None else target,
            users_accuracy=self.parameterAsString(parameters, self.USERS_ACCURACY, context).strip() or None,
            allocation=ALLOCATIONS[self.parameterAsEnum(parameters, self.ALLOCATION, context)],
            min_per_class=self.parameterAsInt(parameters, self.MIN_PER_CLASS, context),
            min_distance=self.parameterAsDouble(parameters, self.MIN_DISTANCE, context),
            seed=self.parameterAsInt(parameters, self.SEED, context) if given(self.SEED) else None,
            classes=self.parameterAsFile(parameters, self.CLASSES, context) or None)

    def processing_outputs(self, outputs, context, feedback) -> dict:
        source, name = outputs["OUTPUT"], outputs["LAYER_NAME"]
        schema = ClassSchema.from_list(outputs["CLASSES"])
        layer = QgsVectorLayer(source, name, "ogr")
        if not layer.isValid():
            raise QgsProcessingException(f"The sample {source} cannot be opened.")
        style_sample_layer(layer, schema)
        save_sample_style(layer)
        del layer
        feedback.pushInfo(f"{outputs['SAMPLE_SIZE']} points (seed {outputs['SEED']}): " + ", ".join(
            f"{s['name']} {s['drawn']}" for s in outputs["DESIGN"]["strata"])
            + ". Label them in the field 'reference_class', then run 'Assess accuracy'.")
        details = QgsProcessingContext.LayerDetails(name, context.project(), self.OUTPUT_LAYER)
        post_processor = _POST_PROCESSORS[source] = StyleSampleLayer(schema)
        details.setPostProcessor(post_processor)
        context.addLayerToLoadOnCompletion(source, details)
        return {self.OUTPUT: source.split("|", 1)[0], self.OUTPUT_LAYER: source,
                self.SAMPLE_SIZE: outputs["SAMPLE_SIZE"], self.SEED_USED: outputs["SEED"]}


class StyleSampleLayer(QgsProcessingLayerPostProcessorInterface):
    """Applied when the layer is added to the project (its default style is loaded already)."""

    def __init__(self, schema):
        super().__init__()
        self.schema = schema

    def postProcessLayer(self, layer, context, feedback):
        if isinstance(layer, QgsVectorLayer):
            style_sample_layer(layer, self.schema)
            layer.triggerRepaint()
