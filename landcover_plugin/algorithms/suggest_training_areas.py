"""Suggest training areas: where to digitise next, from the model's uncertainty (engine ``suggest-areas``)."""
from qgis.core import (
    QgsFeatureRequest,
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterDistance,
    QgsProcessingParameterEnum,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QVariant

from ..core.options import choices_of, default_of
from ..core.schema import MAX_CLASS_ID, ClassSchema, spelled_once
from ..core.suggest.options import SuggestOptions
from ..qgis_glue.layers import raster_layer_to_path
from ..qgis_glue.sample_layer import style_suggestions
from ..qgis_glue.training_layer import schema_for_layer
from .base import EngineAlgorithm, number_range

MEASURES = choices_of(SuggestOptions, "measure")
CLASS_VALUES = choices_of(SuggestOptions, "class_values")
CLASS_VALUE_LABELS = {"ids": "Class ids (an integer field)", "names": "Class names (a text field)"}
INTEGER_TYPES = (QVariant.Int, QVariant.LongLong, QVariant.UInt, QVariant.ULongLong)
_POST_PROCESSORS = {}  # kept alive until QGIS has run them


class SuggestTrainingAreasAlgorithm(EngineAlgorithm):
    COMMAND = "suggest-areas"
    UNCERTAINTY = "UNCERTAINTY"
    CLASSIFIED = "CLASSIFIED"
    CONFIDENCE = "CONFIDENCE"
    INPUT = "INPUT"
    MODEL = "MODEL"
    MEASURE = "MEASURE"
    COUNT = "COUNT"
    MIN_DISTANCE = "MIN_DISTANCE"
    SIZE = "SIZE"
    TRAINING_AREAS = "TRAINING_AREAS"
    TRAINING_CLASS_FIELD = "TRAINING_CLASS_FIELD"
    CLASS_VALUES = "CLASS_VALUES"
    OUTPUT = "OUTPUT"
    OUTPUT_LAYER = "OUTPUT_LAYER"
    SUGGESTED = "SUGGESTED"

    def name(self):
        return "suggest_training_areas"

    def displayName(self):
        return self.tr("Suggest training areas")

    def shortHelpString(self):
        return self.tr(
            "Proposes places to digitise next: where the model is least sure, spread over the map, so that "
            "a few more training areas teach it the most (train -> classify -> suggest -> digitise -> retrain).\n\n"
            "Give <b>either</b> the <b>uncertainty raster</b> written by 'Classify raster with model' (with "
            "its classified raster and confidence raster for the hints), <b>or</b> the <b>raster</b> and the "
            "<b>model</b>: it is then classified first.\n\n"
            "<b>Places</b>: how many. <b>Minimum distance</b> between them: a distance you give is kept (one "
            "smaller than a square's diagonal is raised to it: squares never overlap); when "
            "fewer places fit that far apart, as many as fit are suggested and the log warns with the numbers "
            "(give a smaller distance, or ask for fewer places). Empty or 0: automatic, half the spacing of an "
            "even spread over the valid area, never so close that the squares overlap; only this automatic "
            "distance is halved (up to 4 times, never below a square's diagonal) when too few uncertain places "
            "are that far apart, and the log says so. <b>Square size</b> in pixels.\n\n"
            "Output: small squares in the training-areas schema (an empty class field, 'class_id' or your "
            "training layer's, with a drop-down of the classes, and the 'landcover_classes' table) with hints: "
            "the predicted class, its "
            "probability (%), the uncertainty (%) and a rank (1 = most uncertain). Look at the imagery, set the "
            "class (or delete the square), reshape it if you like, then copy the squares into your training "
            "areas layer and retrain.\n\n"
            "<b>Training areas layer</b> the squares will be pasted into, with its <b>class field</b> (optional): "
            "the squares then get a class field of that name and kind, so they paste into it and keep their class "
            "(QGIS pastes by field name). A text field (class names such as 'forest') gives squares whose drop-down "
            "writes the class names, spelled as the layer spells them (a model's 'Forest' is written 'forest'); "
            "an integer field gives class ids. Without a classified raster the drop-down offers the layer's "
            "classes. Without a layer: a field 'class_id' holding the class ids, or the class "
            "names when <b>Class field holds</b> (advanced) says so.\n\n"
            "An existing output file is replaced only when it holds earlier suggestions none of which has a "
            "class yet: squares you labelled are never overwritten (choose a new file name).")

    def initAlgorithm(self, config=None):
        for name, label in ((self.UNCERTAINTY, "Uncertainty raster (from Classify raster with model)"),
                            (self.CLASSIFIED, "Classified raster (hint: predicted class)"),
                            (self.CONFIDENCE, "Confidence raster (hint: probability)"),
                            (self.INPUT, "Or: raster to classify first")):
            self.addParameter(QgsProcessingParameterRasterLayer(name, self.tr(label), optional=True))
        self.addParameter(QgsProcessingParameterFile(self.MODEL, self.tr("Model (ONNX), with the raster"),
                                                     extension="onnx", optional=True))
        measure = QgsProcessingParameterEnum(
            self.MEASURE, self.tr("Uncertainty measure (when classifying first)"), list(MEASURES),
            defaultValue=MEASURES.index(default_of(SuggestOptions, "measure")))
        measure.setFlags(measure.flags() | QgsProcessingParameterDefinition.FlagAdvanced)  # as in Classify
        self.addParameter(measure)
        self.addParameter(QgsProcessingParameterNumber(
            self.COUNT, self.tr("Places"), QgsProcessingParameterNumber.Integer,
            default_of(SuggestOptions, "count"), **number_range(SuggestOptions, "count")))
        self.addParameter(QgsProcessingParameterDistance(
            self.MIN_DISTANCE, self.tr("Minimum distance between places (the raster's CRS units; empty "
                                                          "or 0: automatic)"), None,
            self.UNCERTAINTY, optional=True, **number_range(SuggestOptions, "min_distance")))
        self.addParameter(QgsProcessingParameterNumber(
            self.SIZE, self.tr("Square size (pixels)"), QgsProcessingParameterNumber.Integer,
            default_of(SuggestOptions, "size"), **number_range(SuggestOptions, "size")))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.TRAINING_AREAS, self.tr("Training areas layer the squares will be pasted into"),
            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.TRAINING_CLASS_FIELD, self.tr("Class field of that layer (text: class names; integer: class ids)"),
            parentLayerParameterName=self.TRAINING_AREAS, optional=True))
        class_values = QgsProcessingParameterEnum(
            self.CLASS_VALUES, self.tr("Class field holds (without a training areas layer)"),
            [self.tr(CLASS_VALUE_LABELS[v]) for v in CLASS_VALUES],
            defaultValue=CLASS_VALUES.index(default_of(SuggestOptions, "class_values")))
        class_values.setFlags(class_values.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(class_values)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Suggested training areas"), self.tr("GeoPackage (*.gpkg)")))
        self.addOutput(QgsProcessingOutputVectorLayer(self.OUTPUT_LAYER, self.tr("Suggested training areas layer")))
        self.addOutput(QgsProcessingOutputNumber(self.SUGGESTED, self.tr("Places suggested")))

    def checkParameterValues(self, parameters, context):
        """The training areas layer and its class field, checked before the run (the dialog shows the message)."""
        message = self._paste_target(parameters, context)[2]
        if message:
            return False, message
        return super().checkParameterValues(parameters, context)

    def _paste_target(self, parameters, context) -> tuple:
        """``(layer, field, message)``: the training areas layer the squares will be pasted into and its class
        field (None, None without a layer), or a message saying what is wrong with them."""
        layer = self.parameterAsVectorLayer(parameters, self.TRAINING_AREAS, context)
        name = self.parameterAsString(parameters, self.TRAINING_CLASS_FIELD, context)
        if layer is None:
            if name:
                return None, None, self.tr("The class field '{0}' was given without its training areas layer: "
                                           "choose the layer the squares will be pasted into, or clear the "
                                           "field.").format(name)
            return None, None, ""
        if not name:
            return layer, None, self.tr("Choose the class field of '{0}', the field that holds the class (its "
                                        "name or id).").format(layer.name())
        index = layer.fields().indexOf(name)
        if index < 0:
            return layer, None, self.tr("'{0}' has no field '{1}': choose its class field.").format(layer.name(), name)
        field = layer.fields().at(index)
        if field.type() != QVariant.String and field.type() not in INTEGER_TYPES:
            return layer, None, self.tr(
                "The field '{0}' of '{1}' holds {2} values: the class field must hold the class as text (its "
                "name) or as a whole number (its id). Choose the field that holds the class.").format(
                name, layer.name(), field.typeName())
        return layer, field, ""

    def engine_options(self, parameters, context, feedback) -> SuggestOptions:
        layers = {name: self.parameterAsRasterLayer(parameters, name, context)
                  for name in (self.UNCERTAINTY, self.CLASSIFIED, self.CONFIDENCE, self.INPUT)}
        model = self.parameterAsFile(parameters, self.MODEL, context) or None
        if (layers[self.UNCERTAINTY] is None) == (layers[self.INPUT] is None and model is None):
            raise QgsProcessingException("Give either the uncertainty raster, or the raster and the model to "
                                         "classify first.")
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not output.lower().endswith(".gpkg"):
            output += ".gpkg"
        paths = {name: raster_layer_to_path(layer, context, feedback) if layer is not None else None
                 for name, layer in layers.items()}
        distance = None
        if parameters.get(self.MIN_DISTANCE) not in (None, ""):
            distance = self.parameterAsDouble(parameters, self.MIN_DISTANCE, context) or None
        training, field, message = self._paste_target(parameters, context)
        if message:
            raise QgsProcessingException(message)
        class_field = default_of(SuggestOptions, "class_field")
        class_values = CLASS_VALUES[self.parameterAsEnum(parameters, self.CLASS_VALUES, context)]
        self.training_schema = None  # the drop-down's classes when the classified raster gives none
        self.training_names = []  # a text class field's names: the drop-down spells the model's classes as they do
        if field is not None:
            class_field, class_values = field.name(), "names" if field.type() == QVariant.String else "ids"
            self.training_schema = training_layer_schema(training, field.name(), class_values)
            if class_values == "names" and self.training_schema is not None:
                self.training_names = self.training_schema.names
        return SuggestOptions(
            output=output, uncertainty=paths[self.UNCERTAINTY], classified=paths[self.CLASSIFIED],
            confidence=paths[self.CONFIDENCE], raster=paths[self.INPUT], model=model,
            measure=MEASURES[self.parameterAsEnum(parameters, self.MEASURE, context)],
            count=self.parameterAsInt(parameters, self.COUNT, context), min_distance=distance,
            size=self.parameterAsInt(parameters, self.SIZE, context), class_field=class_field,
            class_values=class_values, replace_unlabelled=True)

    def processing_outputs(self, outputs, context, feedback) -> dict:
        source, name = outputs["OUTPUT"], outputs["LAYER_NAME"]
        schema = getattr(self, "training_schema", None)
        if outputs["CLASSES"]:
            model = ClassSchema.from_list(outputs["CLASSES"])
            schema = model.respelled(getattr(self, "training_names", []))
            respelled = [f"'{a}' as '{b}'" for a, b in zip(model.names, schema.names) if a != b]
            if respelled:
                feedback.pushInfo(f"The class drop-down writes {', '.join(respelled)}, as the training areas layer "
                                  "spells them, so pasted squares join those classes.")
        layer = QgsVectorLayer(source, name, "ogr")
        if not layer.isValid():
            raise QgsProcessingException(f"The suggestions {source} cannot be opened.")
        style_suggestions(layer, schema, outputs["CLASS_FIELD"], save=True)
        del layer
        distance = outputs.get("MIN_DISTANCE_TEXT") or f"{outputs['MIN_DISTANCE']:g}"
        feedback.pushInfo(f"{outputs['COUNT']} places suggested, at least {distance} apart. Set their class, then "
                          "copy them into your training areas and retrain.")
        details = QgsProcessingContext.LayerDetails(name, context.project(), self.OUTPUT_LAYER)
        post_processor = _POST_PROCESSORS[source] = StyleSuggestions(schema, outputs["CLASS_FIELD"])
        details.setPostProcessor(post_processor)
        context.addLayerToLoadOnCompletion(source, details)
        return {self.OUTPUT: source.split("|", 1)[0], self.OUTPUT_LAYER: source, self.SUGGESTED: outputs["COUNT"]}


def training_layer_schema(layer, class_field: str, class_values: str):
    """The classes of the training areas layer the squares will be pasted into: the schema it carries, else (a
    text class field) its class names in sorted order, one spelling each, as export-chips numbers them; None when
    it has none (or more names than classes can be: not a class field)."""
    schema = schema_for_layer(layer, class_field)
    if schema is not None or class_values != "names":
        return schema
    index = layer.fields().indexOf(class_field)
    request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry).setSubsetOfAttributes([index])
    values = (f.attribute(index) for f in layer.getFeatures(request))
    names, _ = spelled_once(v for v in values if isinstance(v, str) and v.strip())  # NULL comes as a QVariant
    return ClassSchema.from_names(names) if 0 < len(names) <= MAX_CLASS_ID else None


class StyleSuggestions(QgsProcessingLayerPostProcessorInterface):
    def __init__(self, schema, class_field):
        super().__init__()
        self.schema, self.class_field = schema, class_field

    def postProcessLayer(self, layer, context, feedback):
        if isinstance(layer, QgsVectorLayer):
            style_suggestions(layer, self.schema, self.class_field)
            layer.triggerRepaint()
