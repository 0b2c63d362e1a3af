"""Quantise model (int8): an ONNX model + its chip dataset -> an int8 copy that runs faster (engine ``quantise``)."""
from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ..core.model.quantise_options import QuantiseOptions
from ..core.options import default_of
from ..qgis_glue.output_places import LAST_CHIP_FOLDER, LAST_MODEL, REMEMBERED, remembered
from .base import EngineAlgorithm, number_range


class QuantiseModelAlgorithm(EngineAlgorithm):
    COMMAND = "quantise"
    MODEL = "MODEL"
    DATASET = "DATASET"
    CALIBRATION_CHIPS = "CALIBRATION_CHIPS"
    CHECK_CHIPS = "CHECK_CHIPS"
    OUTPUT = "OUTPUT"
    AGREEMENT = "AGREEMENT"
    SPEEDUP = "SPEEDUP"

    def name(self):
        return "quantise_model"

    def displayName(self):
        return self.tr("Quantise model (int8)")

    def shortHelpString(self):
        return self.tr(
            "Writes an int8 copy of an ONNX segmentation model that classifies faster on the CPU, with "
            "onnxruntime's own static quantisation (QDQ form, int8 weights per output channel, activation ranges "
            "calibrated on chips of the training dataset). The class probabilities stay in float.\n\n"
            "<b>Model</b>: a model from 'Train segmentation model' (or another ONNX segmentation model). "
            "<b>Chip dataset folder</b>: the chips the model was trained on ('Export label chips'): training "
            "chips calibrate, validation chips check the result.\n\n"
            "The copy keeps the model's metadata (its card and the Deepness keys) and its card says it is "
            "quantised. The log and the <b>label agreement</b> output say on how many validation pixels the int8 "
            "model chooses the same class as the float one (aim for 99 % or more; compare the maps when it is "
            "lower), and the speed-up measured on those chips. Classify with the copy as with any model.")

    def initAlgorithm(self, config=None):
        # as Classify and Train do: the model and the chips the analyst has just made
        model = QgsProcessingParameterFile(self.MODEL, self.tr("Model (ONNX, float)"), extension="onnx",
                                           defaultValue=remembered(LAST_MODEL))
        model.setMetadata({REMEMBERED: "the last model written by 'Train segmentation model'"})
        self.addParameter(model)
        dataset = QgsProcessingParameterFile(self.DATASET, self.tr("Chip dataset folder (training chips)"),
                                             behavior=QgsProcessingParameterFile.Folder,
                                             defaultValue=remembered(LAST_CHIP_FOLDER, folder=True))
        dataset.setMetadata({REMEMBERED: "the last folder written by 'Export label chips'"})
        self.addParameter(dataset)
        for name, label, field in ((self.CALIBRATION_CHIPS, "Calibration chips", "calibration_chips"),
                                   (self.CHECK_CHIPS, "Validation chips to compare labels on", "check_chips")):
            parameter = QgsProcessingParameterNumber(name, self.tr(label), QgsProcessingParameterNumber.Integer,
                                                     default_of(QuantiseOptions, field),
                                                     **number_range(QuantiseOptions, field))
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT, self.tr("Quantised model (int8 ONNX)"),
                                                                fileFilter=self.tr("ONNX model (*.onnx)")))
        self.addOutput(QgsProcessingOutputNumber(self.AGREEMENT, self.tr("Label agreement with the float model "
                                                                         "(share of validation pixels)")))
        self.addOutput(QgsProcessingOutputNumber(self.SPEEDUP, self.tr("Speed-up over the float model (model "
                                                                       "time on the validation chips)")))

    def engine_options(self, parameters, context, feedback) -> QuantiseOptions:
        model = self.parameterAsFile(parameters, self.MODEL, context)
        dataset = self.parameterAsFile(parameters, self.DATASET, context)
        output = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        if not model:
            raise QgsProcessingException(self.tr("Choose the ONNX model to quantise."))
        if not dataset:
            raise QgsProcessingException(self.tr("Choose the chip dataset folder the model was trained on."))
        if not output.lower().endswith(".onnx"):
            output += ".onnx"
        return QuantiseOptions(model=model, dataset=dataset, output=output, overwrite=True,
                               calibration_chips=self.parameterAsInt(parameters, self.CALIBRATION_CHIPS, context),
                               check_chips=self.parameterAsInt(parameters, self.CHECK_CHIPS, context))

    def processing_outputs(self, outputs, context, feedback) -> dict:
        faster = self.tr("; {0:.2f}x faster").format(outputs["SPEEDUP"]) if outputs.get("speedup_timed", True) \
            else ""  # times too short to say (the engine's log gives them)
        feedback.pushInfo(self.tr("Quantised model: {0}; labels agree with the float model on {1:.2f} % of "
                                  "validation pixels{2}.").format(outputs["OUTPUT"], 100 * outputs["AGREEMENT"],
                                                                  faster))
        return super().processing_outputs(outputs, context, feedback)
