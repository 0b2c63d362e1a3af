"""Train segmentation model: chip dataset folder -> a self-describing ONNX model, in the engine subprocess."""
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

from .base import EngineAlgorithm

ARCHITECTURES = [("unet", "U-Net"), ("deeplabv3plus", "DeepLabV3+ (dilated convolutions)")]
DEVICES = [("auto", "Automatic (GPU when available)"), ("cpu", "CPU"), ("cuda", "GPU (CUDA)")]


class TrainModelAlgorithm(EngineAlgorithm):
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
    BASE_WIDTH = "BASE_WIDTH"
    SEED = "SEED"
    TIME_LIMIT = "TIME_LIMIT"
    TILE_SIZE = "TILE_SIZE"
    OUTPUT = "OUTPUT"
    CURVES_CSV = "CURVES_CSV"
    CURVES_PNG = "CURVES_PNG"
    CHECKPOINT = "CHECKPOINT"
    BEST_VAL_MIOU = "BEST_VAL_MIOU"
    BEST_VAL_ACCURACY = "BEST_VAL_ACCURACY"
    BEST_EPOCH = "BEST_EPOCH"
    CANCELLED = "CANCELLED"

    def name(self):
        return "train_segmentation_model"

    def displayName(self):  # noqa: N802 - QGIS's name
        return self.tr("Train segmentation model")

    def shortHelpString(self):  # noqa: N802 - QGIS's name
        return self.tr(
            "Trains a segmentation network on a chip dataset made by 'Export label chips' and writes one "
            "self-describing ONNX model (classes, colours, band statistics and tile size inside; readable by "
            "'Classify raster with model' and by the Deepness plugin).\n\n"
            "Training runs in the engine's Python, on the GPU when one is available (the log names the device). "
            "Each epoch logs the training and validation loss, validation overall accuracy, mean IoU and IoU per "
            "class; the model kept is the epoch with the best validation mIoU. The training curves are written "
            "as a PNG plot and a CSV beside the model, the checkpoints in a '<model>_checkpoints' folder.\n\n"
            "<b>Cancel</b> stops at the next batch and still writes the model of the best epoch so far.\n"
            "<b>Class weights</b> balance rare classes against common ones (unlabelled pixels never count). "
            "<b>Augmentation</b>: random flips and 90 degree rotations; colour augmentation adds brightness, "
            "contrast and noise jitter. <b>Early stopping patience</b>: epochs without a better validation mIoU "
            "before stopping (0 = never). <b>Resume</b> continues a run from its 'last.pt' checkpoint; "
            "<b>initial weights</b> start from a .pt file of weights (nothing is downloaded).\n\n"
            "Out of memory? Use a smaller batch size or base width, or export smaller chips.")

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterFile(self.DATASET, self.tr("Chip dataset folder"),
                                                     behavior=QgsProcessingParameterFile.Folder))
        self.addParameter(QgsProcessingParameterEnum(self.ARCHITECTURE, self.tr("Architecture"),
                                                     options=[label for _, label in ARCHITECTURES], defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.EPOCHS, self.tr("Epochs"), defaultValue=30,
                                                       minValue=1, maxValue=10000))
        self.addParameter(QgsProcessingParameterNumber(self.BATCH_SIZE, self.tr("Batch size"), defaultValue=16,
                                                       minValue=1, maxValue=4096))
        self.addParameter(QgsProcessingParameterNumber(self.LEARNING_RATE, self.tr("Learning rate (peak)"),
                                                       QgsProcessingParameterNumber.Double, defaultValue=0.001,
                                                       minValue=1e-7, maxValue=1.0))
        self.addParameter(QgsProcessingParameterEnum(self.DEVICE, self.tr("Device"),
                                                     options=[label for _, label in DEVICES], defaultValue=0))
        self.addParameter(QgsProcessingParameterBoolean(self.CLASS_WEIGHTS, self.tr("Weight classes against "
                                                                                    "imbalance"), defaultValue=True))
        self.addParameter(QgsProcessingParameterBoolean(self.AUGMENT, self.tr("Augment (flips, 90° rotations)"),
                                                        defaultValue=True))
        self.addParameter(QgsProcessingParameterNumber(self.PATIENCE, self.tr("Early stopping patience (epochs, "
                                                                              "0 = off)"),
                                                       defaultValue=10, minValue=0, maxValue=10000))
        self.addParameter(QgsProcessingParameterFile(self.RESUME, self.tr("Resume from checkpoint (last.pt)"),
                                                     extension="pt", optional=True))
        self.addParameter(QgsProcessingParameterFile(self.INITIAL_WEIGHTS, self.tr("Initial weights (.pt)"),
                                                     optional=True))
        advanced = [
            QgsProcessingParameterBoolean(self.COLOUR_AUGMENT, self.tr("Colour augmentation (brightness, "
                                                                       "contrast, noise)"), defaultValue=False),
            QgsProcessingParameterNumber(self.BASE_WIDTH, self.tr("Base width (channels of the first stage)"),
                                         defaultValue=16, minValue=4, maxValue=256),
            QgsProcessingParameterNumber(self.SEED, self.tr("Random seed"), defaultValue=0, minValue=0),
            QgsProcessingParameterNumber(self.TIME_LIMIT, self.tr("Time limit (minutes, 0 = none)"),
                                         QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0),
            QgsProcessingParameterNumber(self.TILE_SIZE, self.tr("Model tile size (pixels, 0 = chip size)"),
                                         defaultValue=0, minValue=0, maxValue=8192),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, self.tr("ONNX model"),
                                                                fileFilter=self.tr("ONNX model (*.onnx)")))
        self.addOutput(QgsProcessingOutputFile(self.CURVES_CSV, self.tr("Training curves (CSV)")))
        self.addOutput(QgsProcessingOutputFile(self.CURVES_PNG, self.tr("Training curves (PNG plot)")))
        self.addOutput(QgsProcessingOutputFile(self.CHECKPOINT, self.tr("Best checkpoint")))
        self.addOutput(QgsProcessingOutputNumber(self.BEST_VAL_MIOU, self.tr("Best validation mIoU")))
        self.addOutput(QgsProcessingOutputNumber(self.BEST_VAL_ACCURACY, self.tr("Validation overall accuracy "
                                                                                 "at the best epoch")))
        self.addOutput(QgsProcessingOutputNumber(self.BEST_EPOCH, self.tr("Best epoch")))
        self.addOutput(QgsProcessingOutputBoolean(self.CANCELLED, self.tr("Cancelled before the last epoch")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        dataset = self.parameterAsFile(parameters, self.DATASET, context)
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not dataset:
            raise QgsProcessingException(self.tr("Choose the chip dataset folder made by 'Export label chips'."))
        if not output.lower().endswith(".onnx"):
            output += ".onnx"
        p = parameters
        args = [dataset, "--output", output,
                "--architecture", ARCHITECTURES[self.parameterAsEnum(p, self.ARCHITECTURE, context)][0],
                "--epochs", self.parameterAsInt(p, self.EPOCHS, context),
                "--batch-size", self.parameterAsInt(p, self.BATCH_SIZE, context),
                "--learning-rate", self.parameterAsDouble(p, self.LEARNING_RATE, context),
                "--device", DEVICES[self.parameterAsEnum(p, self.DEVICE, context)][0],
                "--patience", self.parameterAsInt(p, self.PATIENCE, context),
                "--base-width", self.parameterAsInt(p, self.BASE_WIDTH, context),
                "--seed", self.parameterAsInt(p, self.SEED, context)]
        flags = ((self.CLASS_WEIGHTS, False, "--no-class-weights"), (self.AUGMENT, False, "--no-augment"),
                 (self.COLOUR_AUGMENT, True, "--colour-augment"))
        args += [flag for key, when, flag in flags if self.parameterAsBool(p, key, context) == when]
        for key, flag in ((self.RESUME, "--resume"), (self.INITIAL_WEIGHTS, "--initial-weights")):
            path = self.parameterAsFile(p, key, context)
            if path:
                args += [flag, path]
        time_limit = self.parameterAsDouble(p, self.TIME_LIMIT, context)
        if time_limit > 0:
            args += ["--time-limit-minutes", time_limit]
        tile = self.parameterAsInt(p, self.TILE_SIZE, context)
        if tile > 0:
            args += ["--export-tile-size", tile]
        outputs = self.run_engine("train", args, feedback)
        if outputs.get("cancelled"):
            feedback.pushWarning(self.tr("Training was cancelled: the model holds the best epoch finished before "
                                         "the cancel."))
        feedback.pushInfo(self.tr("Model: {0}\nTraining curves: {1}").format(outputs["OUTPUT"],
                                                                            outputs["CURVES_PNG"]))
        return {
            self.OUTPUT: outputs["OUTPUT"],
            self.CURVES_CSV: outputs["CURVES_CSV"],
            self.CURVES_PNG: outputs["CURVES_PNG"],
            self.CHECKPOINT: outputs.get("CHECKPOINT"),
            self.BEST_VAL_MIOU: outputs.get("BEST_VAL_MIOU"),
            self.BEST_VAL_ACCURACY: outputs.get("BEST_VAL_ACCURACY"),
            self.BEST_EPOCH: outputs.get("BEST_EPOCH"),
            self.CANCELLED: bool(outputs.get("cancelled")),
        }
