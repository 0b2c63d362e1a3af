"""Train segmentation model: chip dataset folder -> a self-describing ONNX model, in the engine subprocess."""
from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputBoolean,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ..core.chips.dataset import dataset_folder
from ..core.errors import BadInputError
from ..core.options import DEVICES, default_of
from ..core.train import preflight
from ..core.train.options import TrainConfig
from ..core.train.report import check_report_path, write_training_report
from ..core.train.start_weights import check_start_weights
from ..qgis_glue.output_places import (
    LAST_CHIP_FOLDER,
    LAST_MODEL,
    REMEMBERED,
    is_temporary,
    kept_path,
    remember,
    remembered,
)
from .base import DEVICE_OPTIONS, EngineAlgorithm, number_range

# The architectures offered in the dialog (TrainConfig's choices, without optional extras), with their labels.
# New entries go at the end: saved models and batch runs refer to these by index.
ARCHITECTURES = [("unet", "U-Net"), ("deeplabv3plus", "DeepLabV3+ (dilated convolutions)"),
                 ("pixel_context", "Per-pixel, probabilities averaged over 5x5 px (for a few small polygons)"),
                 ("auto", "Automatic (per-pixel for sparse polygons, U-Net for dense labels)"),
                 ("unet_resnet18", "U-Net, ResNet-18 encoder (for pretrained encoder weights)"),
                 ("unet_resnet34", "U-Net, ResNet-34 encoder (for pretrained encoder weights)"),
                 ("unet_resnet50", "U-Net, ResNet-50 encoder (for pretrained encoder weights)"),
                 ("deeplabv3plus_resnet18", "DeepLabV3+, ResNet-18 encoder (for pretrained encoder weights)"),
                 ("deeplabv3plus_resnet34", "DeepLabV3+, ResNet-34 encoder (for pretrained encoder weights)"),
                 ("deeplabv3plus_resnet50", "DeepLabV3+, ResNet-50 encoder (for pretrained encoder weights)")]


T = TrainConfig  # the options whose ranges the dialog takes
# The engine trains at any rate (a diverging run stops and names the fix); the dialog keeps AdamW's sensible range.
LEARNING_RATE_MAX = 1.0


def _default(name):
    return default_of(TrainConfig, name)


class TrainModelAlgorithm(EngineAlgorithm):
    COMMAND = "train"
    DATASET = "DATASET"
    ARCHITECTURE = "ARCHITECTURE"
    EPOCHS = "EPOCHS"
    BATCH_SIZE = "BATCH_SIZE"
    LEARNING_RATE = "LEARNING_RATE"
    DEVICE = "DEVICE"
    CLASS_WEIGHTS = "CLASS_WEIGHTS"
    AUGMENT = "AUGMENT"
    COLOUR_AUGMENT = "COLOUR_AUGMENT"
    PATIENCE = "PATIENCE"
    RESUME = "RESUME"
    INITIAL_WEIGHTS = "INITIAL_WEIGHTS"
    ENCODER_WEIGHTS = "ENCODER_WEIGHTS"
    FREEZE_ENCODER_EPOCHS = "FREEZE_ENCODER_EPOCHS"
    ENCODER_LR_FACTOR = "ENCODER_LR_FACTOR"
    SCENE_PRETRAIN_MINUTES = "SCENE_PRETRAIN_MINUTES"
    BASE_WIDTH = "BASE_WIDTH"
    SEED = "SEED"
    TIME_LIMIT = "TIME_LIMIT"
    TILE_SIZE = "TILE_SIZE"
    REFIT = "REFIT"
    CV_FOLDS = "CV_FOLDS"
    NPROC = "NPROC"
    OUTPUT = "OUTPUT"
    OUTPUT_REPORT = "OUTPUT_REPORT"
    CURVES_CSV = "CURVES_CSV"
    CURVES_PNG = "CURVES_PNG"
    CHECKPOINT = "CHECKPOINT"
    BEST_VAL_MIOU = "BEST_VAL_MIOU"
    BEST_VAL_ACCURACY = "BEST_VAL_ACCURACY"
    BEST_EPOCH = "BEST_EPOCH"
    CANCELLED = "CANCELLED"
    HELDOUT_OA = "HELDOUT_OA"
    HELDOUT_MIOU = "HELDOUT_MIOU"
    LIGHT_SENSITIVITY = "LIGHT_SENSITIVITY"

    def name(self):
        return "train_segmentation_model"

    def displayName(self):
        return self.tr("Train segmentation model")

    def shortHelpString(self):
        return self.tr(
            "Trains a segmentation network on a chip dataset made by 'Export label chips' and writes one "
            "self-describing ONNX model (classes, colours, band statistics and tile size inside; readable by "
            "'Classify raster with model' and by the Deepness plugin).\n\n"
            "Training runs in the engine's Python, on the GPU when one is available (the log names the device). "
            "Each epoch logs the training and validation loss, validation overall accuracy, mean IoU and IoU per "
            "class; the model kept is the epoch with the best validation mIoU. The training curves are written "
            "as a PNG plot and a CSV beside the model, the checkpoints in a '<model>_checkpoints' folder. The "
            "<b>training report</b> (HTML, opened in the Results Viewer) shows the curves, the per-class IoU at the "
            "best epoch, the held-out estimate, the class weights, the data and the run's settings.\n\n"
            "A batch size that leaves fewer than two batches of training chips is reduced (the log says so); "
            "each epoch's line gives the time left. A model or report left at '[Save to temporary file]' is "
            "written beside the chip dataset instead, and the next 'Classify raster with model' opens with it.\n\n"
            "<b>Architecture</b>: Automatic picks the per-pixel net when under 30 % of the chips' pixels are "
            "labelled (a few small polygons: a U-Net learns the polygons rather than the classes there) and "
            "the U-Net otherwise. <b>Epochs</b> 0 (automatic) trains up to 60 epochs with dense labels and 30 "
            "with sparse ones (longer training bought those nothing but time); early stopping may end sooner.\n\n"
            "<b>How good will the map be?</b> With training polygons, 'Export label chips' holds whole polygons "
            "out for validation. The model is trained without them, scored on them (the <b>held-out estimate</b> "
            "of the map's overall accuracy and mean IoU, weighted by how much of the map each class covers; in "
            "the log, the model file and the HELDOUT_OA / HELDOUT_MIOU outputs), and then trained again on all "
            "polygons for that many epochs (turn off <b>train the exported model again</b> to save that time). "
            "Under 40 held-out polygons, one split scores too few of them, so the trainer cross-validates "
            "instead: each of the <b>cross-validation folds</b> (4 by default, advanced) trains a model without "
            "its share of the polygons and scores them, so every polygon is scored once (a run of several "
            "trainings; the log shows 'Fold 2/4 ...'); 1 fold keeps the single split. Without the refit there "
            "is no cross-validation. With few polygons the estimate is rough: the log says so. With a labels "
            "raster, whole blocks of chips are held out, and the estimate is of the area the labels cover: "
            "where that is part of the image, the log says so (beyond it the map is usually less accurate). "
            "The estimate is of the training raster's light: the log, the report and the LIGHT_SENSITIVITY "
            "output also say how many of the model's labels change when every band is 5 % brighter or darker "
            "(another date's light), and the log warns of a model that depends on it.\n\n"
            "<b>Cancel</b> stops at the next batch and still writes the model of the best epoch so far.\n"
            "<b>Class weights</b> balance rare classes against common ones (unlabelled pixels never count). "
            "<b>Augmentation</b>: random flips and 90 degree rotations. <b>Colour augmentation</b> changes each "
            "chip's values as another date or scene would (all bands brighter or darker by up to 20 %, an offset of "
            "up to 10 % of each band's mean, like haze) and adds noise: for a model to map other dates or scenes "
            "than the ones labelled. It costs some accuracy on scenes like the training ones (on the Zion example "
            "65 % instead of 68 % (69 % in one run of three); a 15 % brighter copy of the scene 39 % (68 % in one "
            "run) instead of 14 %). For another date of the same place, Classify's 'Match to the training raster' "
            "does better.\n"
            "<b>Early stopping patience</b>: epochs without a better validation mIoU "
            "before stopping (0 = never); it waits until the learning rate is down to half its peak, since a best "
            "epoch at the peak rate is a noisy one. <b>Resume</b> continues a run from its 'last.pt' checkpoint; "
            "<b>initial weights</b> start from a .pt file of weights (nothing is downloaded).\n\n"
            "<b>Pretrained encoder weights</b>: a ResNet-18/34/50 weights file (torchvision's .pth, timm, "
            "SSL4EO-S12 or SatlasPretrain) for the architectures with a ResNet encoder (Automatic then picks the "
            "U-Net on that ResNet). Its first convolution is fitted to your bands (the RGB filters go to the bands "
            "named red, green and blue (band descriptions, or a photo's colour interpretation), the mean filter to "
            "the others; the log says how); the encoder is frozen "
            "for the first epochs, then trains at a fraction of the learning rate. The model file records the "
            "weights' file name and SHA-256. See the user guide for where to get weights. Without a weights file, "
            "<b>pretrain the encoder on the scene itself</b> spends the given minutes teaching it to fill in hidden "
            "patches of the raster the chips came from (no labels, no download) before training on them; it too "
            "needs an architecture with a ResNet encoder (Automatic then picks the U-Net on ResNet-18).\n\n"
            "<b>Training processes</b> (advanced): more than 1 trains on that many processes with torch "
            "distributed (one a GPU, or a share of the CPU cores each); the batch size is shared out among them. "
            "The user guide shows how to train on several machines.\n\n"
            "Out of memory? Use a smaller batch size or base width, or export smaller chips.")

    def initAlgorithm(self, config=None):
        dataset = QgsProcessingParameterFile(self.DATASET, self.tr("Chip dataset folder"),
                                             behavior=QgsProcessingParameterFile.Folder,
                                             defaultValue=remembered(LAST_CHIP_FOLDER, folder=True))
        dataset.setMetadata({REMEMBERED: "the last folder written by 'Export label chips'"})
        self.addParameter(dataset)
        self.addParameter(QgsProcessingParameterEnum(self.ARCHITECTURE, self.tr("Architecture"),
                                                     options=[label for _, label in ARCHITECTURES],
                                                     defaultValue=[n for n, _ in ARCHITECTURES].index(
                                                         _default("architecture"))))
        self.addParameter(QgsProcessingParameterNumber(self.EPOCHS, self.tr("Epochs (0 = automatic)"),
                                                       defaultValue=_default("epochs"), **number_range(T, "epochs")))
        self.addParameter(QgsProcessingParameterNumber(self.BATCH_SIZE, self.tr("Batch size"),
                                                       defaultValue=_default("batch_size"),
                                                       **number_range(T, "batch_size")))
        self.addParameter(QgsProcessingParameterNumber(self.LEARNING_RATE, self.tr("Learning rate (peak)"),
                                                       QgsProcessingParameterNumber.Double,
                                                       defaultValue=_default("learning_rate"),
                                                       **{**number_range(T, "learning_rate"),
                                                          "maxValue": LEARNING_RATE_MAX}))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, self.tr("Device"),
                                                     options=DEVICE_OPTIONS,
                                                     defaultValue=DEVICES.index(_default("device"))))
        self.addParameter(QgsProcessingParameterBoolean(self.CLASS_WEIGHTS, self.tr("Weight classes against "
                                                                                    "imbalance"),
                                                        defaultValue=_default("class_weights")))
        self.addParameter(QgsProcessingParameterBoolean(self.AUGMENT, self.tr("Augment (flips, 90° rotations)"),
                                                        defaultValue=_default("augment")))
        self.addParameter(QgsProcessingParameterNumber(self.PATIENCE, self.tr("Early stopping patience (epochs, "
                                                                              "0 = off)"),
                                                       defaultValue=_default("patience"),
                                                       **number_range(T, "patience")))
        self.addParameter(QgsProcessingParameterFile(self.RESUME, self.tr("Resume from checkpoint (last.pt)"),
                                                     extension="pt", optional=True))
        self.addParameter(QgsProcessingParameterFile(self.INITIAL_WEIGHTS, self.tr("Initial weights (.pt)"),
                                                     optional=True))
        self.addParameter(QgsProcessingParameterFile(self.ENCODER_WEIGHTS, self.tr("Pretrained encoder weights "
                                                                                   "(ResNet .pth)"),
                                                     optional=True))
        advanced = [
            QgsProcessingParameterBoolean(self.COLOUR_AUGMENT, self.tr("Colour augmentation (brightness, "
                                                                       "haze, noise: for other dates)"),
                                          defaultValue=_default("colour_augment")),
            QgsProcessingParameterNumber(self.BASE_WIDTH, self.tr("Base width (channels of the first stage)"),
                                         defaultValue=_default("base_width"), **number_range(T, "base_width")),
            QgsProcessingParameterNumber(self.SEED, self.tr("Random seed"), defaultValue=_default("seed"),
                                         **number_range(T, "seed")),
            QgsProcessingParameterNumber(self.TIME_LIMIT, self.tr("Time limit (minutes, 0 = none)"),
                                         QgsProcessingParameterNumber.Double, defaultValue=0.0,
                                         **number_range(T, "time_limit_minutes", zero_means_default=True)),
            QgsProcessingParameterNumber(self.TILE_SIZE, self.tr("Model tile size (pixels, 0 = chip size)"),
                                         defaultValue=0,
                                         **number_range(T, "export_tile_size", zero_means_default=True)),
            QgsProcessingParameterBoolean(self.REFIT, self.tr("With held-out polygons: train the exported model "
                                                              "again on all polygons"),
                                          defaultValue=_default("refit")),
            QgsProcessingParameterNumber(self.FREEZE_ENCODER_EPOCHS, self.tr("Pretrained encoder: frozen for the "
                                                                             "first epochs"),
                                         defaultValue=_default("freeze_encoder_epochs"),
                                         **number_range(T, "freeze_encoder_epochs")),
            QgsProcessingParameterNumber(self.ENCODER_LR_FACTOR, self.tr("Pretrained encoder: learning rate "
                                                                         "factor"),
                                         QgsProcessingParameterNumber.Double,
                                         defaultValue=_default("encoder_lr_factor"),
                                         **number_range(T, "encoder_lr_factor")),
            QgsProcessingParameterNumber(self.SCENE_PRETRAIN_MINUTES, self.tr("Pretrain the encoder on the scene "
                                                                              "itself first (minutes, 0 = off)"),
                                         QgsProcessingParameterNumber.Double,
                                         defaultValue=_default("scene_pretrain_minutes"),
                                         **number_range(T, "scene_pretrain_minutes")),
            QgsProcessingParameterNumber(self.CV_FOLDS, self.tr("With few held-out polygons and the refit: cross-"
                                                                "validation folds for the accuracy estimate (1 = "
                                                                "one split)"),
                                         defaultValue=_default("cv_folds"), **number_range(T, "cv_folds")),
            QgsProcessingParameterNumber(self.NPROC, self.tr("Training processes (torch distributed; one a GPU, "
                                                             "or a share of the CPU cores each)"),
                                         defaultValue=_default("nproc"), **number_range(T, "nproc")),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("ONNX model (temporary: a new file beside the chip dataset)"),
            fileFilter=self.tr("ONNX model (*.onnx)")))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_REPORT, self.tr("Training report (temporary: beside the model)"),
            self.tr("HTML files (*.html)"), optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputFile(self.CURVES_CSV, self.tr("Training curves (CSV)")))
        self.addOutput(QgsProcessingOutputFile(self.CURVES_PNG, self.tr("Training curves (PNG plot)")))
        self.addOutput(QgsProcessingOutputFile(self.CHECKPOINT, self.tr("Best checkpoint")))
        self.addOutput(QgsProcessingOutputNumber(self.BEST_VAL_MIOU, self.tr("Best validation mIoU")))
        self.addOutput(QgsProcessingOutputNumber(self.BEST_VAL_ACCURACY, self.tr("Validation overall accuracy "
                                                                                 "at the best epoch")))
        self.addOutput(QgsProcessingOutputNumber(self.BEST_EPOCH, self.tr("Best epoch")))
        self.addOutput(QgsProcessingOutputBoolean(self.CANCELLED, self.tr("Cancelled before the last epoch")))
        self.addOutput(QgsProcessingOutputNumber(self.HELDOUT_OA, self.tr("Held-out estimate of the map's overall "
                                                                          "accuracy")))
        self.addOutput(QgsProcessingOutputNumber(self.HELDOUT_MIOU, self.tr("Held-out estimate of the map's mean "
                                                                            "IoU")))
        self.addOutput(QgsProcessingOutputNumber(self.LIGHT_SENSITIVITY, self.tr(
            "Light sensitivity: share of the labels that 5 % more or less light changes")))

    def checkParameterValues(self, parameters, context):
        """Settings the trainer refuses at its start, refused in the dialog instead (it names the setting)."""
        p = parameters
        tile = self.parameterAsInt(p, self.TILE_SIZE, context)
        if 0 < tile < 8:
            return False, self.tr("The model tile size must be 0 (the chip size) or at least 8 px (got {0}).").format(
                tile)
        batch, processes = self.parameterAsInt(p, self.BATCH_SIZE, context), self.parameterAsInt(p, self.NPROC, context)
        if processes > batch:
            return False, self.tr("The batch size ({0}) is shared out among the training processes ({1}): give a "
                                  "batch size of at least {1}, or fewer processes.").format(batch, processes)
        if self.parameterAsDouble(p, self.SCENE_PRETRAIN_MINUTES, context) > 0:
            if self.parameterAsFile(p, self.ENCODER_WEIGHTS, context):
                return False, self.tr("Give either pretrained encoder weights or minutes of pretraining on the "
                                      "scene, not both.")
            architecture = ARCHITECTURES[self.parameterAsEnum(p, self.ARCHITECTURE, context)]
            if architecture[0] != "auto" and "_resnet" not in architecture[0]:
                return False, self.tr("Pretraining on the scene needs an architecture with a ResNet encoder; "
                                      "'{0}' has none. Choose a ResNet one or Automatic, or set the pretraining "
                                      "to 0 minutes.").format(architecture[1])
        return super().checkParameterValues(parameters, context)

    def engine_options(self, parameters, context, feedback) -> TrainConfig:
        p = parameters
        dataset = self.parameterAsFile(p, self.DATASET, context)
        output = self.parameterAsFileOutput(p, self.OUTPUT, context)
        if not dataset:
            raise QgsProcessingException(self.tr("Choose the chip dataset folder made by 'Export label chips'."))
        dataset = str(dataset_folder(dataset))  # its dataset.json, as a file picker offers, means its folder
        output = kept_path(output, context, feedback, f"{Path(dataset).name}_model", ".onnx", Path(dataset).parent,
                           what="model")
        if not output.lower().endswith(".onnx"):
            output += ".onnx"
        report = self.parameterAsFileOutput(p, self.OUTPUT_REPORT, context)
        # like the curves beside it, the report belongs to the model: replaced when the model is
        self._report = str(Path(output).with_name(Path(output).stem + "_report.html")) if is_temporary(report) \
            else report
        self._dataset = dataset
        train_chips, val_chips = preflight.chip_counts(dataset)
        batch_size, warnings = preflight.advice(self.parameterAsInt(p, self.BATCH_SIZE, context), train_chips,
                                                val_chips)
        for warning in warnings:
            feedback.pushWarning(warning)
        plan = preflight.plan(batch_size, train_chips, self.parameterAsBool(p, self.AUGMENT, context),
                              self.parameterAsBool(p, self.COLOUR_AUGMENT, context))
        if plan:
            feedback.pushInfo(plan)
        config = TrainConfig(
            dataset_dir=dataset, output=output,
            architecture=ARCHITECTURES[self.parameterAsEnum(p, self.ARCHITECTURE, context)][0],
            epochs=self.parameterAsInt(p, self.EPOCHS, context),
            batch_size=batch_size,
            learning_rate=self.parameterAsDouble(p, self.LEARNING_RATE, context),
            device=DEVICES[self.parameterAsEnum(p, self.DEVICE, context)],
            patience=self.parameterAsInt(p, self.PATIENCE, context),
            base_width=self.parameterAsInt(p, self.BASE_WIDTH, context),
            seed=self.parameterAsInt(p, self.SEED, context),
            class_weights=self.parameterAsBool(p, self.CLASS_WEIGHTS, context),
            augment=self.parameterAsBool(p, self.AUGMENT, context),
            colour_augment=self.parameterAsBool(p, self.COLOUR_AUGMENT, context),
            resume=self.parameterAsFile(p, self.RESUME, context) or None,
            initial_weights=self.parameterAsFile(p, self.INITIAL_WEIGHTS, context) or None,
            encoder_weights=self.parameterAsFile(p, self.ENCODER_WEIGHTS, context) or None,
            freeze_encoder_epochs=self.parameterAsInt(p, self.FREEZE_ENCODER_EPOCHS, context),
            encoder_lr_factor=self.parameterAsDouble(p, self.ENCODER_LR_FACTOR, context),
            scene_pretrain_minutes=self.parameterAsDouble(p, self.SCENE_PRETRAIN_MINUTES, context),
            time_limit_minutes=self.parameterAsDouble(p, self.TIME_LIMIT, context) or None,
            export_tile_size=self.parameterAsInt(p, self.TILE_SIZE, context) or None,
            refit=self.parameterAsBool(p, self.REFIT, context),
            cv_folds=self.parameterAsInt(p, self.CV_FOLDS, context),
            nproc=self.parameterAsInt(p, self.NPROC, context))
        try:  # the report is written after training: a path that would replace an input fails now, not then
            check_report_path(self._report, config)
            check_start_weights(config)  # and initial weights it cannot start from, or would replace
        except BadInputError as exc:
            raise QgsProcessingException(exc.message) from exc
        return config

    def processing_outputs(self, outputs, context, feedback) -> dict:
        if outputs.get("CANCELLED"):
            feedback.pushWarning(self.tr("Training was cancelled: the model holds the best epoch finished before "
                                         "the cancel."))
        remember(LAST_MODEL, outputs["OUTPUT"])
        try:
            outputs[self.OUTPUT_REPORT] = write_training_report(
                self._report, outputs["OUTPUT"], outputs.get("CURVES_CSV"), outputs.get("CURVES_PNG"),
                self._dataset, outputs)
        except (OSError, ValueError) as exc:  # the model is what matters: a report that fails is only reported
            feedback.reportError(f"Could not write the training report {self._report}: {exc}", fatalError=False)
        feedback.pushInfo(self.tr("Model: {0}\nTraining report: {1}").format(
            outputs["OUTPUT"], outputs.get(self.OUTPUT_REPORT) or outputs.get("CURVES_PNG")))
        return super().processing_outputs(outputs, context, feedback)

