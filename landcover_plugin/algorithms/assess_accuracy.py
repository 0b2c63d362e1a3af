"""Assess accuracy: a classified raster against reference polygons or a reference raster (engine ``assess``)."""
import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
)

from ..core.assess.options import AssessOptions
from ..qgis_glue.layers import raster_layer_to_path, vector_layer_to_gpkg
from .base import EngineAlgorithm


class AssessAccuracyAlgorithm(EngineAlgorithm):
    COMMAND = "assess"
    CLASSIFIED = "CLASSIFIED"
    REFERENCE_VECTOR = "REFERENCE_VECTOR"
    CLASS_FIELD = "CLASS_FIELD"
    REFERENCE_RASTER = "REFERENCE_RASTER"
    CLASSES = "CLASSES"
    OUTPUT_HTML = "OUTPUT_HTML"
    OUTPUT_TABLE = "OUTPUT_TABLE"
    OUTPUT_JSON = "OUTPUT_JSON"
    OUTPUT_CONFUSION = "OUTPUT_CONFUSION"
    OA = "OA"
    KAPPA = "KAPPA"
    MIOU = "MIOU"
    OA_ESTIMATE = "OA_ESTIMATE"
    OA_CI95 = "OA_CI95"

    def name(self):
        return "assess_accuracy"

    def displayName(self):
        return self.tr("Assess accuracy")

    def shortHelpString(self):
        return self.tr(
            "Compares a classified raster with reference data and reports how accurate the map is.\n\n"
            "<b>Classified raster</b>: class ids 1..254, 0 = no data (the output of 'Classify raster with "
            "model', or any integer class map). Class names and colours are read from the raster's categories "
            "and colour table.\n\n"
            "<b>Reference</b>: give <i>either</i> reference polygons with their <b>class field</b> (class names, "
            "any case, or class ids; any CRS: they are reprojected to the raster's CRS) <i>or</i> a reference "
            "raster of class ids (any grid and CRS; resampled by nearest neighbour onto the classified grid). "
            "The reference should be independent of the training polygons, or the scores will be too "
            "optimistic.\n\n"
            "<b>Sample points</b> (e.g. from 'Create reference sample', labelled): each point counts once, in "
            "the pixel it falls in, and the report adds the <b>error-adjusted area</b> of every class with its "
            "95 % confidence interval (hectares and pixels) beside the mapped area, the user's, producer's and "
            "overall accuracy with 95 % confidence intervals, and the error matrix in area proportions "
            "(Olofsson et al. 2014; strata = the map's classes, weighted by their mapped area). This holds "
            "for a probability sample: stratified random by map class or simple random. Points left "
            "unlabelled are skipped. Polygons and rasters are no probability sample: no area estimate "
            "from them.\n\n"
            "<b>Class list</b> (optional JSON file, [{\"id\": 1, \"name\": \"water\", \"colour\": \"#1f78b4\"}, "
            "...]): needed only when the classified raster has no class names and the reference uses names.\n\n"
            "Outputs: an <b>HTML report</b> (opened in the Results Viewer) with overall accuracy, Cohen's kappa, "
            "mean IoU, the confusion matrix (counts, row and column shares, heat map) and per-class precision "
            "(user's accuracy), recall (producer's accuracy), F1 and IoU with a bar chart, pixel counts and "
            "mapped area (hectares) per class; a <b>CSV table</b> per class, the confusion matrix as CSV and "
            "all numbers as JSON beside the table. Rows of the confusion matrix are reference classes, "
            "columns classified classes.\n\n"
            "Reference pixels outside the classified raster, on its no-data, or where overlapping polygons "
            "of different classes meet are left out and counted in the report. Large rasters are read window "
            "by window.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.CLASSIFIED, self.tr("Classified raster")))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.REFERENCE_VECTOR, self.tr("Reference polygons (or sample points)"),
            [QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVectorPoint], optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, self.tr("Class field of the reference polygons (names or ids)"),
            parentLayerParameterName=self.REFERENCE_VECTOR, optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE_RASTER, self.tr("Reference raster (instead of polygons)"), optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.CLASSES, self.tr("Class list (JSON; only when the classified raster has no class names)"),
            extension="json", optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr("Accuracy report"), self.tr("HTML files (*.html)")))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_TABLE, self.tr("Per-class accuracy table"), self.tr("CSV files (*.csv)")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_JSON, self.tr("All results (JSON)")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_CONFUSION, self.tr("Confusion matrix (CSV)")))
        self.addOutput(QgsProcessingOutputNumber(self.OA, self.tr("Overall accuracy")))
        self.addOutput(QgsProcessingOutputNumber(self.KAPPA, self.tr("Cohen's kappa")))
        self.addOutput(QgsProcessingOutputNumber(self.MIOU, self.tr("Mean IoU")))
        self.addOutput(QgsProcessingOutputNumber(
            self.OA_ESTIMATE, self.tr("Estimated overall accuracy (sample points only)")))
        self.addOutput(QgsProcessingOutputNumber(
            self.OA_CI95, self.tr("95 % confidence interval of the estimated overall accuracy (±)")))

    def engine_options(self, parameters, context, feedback) -> AssessOptions:
        classified = self.parameterAsRasterLayer(parameters, self.CLASSIFIED, context)
        if classified is None:
            raise QgsProcessingException(self.tr("Choose the classified raster."))
        vector = self.parameterAsVectorLayer(parameters, self.REFERENCE_VECTOR, context)
        raster = self.parameterAsRasterLayer(parameters, self.REFERENCE_RASTER, context)
        if (vector is None) == (raster is None):
            raise QgsProcessingException(self.tr(
                "Give exactly one reference: reference polygons (with their class field) or a reference raster."))
        table = self.parameterAsFileOutput(parameters, self.OUTPUT_TABLE, context)
        options = AssessOptions(
            classified=raster_layer_to_path(classified, context, feedback),
            html=self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context), table=table,
            json=os.path.splitext(table)[0] + ".json",
            classes=self.parameterAsFile(parameters, self.CLASSES, context) or None)
        if vector is not None:
            field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
            if not field:
                raise QgsProcessingException(
                    f"Choose the class field of '{vector.name()}' (the field holding class names or ids); "
                    f"its fields are: {', '.join(vector.fields().names())}.")
            # a sample's map_class (its stratum) travels too: the engine checks it against the map assessed
            keep = [field] + [f for f in ("map_class",) if f != field and f in vector.fields().names()]
            options.reference_vector = vector_layer_to_gpkg(vector, context, feedback, classified.crs(), fields=keep)
            options.class_field = field
        else:
            options.reference_raster = raster_layer_to_path(raster, context, feedback)
        return options

    def processing_outputs(self, outputs, context, feedback) -> dict:
        feedback.pushInfo(
            f"Overall accuracy {_pct(outputs['OA'])}, kappa {_num(outputs['KAPPA'])}, mean IoU "
            f"{_pct(outputs['MIOU'])} over {outputs['PIXELS_ASSESSED']:,} reference pixels. "
            f"Report: {outputs['OUTPUT_HTML']}")
        if outputs.get("OA_ESTIMATE") is not None:
            feedback.pushInfo(f"Estimated overall accuracy from the sample: {_pct(outputs['OA_ESTIMATE'])} ± "
                              f"{100.0 * outputs['OA_CI95']:.1f} (95 % confidence interval).")
        return super().processing_outputs(outputs, context, feedback)


def _pct(value) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f} %"


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"
