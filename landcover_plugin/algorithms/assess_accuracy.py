"""Assess accuracy: a classified raster against reference polygons or a reference raster (engine ``assess``)."""
import os
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterMatrix,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
)

from ..core.assess.options import AssessOptions
from ..core.errors import BadInputError
from ..core.schema import ClassSchema
from ..qgis_glue.layers import class_field_candidates, raster_layer_to_path, vector_layer_to_gpkg
from ..qgis_glue.output_places import project_folder, unique_path, writable_folder
from ..qgis_glue.training_layer import schema_for_layer, schema_to_argument
from .base import EngineAlgorithm


class AssessAccuracyAlgorithm(EngineAlgorithm):
    COMMAND = "assess"
    CLASSIFIED = "CLASSIFIED"
    REFERENCE_VECTOR = "REFERENCE_VECTOR"
    CLASS_FIELD = "CLASS_FIELD"
    REFERENCE_RASTER = "REFERENCE_RASTER"
    CLASSES = "CLASSES"
    CLASSES_TABLE = "CLASSES_TABLE"
    CLASSES_FROM_LAYER = "CLASSES_FROM_LAYER"
    OUTPUT_HTML = "OUTPUT_HTML"
    OUTPUT_TABLE = "OUTPUT_TABLE"
    OUTPUT_JSON = "OUTPUT_JSON"
    OUTPUT_CONFUSION = "OUTPUT_CONFUSION"
    OA = "OA"
    KAPPA = "KAPPA"
    MIOU = "MIOU"
    OA_ESTIMATE = "OA_ESTIMATE"
    OA_CI95 = "OA_CI95"
    TRAINER_OA = "TRAINER_OA"
    TRAINING_PIXEL_SHARE = "TRAINING_PIXEL_SHARE"

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
            "(Olofsson et al. 2014; strata = the map's classes, weighted by their mapped area). The headline "
            "overall accuracy, kappa and the per-class precision, recall, F1 and IoU are then these "
            "area-weighted estimates (a stratified sample over-represents small classes, so its raw counts "
            "are no measure of the map); the confusion matrix shows the raw sample counts. This holds "
            "for a probability sample: stratified random by map class or simple random. Points left "
            "unlabelled are skipped. Polygons and rasters are no probability sample: no area estimate "
            "from them.\n\n"
            "A map made by 'Classify raster with model' carries the trainer's held-out estimate of its accuracy: "
            "the report and the log set it beside this assessment's figure (with a sample: whether it lies within "
            "the 95 % interval); where its model's chip dataset is still there, reference polygons or a raster "
            "over the pixels the model was trained on are counted, and above 1 % the report warns and gives the "
            "accuracy on them and elsewhere apart.\n\n"
            "<b>Class list</b>: needed only when the classified raster has no class names and the reference uses "
            "names. Fill the <b>class table</b> (id, name, colour), or take the classes from a <b>layer</b> (the "
            "training areas layer, a styled classified raster), or give a JSON file ([{\"id\": 1, \"name\": "
            "\"water\", \"colour\": \"#1f78b4\"}, ...]): one of the three.\n\n"
            "Outputs: an <b>HTML report</b> (opened in the Results Viewer) with overall accuracy, Cohen's kappa, "
            "mean IoU, the confusion matrix (counts, row and column shares, heat map) and per-class precision "
            "(user's accuracy), recall (producer's accuracy), F1 and IoU with a bar chart, pixel counts and "
            "mapped area (hectares) per class; a <b>CSV table</b> per class, the confusion matrix as CSV and "
            "all numbers as JSON beside the table. Rows of the confusion matrix are reference classes, "
            "columns classified classes. Both are always written: one left out goes beside the other (named "
            "after it), and with neither named (headless) both go beside the classified raster.\n\n"
            "Reference pixels outside the classified raster, on its no-data, or where overlapping polygons "
            "of different classes meet are left out and counted in the report. Large rasters are read window "
            "by window.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.CLASSIFIED, self.tr("Classified raster")))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.REFERENCE_VECTOR, self.tr("Reference, choice 1: polygons (or sample points)"),
            [QgsProcessing.TypeVectorPolygon, QgsProcessing.TypeVectorPoint], optional=True))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, self.tr("Class field of the reference polygons or points (choice 1; names or ids; "
                                      "reference_class for a sample)"),
            parentLayerParameterName=self.REFERENCE_VECTOR, optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.REFERENCE_RASTER, self.tr("Reference, choice 2: a reference raster (instead of polygons)"),
            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.CLASSES, self.tr("Class list (JSON; only when the classified raster has no class names)"),
            extension="json", optional=True))
        self.addParameter(QgsProcessingParameterMatrix(
            self.CLASSES_TABLE, self.tr("Class list as a table (id, name, colour; instead of the JSON file)"),
            numberRows=0, hasFixedNumberRows=False, headers=["id", "name", "colour"], optional=True))
        self.addParameter(QgsProcessingParameterMapLayer(
            self.CLASSES_FROM_LAYER, self.tr("Class list from a layer (training areas or styled classified "
                                             "raster; instead of the JSON file)"), optional=True))
        # Both are written whatever is asked (the dialog's default is a temporary file); optional so that a
        # headless run may name one, or none: see _output_paths.
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr("Accuracy report"), self.tr("HTML files (*.html)"), optional=True,
            createByDefault=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_TABLE, self.tr("Per-class accuracy table"), self.tr("CSV files (*.csv)"), optional=True,
            createByDefault=True))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_JSON, self.tr("All results (JSON)")))
        self.addOutput(QgsProcessingOutputFile(self.OUTPUT_CONFUSION, self.tr("Confusion matrix (CSV)")))
        self.addOutput(QgsProcessingOutputNumber(
            self.OA, self.tr("Overall accuracy (area-weighted for sample points)")))
        self.addOutput(QgsProcessingOutputNumber(
            self.KAPPA, self.tr("Cohen's kappa (area-weighted for sample points)")))
        self.addOutput(QgsProcessingOutputNumber(self.MIOU, self.tr("Mean IoU (area-weighted for sample points)")))
        self.addOutput(QgsProcessingOutputNumber(
            self.OA_ESTIMATE, self.tr("Estimated overall accuracy (sample points only)")))
        self.addOutput(QgsProcessingOutputNumber(
            self.OA_CI95, self.tr("95 % confidence interval of the estimated overall accuracy (±)")))
        self.addOutput(QgsProcessingOutputNumber(
            self.TRAINER_OA, self.tr("The trainer's held-out estimate of the map's overall accuracy (maps that "
                                     "record their model)")))
        self.addOutput(QgsProcessingOutputNumber(
            self.TRAINING_PIXEL_SHARE, self.tr("Share of the reference pixels the map's model was trained on "
                                               "(polygons or raster; while its chip dataset is there)")))

    def checkParameterValues(self, parameters, context):
        """The either/or choices, checked before the run starts (the dialog shows the message)."""
        vector = self.parameterAsVectorLayer(parameters, self.REFERENCE_VECTOR, context)
        raster = self.parameterAsRasterLayer(parameters, self.REFERENCE_RASTER, context)
        if (vector is None) == (raster is None):
            return False, self.tr("Give the reference either as polygons or points (choice 1, with their class "
                                  "field) or as a reference raster (choice 2): one of the two.")
        if vector is not None and not self.parameterAsString(parameters, self.CLASS_FIELD, context):
            return False, self.tr("Choose the class field of the reference polygons or points (choice 1; for a "
                                  "reference sample, reference_class).")
        given = [name for name in (self.CLASSES, self.CLASSES_TABLE, self.CLASSES_FROM_LAYER)
                 if not _empty(parameters.get(name))]
        if len(given) > 1:
            return False, self.tr("Give the class list one way only: the class table, a layer, or a JSON file.")
        return super().checkParameterValues(parameters, context)

    def _classes(self, parameters, context):
        """The class list argument: the JSON file, the table or a layer's classes; None when none is given."""
        layer = self.parameterAsLayer(parameters, self.CLASSES_FROM_LAYER, context)
        if layer is not None:
            schema = schema_for_layer(layer)
            if schema is None:
                raise QgsProcessingException(
                    f"'{layer.name()}' carries no classes: choose the training areas layer, a classified raster "
                    f"with a paletted style, or fill the class table instead.")
            return schema_to_argument(schema)
        cells = [] if _empty(parameters.get(self.CLASSES_TABLE)) else \
            self.parameterAsMatrix(parameters, self.CLASSES_TABLE, context)
        if cells:
            try:
                return schema_to_argument(ClassSchema.from_table(cells))
            except BadInputError as exc:
                raise QgsProcessingException(exc.message) from exc
        return self.parameterAsFile(parameters, self.CLASSES, context) or None

    def engine_options(self, parameters, context, feedback) -> AssessOptions:
        classified = self.parameterAsRasterLayer(parameters, self.CLASSIFIED, context)
        if classified is None:
            raise QgsProcessingException(self.tr("Choose the classified raster."))
        vector = self.parameterAsVectorLayer(parameters, self.REFERENCE_VECTOR, context)
        raster = self.parameterAsRasterLayer(parameters, self.REFERENCE_RASTER, context)
        if (vector is None) == (raster is None):
            raise QgsProcessingException(self.tr(
                "Give exactly one reference: reference polygons (with their class field) or a reference raster."))
        html, table = self._output_paths(parameters, context, feedback, classified)
        options = AssessOptions(
            classified=raster_layer_to_path(classified, context, feedback),
            html=html, table=table,
            json=os.path.splitext(table)[0] + ".json",
            classes=self._classes(parameters, context))
        if vector is not None:
            field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
            if not field:
                raise QgsProcessingException(
                    f"Choose the class field of '{vector.name()}' (the field holding class names or ids); "
                    f"its fields are: {', '.join(class_field_candidates(vector)) or '(none)'}.")
            # a sample's map_class (its stratum) travels too: the engine checks it against the map assessed
            keep = [field] + [f for f in ("map_class",) if f != field and f in vector.fields().names()]
            options.reference_vector = vector_layer_to_gpkg(vector, context, feedback, classified.crs(), fields=keep)
            options.class_field = field
        else:
            options.reference_raster = raster_layer_to_path(raster, context, feedback)
        options.reference_source = (vector or raster).publicSource()  # the report names the analyst's layer
        return options

    def _output_paths(self, parameters, context, feedback, classified) -> tuple:
        """(report, table): as given; one not given goes beside the other, named after it. With neither given (a
        headless run may name none) both go beside the classified raster (else the project, else home), under
        new names: qgis_process deletes its temporary files when it ends."""
        html, table = (self.parameterAsFileOutput(parameters, name, context)
                       if not _empty(parameters.get(name)) else "" for name in (self.OUTPUT_HTML, self.OUTPUT_TABLE))
        if html or table:
            return (html or os.path.splitext(table)[0] + "_report.html",
                    table or os.path.splitext(html)[0] + "_table.csv")
        source = classified.source().split("|")[0]
        folder = writable_folder(os.path.dirname(source) if os.path.isfile(source) else None, project_folder(context))
        html = unique_path(folder, f"{Path(source).stem if os.path.isfile(source) else 'map'}_accuracy", ".html")
        feedback.pushInfo(f"No report or table was named: the report is written to {html}, the table beside it.")
        return html, os.path.splitext(html)[0] + "_table.csv"

    def processing_outputs(self, outputs, context, feedback) -> dict:
        # the engine's log already gave the scores and the table: only where the report is
        feedback.pushInfo(f"Report: {outputs['OUTPUT_HTML']}")
        if outputs.get("OA_ESTIMATE") is not None:
            feedback.pushInfo(f"Estimated overall accuracy from the sample: {_pct(outputs['OA_ESTIMATE'])} ± "
                              f"{100.0 * outputs['OA_CI95']:.1f} (95 % confidence interval).")
        return super().processing_outputs(outputs, context, feedback)


def _empty(value) -> bool:
    """No value given: None, QGIS's NULL, an empty text or an empty table."""
    if value is None or (hasattr(value, "isNull") and value.isNull()):
        return True
    if isinstance(value, (list, tuple)):
        return all(_empty(v) or str(v).strip() in ("", "NULL") for v in value)
    return str(value).strip() == ""


def _pct(value) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f} %"
