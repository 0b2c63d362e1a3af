"""Create training areas layer: a polygon GeoPackage ready to digitise, styled by class."""
import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputString,
    QgsProcessingParameterCrs,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterMatrix,
    QgsProcessingParameterString,
    QgsVectorLayer,
)

from ..core.errors import BadInputError, write_failure
from ..core.schema import ClassSchema
from ..qgis_glue.output_places import kept_path
from ..qgis_glue.training_layer import create_training_gpkg, save_default_style, schema_for_layer, style_training_layer
from .base import LandcoverAlgorithm

# Column names a GeoPackage layer keeps for itself: a class field of that name is silently dropped.
RESERVED_FIELDS = {"fid": "feature id column", "geom": "geometry column", "geometry": "geometry column",
                   "ogc_fid": "feature id column"}
DEFAULT_CLASSES = ["water", "forest", "grassland", "cropland", "built-up", "bare soil"]
_POST_PROCESSORS = {}  # Python must keep post-processors alive until QGIS has run them


class CreateTrainingLayerAlgorithm(LandcoverAlgorithm):
    CRS = "CRS"
    CLASSES = "CLASSES"
    CLASSES_FROM_LAYER = "CLASSES_FROM_LAYER"
    CLASS_FIELD = "CLASS_FIELD"
    LAYER_NAME = "LAYER_NAME"
    OUTPUT = "OUTPUT"
    CLASS_SCHEMA = "CLASS_SCHEMA"

    def name(self):
        return "create_training_layer"

    def displayName(self):
        return self.tr("Create training areas layer")

    def shortHelpString(self):
        return self.tr(
            "Creates a polygon GeoPackage layer for digitising training areas and adds it to the project, "
            "ready to edit: the class field's form widget is a drop-down of the class names, and the style "
            "shows every class in its colour with its name in the legend.\n\n"
            "<b>Classes</b>: a table of id (1..254), name and colour (#rrggbb; leave empty for a sensible "
            "default colour). Or take the classes from an existing layer: a classified raster (its paletted "
            "style, or a classes.json beside it) or a vector layer with a categorised style; that layer "
            "wins over the table.\n\n"
            "The classes are stored with the layer (a 'landcover_classes' table and the default style in the "
            "GeoPackage), so 'Export label chips' and the later steps know the names and colours. An existing "
            "file is never overwritten: choose a new file name.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Training areas GeoPackage (temporary: a new file beside the saved project, else "
                                 "in your home folder)"),
            self.tr("GeoPackage (*.gpkg)")))
        self.addParameter(QgsProcessingParameterCrs(self.CRS, self.tr("Coordinate reference system"),
                                                    defaultValue="ProjectCrs"))
        default = []
        for index, name in enumerate(DEFAULT_CLASSES):
            default += [index + 1, name, ""]
        self.addParameter(QgsProcessingParameterMatrix(
            self.CLASSES, self.tr("Classes (id, name, colour)"), numberRows=len(DEFAULT_CLASSES),
            hasFixedNumberRows=False, headers=["id", "name", "colour"], defaultValue=default, optional=True))
        self.addParameter(QgsProcessingParameterMapLayer(
            self.CLASSES_FROM_LAYER, self.tr("Take the classes from this layer instead (classified raster or "
                                             "categorised vector)"),
            optional=True, types=[QgsProcessing.TypeRaster, QgsProcessing.TypeVector]))
        self.addParameter(QgsProcessingParameterString(self.CLASS_FIELD, self.tr("Class field name"),
                                                       defaultValue="class_id"))
        self.addParameter(QgsProcessingParameterString(self.LAYER_NAME, self.tr("Layer name"),
                                                       defaultValue="training_areas"))
        self.addOutput(QgsProcessingOutputString(self.CLASS_SCHEMA, self.tr("Classes (JSON)")))

    def processAlgorithm(self, parameters, context, feedback):
        path = kept_path(self.parameterAsFileOutput(parameters, self.OUTPUT, context), context, feedback,
                         "training_areas", ".gpkg", what="training areas GeoPackage (your digitising)")
        if not path.lower().endswith(".gpkg"):
            path += ".gpkg"
        path = os.path.abspath(path)  # the layer's source and the result: valid from any folder
        if os.path.exists(path):
            raise QgsProcessingException(f"{path} already exists. Choose a new file name: the algorithm never "
                                         f"overwrites a GeoPackage that may hold digitised training areas.")
        crs = self.parameterAsCrs(parameters, self.CRS, context)
        if not crs.isValid():
            raise QgsProcessingException("Choose a valid coordinate reference system for the training areas "
                                         "(usually the CRS of the image you will classify).")
        class_field = self.parameterAsString(parameters, self.CLASS_FIELD, context).strip() or "class_id"
        if class_field.lower() in RESERVED_FIELDS:
            raise QgsProcessingException(f"'{class_field}' cannot be the class field: the GeoPackage uses that name "
                                         f"for its own {RESERVED_FIELDS[class_field.lower()]}. Choose another name, "
                                         f"e.g. class_id.")
        layer_name = self.parameterAsString(parameters, self.LAYER_NAME, context).strip() or "training_areas"
        schema = self._schema(parameters, context, feedback)
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)  # as the other steps do with their output folders
        except OSError as exc:
            raise QgsProcessingException(f"Cannot create the folder {folder} ({write_failure(exc, folder)}). Choose a "
                                         f"folder you can write to.") from exc

        try:
            source = create_training_gpkg(path, layer_name, class_field, crs, schema, context.transformContext())
            layer = QgsVectorLayer(source, layer_name, "ogr")
            if not layer.isValid():
                raise QgsProcessingException(f"The new GeoPackage {path} cannot be opened again.")
            style_training_layer(layer, schema, class_field)
            save_default_style(layer)
            del layer
        except Exception:
            if os.path.exists(path):  # ours, just made: leave no half-made layer behind
                os.remove(path)
            raise
        feedback.pushInfo(f"Created {path} (layer '{layer_name}', {crs.authid() or crs.description()}) with "
                          f"classes: " + ", ".join(f"{c.id}={c.name} {c.colour}" for c in schema))

        details = QgsProcessingContext.LayerDetails(layer_name, context.project(), self.OUTPUT)
        post_processor = _POST_PROCESSORS[source] = StyleTrainingLayer(schema, class_field)
        details.setPostProcessor(post_processor)
        context.addLayerToLoadOnCompletion(source, details)
        feedback.setProgress(100)
        return {self.OUTPUT: source, self.CLASS_SCHEMA: schema.to_json()}

    def _schema(self, parameters, context, feedback) -> ClassSchema:
        layer = self.parameterAsLayer(parameters, self.CLASSES_FROM_LAYER, context)
        try:
            if layer is not None:
                schema = schema_for_layer(layer)
                if schema is None:
                    raise QgsProcessingException(
                        f"'{layer.name()}' carries no classes: give a classified raster with a paletted style "
                        f"(or a classes.json beside it) or a vector layer with a categorised style, or fill "
                        f"the class table instead.")
                feedback.pushInfo(f"Classes taken from '{layer.name()}'.")
                return schema
            cells = self.parameterAsMatrix(parameters, self.CLASSES, context)
            if not cells:
                raise QgsProcessingException("Give at least one class in the class table (id, name, colour).")
            return ClassSchema.from_table(cells)
        except BadInputError as exc:
            raise QgsProcessingException(exc.message) from exc


class StyleTrainingLayer(QgsProcessingLayerPostProcessorInterface):
    """Applied to the layer when it is added to the project (the default style is loaded already;
    this makes sure, whatever the loader did)."""

    def __init__(self, schema, class_field):
        super().__init__()
        self.schema = schema
        self.class_field = class_field

    def postProcessLayer(self, layer, context, feedback):
        if isinstance(layer, QgsVectorLayer):
            style_training_layer(layer, self.schema, self.class_field)
            layer.triggerRepaint()
