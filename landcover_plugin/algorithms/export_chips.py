"""Export label chips: raster + training polygons (or a classified raster) -> a chip dataset folder."""
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
    QgsRasterBlock,
)
from qgis.PyQt.QtCore import QVariant

from ..core.chips import expect
from ..core.chips.options import ChipExportOptions
from ..core.errors import BadInputError
from ..core.kept_classes import read_class_list
from ..core.options import default_of
from ..qgis_glue.layers import (
    combined_extent,
    raster_file_path,
    raster_layer_to_path,
    renders_colours,
    vector_layer_to_gpkg,
    web_fetch_areas,
)
from ..qgis_glue.output_places import LAST_CHIP_FOLDER, is_temporary, kept_path, remember
from ..qgis_glue.training_layer import schema_for_layer, schema_to_argument
from .base import EngineAlgorithm, number_range


def _default(name):
    return default_of(ChipExportOptions, name)


class ExportChipsAlgorithm(EngineAlgorithm):
    COMMAND = "export-chips"
    INPUT = "INPUT"
    BANDS = "BANDS"
    LABELS = "LABELS"
    SELECTED_ONLY = "SELECTED_ONLY"
    CLASS_FIELD = "CLASS_FIELD"
    LABELS_RASTER = "LABELS_RASTER"
    KEEP_CLASSES = "KEEP_CLASSES"
    CHIP_SIZE = "CHIP_SIZE"
    STRIDE = "STRIDE"
    MIN_LABELLED = "MIN_LABELLED"
    VAL_FRACTION = "VAL_FRACTION"
    SEED = "SEED"
    WEB_RESOLUTION = "WEB_RESOLUTION"
    ADD_TO_DATASET = "ADD_TO_DATASET"
    OUTPUT = "OUTPUT"
    DATASET = "DATASET"
    CHIPS = "CHIPS"
    TRAIN_CHIPS = "TRAIN_CHIPS"
    VAL_CHIPS = "VAL_CHIPS"
    CLASS_PIXELS = "CLASS_PIXELS"
    MISSING_CLASSES = "MISSING_CLASSES"
    RARE_CLASSES = "RARE_CLASSES"

    def name(self):
        return "export_label_chips"

    def displayName(self):
        return self.tr("Export label chips")

    def shortHelpString(self):
        return self.tr(
            "Cuts the raster into square chips and writes, for each chip that is labelled enough, the image "
            "chip (the chosen bands, the raster's data type and nodata, georeferenced) and a label chip (class "
            "ids, 0 = unlabelled), plus dataset.json with the classes, band statistics, pixels per class and a "
            "spatial train/validation split. This folder is the input of 'Train segmentation model'.\n\n"
            "<b>Bands</b>: the raster bands the model will learn from, in the order you put them (drag to "
            "reorder); none chosen means all bands in their order, but an alpha band (the transparency of an "
            "RGBA orthomosaic) masks the pixels instead of being learnt from. The chosen band numbers and names "
            "(band descriptions, or red, green and blue from a photo's colour interpretation) are recorded in "
            "dataset.json and then in the model, and 'Classify raster with model' reads the same bands from a "
            "raster like this one, or the bands of those names. The fourth band of a 4-band 8-bit GeoTIFF is "
            "often tagged alpha by default though it holds an image band (NIR): such a band is read as data, "
            "and the log says how to fix the tag. Bands of different pixel types or nodata values (a virtual raster "
            "stacking imagery and a float NDVI or elevation band) are exported as float32, each band's nodata "
            "value no data.\n\n"
            "<b>Labels</b>: training polygons (any vector layer in any CRS; the class field may hold class "
            "ids or class names; optionally only the selected features), or a classified raster such as an "
            "existing land-cover map (resampled by nearest neighbour onto the raster's grid). Classes come "
            "from the training layer made by 'Create training areas layer', a categorised style, a "
            "classes.json beside the labels, or the values themselves (numeric ids named by a text field "
            "that gives each class one name, such as 'class' beside 'class_id'). Class names are read in any "
            "case: 'Forest' and 'forest' are one class, named as most of its polygons spell it (the log warns).\n\n"
            "<b>Class list to keep</b> (optional): an earlier iteration's model (.onnx), chip dataset (dataset.json) "
            "or classes JSON. Its classes keep their values, names and colours, so this iteration's map can be "
            "compared value by value with the earlier one (without it, class names in a text field are numbered "
            "in sorted order, and a class added since moves the others). Classes of the labels not in it get "
            "values after its highest, in name order; its classes without labels this time stay (never mapped). "
            "A numeric class field holds the values themselves: a list naming them otherwise is refused.\n\n"
            "<b>Stride</b>: pixels between chips, at most the chip size; 0 means the chip size (no overlap). "
            "<b>Minimum labelled share</b>: chips with fewer labelled pixels are skipped, except that every labelled "
            "pixel of the training polygons is kept in some chip (a small polygon may be its class's only sample). "
            "<b>Validation share</b>: with training polygons, about that share of each class's polygons goes to "
            "validation as whole groups of neighbouring polygons (at least one group a class, always leaving one for "
            "training; a class with a single group stays in training, and the log names it; when no class has two, "
            "the split falls back to blocks of chips), and each chip holds the labels of one side only; with a "
            "labels raster, whole blocks of chips go to validation and training chips overlapping them are dropped. "
            "Either way no labelled pixel is in both. Nodata and NaN pixels are unlabelled.\n\n"
            "<b>Web map layers</b> (XYZ, WMS): set the resolution to fetch them at (metres a pixel on the "
            "ground); the area around each group of polygons, a chip wider on each side, is fetched as red, green and "
            "blue (not the land between groups far apart).\n\n"
            "<b>Several rasters</b>: check 'Add to the chip dataset in the output folder' and export each raster "
            "(another scene, date or sensor tile) into the same folder, one run each (or all in one batch run): "
            "one model then learns from all of them, and maps scenes it has not seen better than from one. The "
            "dataset's classes keep their values (a class new in this raster gets the next one); the band "
            "statistics are pooled over every raster; each raster keeps its own CRS and validation polygons. The "
            "rasters must give the same number of bands (choose Bands), of one pixel type and nodata value, and "
            "the same chip size. Adding the same raster with the same labels twice is refused; new polygons of a "
            "layer already added on this raster (selected) are welcome.\n\n"
            "The output folder must be new, empty, or an earlier chip dataset (which is replaced, or added to); a "
            "folder holding other files is refused and left untouched.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("Raster (image)")))
        self.addParameter(QgsProcessingParameterBand(
            self.BANDS, self.tr("Bands to export, in this order (none chosen: all bands, an alpha band as the mask)"),
            parentLayerParameterName=self.INPUT, optional=True, allowMultiple=True))
        self.addParameter(QgsProcessingParameterVectorLayer(
            self.LABELS, self.tr("Labels, choice 1: training polygons"), [QgsProcessing.TypeVectorPolygon],
            optional=True))
        self.addParameter(QgsProcessingParameterBoolean(self.SELECTED_ONLY, self.tr("Selected features only"),
                                                        defaultValue=False))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, self.tr("Class field of the training polygons (choice 1)"),
            parentLayerParameterName=self.LABELS, optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.LABELS_RASTER, self.tr("Labels, choice 2: a classified raster (instead of polygons)"),
            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.KEEP_CLASSES, self.tr("Class list to keep: an earlier model, dataset.json or classes JSON"),
            fileFilter="Models and class lists (*.onnx *.json);;All files (*)", optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.CHIP_SIZE, self.tr("Chip size (pixels)"),
                                                       defaultValue=_default("chip_size"),
                                                       **number_range(ChipExportOptions, "chip_size")))
        self.addParameter(QgsProcessingParameterNumber(
            self.STRIDE, self.tr("Stride (pixels, at most the chip size; 0 = chip size)"), defaultValue=0,
            **number_range(ChipExportOptions, "stride")))
        self.addParameter(QgsProcessingParameterNumber(
            self.MIN_LABELLED, self.tr("Minimum labelled share of a chip (0-1)"),
            QgsProcessingParameterNumber.Double, defaultValue=_default("min_labelled"),
            **number_range(ChipExportOptions, "min_labelled")))
        self.addParameter(QgsProcessingParameterNumber(
            self.VAL_FRACTION, self.tr("Validation share (0-0.9)"), QgsProcessingParameterNumber.Double,
            defaultValue=_default("val_fraction"), **number_range(ChipExportOptions, "val_fraction")))
        seed = QgsProcessingParameterNumber(self.SEED, self.tr("Random seed of the split"),
                                            defaultValue=_default("seed"),
                                            **number_range(ChipExportOptions, "seed"))
        seed.setFlags(seed.flags() | QgsProcessingParameterDefinition.FlagAdvanced)  # as Train's seed
        self.addParameter(seed)
        self.addParameter(QgsProcessingParameterNumber(
            self.WEB_RESOLUTION, self.tr("Web map layer: resolution to fetch it at (metres a pixel, on the ground)"),
            QgsProcessingParameterNumber.Double, optional=True, minValue=0.01, maxValue=10000.0))
        self.addParameter(QgsProcessingParameterBoolean(
            self.ADD_TO_DATASET, self.tr("Add to the chip dataset in the output folder (another raster for the same "
                                         "model) instead of replacing it"), defaultValue=False))
        self.addParameter(QgsProcessingParameterFolderDestination(
            self.OUTPUT, self.tr("Chip dataset folder (temporary: a new folder beside the raster)")))
        self.addOutput(QgsProcessingOutputFile(self.DATASET, self.tr("dataset.json")))
        for key, label in ((self.CHIPS, "Chips"), (self.TRAIN_CHIPS, "Training chips"),
                           (self.VAL_CHIPS, "Validation chips")):
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(label)))
        for key, label in ((self.CLASS_PIXELS, "Labelled pixels per class (JSON)"),
                           (self.MISSING_CLASSES, "Classes without training pixels"),
                           (self.RARE_CLASSES, "Classes with very few training pixels")):
            self.addOutput(QgsProcessingOutputString(key, self.tr(label)))

    def checkParameterValues(self, parameters, context):
        raster = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if raster is not None and renders_colours(raster) and parameters.get(self.WEB_RESOLUTION) in (None, ""):
            return False, self.tr(
                "'{0}' is a web map layer: tiles drawn by a server, over the whole world, at no fixed resolution. "
                "Set 'Web map layer: resolution to fetch it at' to the resolution to train at (the area of the "
                "labels is fetched), or save that area as a GeoTIFF (right-click the layer > Export > Save As..., "
                "'Rendered image') and export chips from it. 'Classify raster with model' then runs the model on "
                "the web layer itself, fetched at the model's resolution.").format(raster.name())
        has_polygons = self.parameterAsVectorLayer(parameters, self.LABELS, context) is not None
        has_raster = self.parameterAsRasterLayer(parameters, self.LABELS_RASTER, context) is not None
        if has_polygons == has_raster:
            return False, self.tr("Give the labels either as training polygons (with their class field) or as "
                                  "a classified raster: one of the two.")
        if has_polygons and not self.parameterAsString(parameters, self.CLASS_FIELD, context):
            return False, self.tr("Choose the class field of the training polygons.")
        keep = self.parameterAsFile(parameters, self.KEEP_CLASSES, context)
        if keep:
            try:
                read_class_list(keep)
            except BadInputError as exc:
                return False, exc.message
        if self.parameterAsBool(parameters, self.ADD_TO_DATASET, context) and is_temporary(
                self.parameterAsString(parameters, self.OUTPUT, context)):
            return False, self.tr("'Add to the chip dataset in the output folder' needs that folder: choose the chip "
                                  "dataset to add this raster's chips to (or a new folder for the first raster).")
        chip_size = self.parameterAsInt(parameters, self.CHIP_SIZE, context)
        stride = self.parameterAsInt(parameters, self.STRIDE, context)
        if stride > chip_size:  # the engine refuses it; say so before the run, with the two numbers
            return False, self.tr("The stride ({0} px) is more than the chip size ({1} px): chips would leave gaps "
                                  "between them. Give a stride of at most {1} px, or 0 for the chip size (no "
                                  "overlap).").format(stride, chip_size)
        return super().checkParameterValues(parameters, context)

    def engine_options(self, parameters, context, feedback) -> ChipExportOptions:
        raster = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if raster is None:
            raise QgsProcessingException("Choose the raster to cut into chips.")
        source = raster_file_path(raster)
        output = kept_path(self.parameterAsString(parameters, self.OUTPUT, context), context, feedback,
                           f"{Path(source).stem if source else 'landcover'}_chips", "",
                           Path(source).parent if source else None, what="chip dataset")
        chip_size = self.parameterAsInt(parameters, self.CHIP_SIZE, context)
        stride = self.parameterAsInt(parameters, self.STRIDE, context) or None
        bands = self.parameterAsInts(parameters, self.BANDS, context) or None
        polygons = self.parameterAsVectorLayer(parameters, self.LABELS, context)
        labels_raster = self.parameterAsRasterLayer(parameters, self.LABELS_RASTER, context)
        selected = self.parameterAsBool(parameters, self.SELECTED_ONLY, context)
        extent = steps = None
        if renders_colours(raster):  # fetched over the labels, at the resolution asked: red, green, blue, alpha
            extent, steps = web_fetch_areas(raster, polygons or labels_raster, self.parameterAsDouble(
                parameters, self.WEB_RESOLUTION, context), chip_size, context, selected and polygons is not None)
            whole = combined_extent(extent)
            expected = expect.expectation(round(whole.width() / steps[0]), round(whole.height() / steps[1]), 4, 1,
                                          chip_size, stride)
        else:
            numbers = bands or list(range(1, raster.bandCount() + 1))
            expected = expect.expectation(raster.width(), raster.height(), len(numbers),
                                          _bytes_per_value(raster.dataProvider(), numbers), chip_size, stride)
        feedback.pushInfo(expect.describe(expected, chip_size))
        options = ChipExportOptions(
            image=raster_layer_to_path(raster, context, feedback, extent=extent, pixel_size=steps),
            output=output, bands=bands,
            chip_size=chip_size, stride=stride,
            min_labelled=self.parameterAsDouble(parameters, self.MIN_LABELLED, context),
            val_fraction=self.parameterAsDouble(parameters, self.VAL_FRACTION, context),
            seed=self.parameterAsInt(parameters, self.SEED, context),
            keep_classes=self.parameterAsFile(parameters, self.KEEP_CLASSES, context) or None,
            add=self.parameterAsBool(parameters, self.ADD_TO_DATASET, context))
        if polygons is not None:
            field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
            schema = schema_for_layer(polygons, field)
            # the text fields travel too: one may name the classes of a numeric class field
            names = [f.name() for f in polygons.fields() if f.type() == QVariant.String and f.name() != field]
            options.labels_vector = vector_layer_to_gpkg(polygons, context, feedback, raster.crs(),
                                                         selected_only=selected, fields=[field] + names)
            options.class_field = field
            options.labels_source = polygons.publicSource()  # dataset.json names the analyst's layer, not the copy
        else:
            schema = schema_for_layer(labels_raster)
            options.labels_raster = raster_layer_to_path(labels_raster, context, feedback)
            options.labels_source = labels_raster.publicSource()
        if schema is not None:
            feedback.pushInfo("Classes of the labels layer: " + ", ".join(f"{c.id}={c.name}" for c in schema))
            options.schema = schema_to_argument(schema)
        return options

    def processing_outputs(self, outputs, context, feedback) -> dict:
        remember(LAST_CHIP_FOLDER, outputs.get("OUTPUT"))  # 'Train segmentation model' opens with it
        return super().processing_outputs(outputs, context, feedback)


def _bytes_per_value(provider, bands) -> int:
    """The bytes a chip holds per pixel and band: the bands' own, or float32's where they differ in pixel type or
    nodata value (the engine reads them so: core.rasters.band_view)."""
    types = {provider.dataType(b) for b in bands}
    nodata = {str(provider.sourceNoDataValue(b)) if provider.sourceHasNoDataValue(b) else None for b in bands}
    size = max(QgsRasterBlock.typeSize(t) for t in types)
    return size if len(types) == 1 and len(nodata) == 1 else max(size, 4)
