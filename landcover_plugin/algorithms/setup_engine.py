"""Set up engine environment: create and fill the managed venv, or only report what the engine will use."""
from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from ..core.errors import BadInputError
from ..core.train.weights_download import IMAGENET_RESNETS, download_imagenet_weights
from ..qgis_glue import engine_python
from ..qgis_glue.engine_install import install_engine_environment
from ..qgis_glue.engine_runner import EngineCancelled, EngineError
from .base import EngineAlgorithm

MODES = ["Install or update the managed engine environment", "Check only: report what the engine will use"]


class SetupEngineAlgorithm(EngineAlgorithm):
    MODE = "MODE"
    BASE_PYTHON = "BASE_PYTHON"
    PIP_ARGS = "PIP_ARGS"
    PYTHON = "PYTHON"
    GPU = "GPU"
    TORCH_DEVICE = "TORCH_DEVICE"
    ORT_PROVIDERS = "ORT_PROVIDERS"
    VERSIONS = "VERSIONS"
    DOWNLOAD_WEIGHTS = "DOWNLOAD_WEIGHTS"
    WEIGHTS_FOLDER = "WEIGHTS_FOLDER"

    def name(self):
        return "setup_engine_environment"

    def displayName(self):
        return self.tr("Set up engine environment")

    def shortHelpString(self):
        return self.tr(
            "Creates the engine's own Python environment (a virtual environment in your QGIS profile folder) and "
            "installs torch, onnxruntime and the other engine packages into it with pip. QGIS's own Python is "
            "never changed. When nvidia-smi finds an NVIDIA GPU, the GPU builds are chosen "
            "(onnxruntime-gpu; torch's CUDA build).\n\n"
            "<b>Check only</b> installs nothing: it reports the engine's Python, package versions, the GPU's "
            "name (or 'no GPU'), the torch device and the onnxruntime execution providers that will be used.\n\n"
            "Which Python runs the engine: the LANDCOVER_PYTHON environment variable if set, else the plugin "
            "setting (written by this algorithm), else the managed environment.\n\n"
            "<b>Extra pip arguments</b>: e.g. '--find-links /path/to/wheels --no-index' on a closed network, "
            "or an '--index-url' of PyTorch's CUDA wheel index on Windows. Installation takes a few minutes "
            "and downloads about 1 GB (several GB with CUDA).\n\n"
            "<b>Download ImageNet ResNet weights</b> (off by default; needs the machine online): fetches "
            "torchvision's ImageNet ResNet-18, -34 and -50 weights (about 230 MB, checksums verified) into a "
            "'pretrained_weights' folder beside the engine environment, for 'Pretrained encoder weights' in "
            "'Train segmentation model'. Training itself never downloads.")

    def initAlgorithm(self, config=None):
        # Check only by default: a user who opens the dialog to look must not start a 1 GB download.
        self.addParameter(QgsProcessingParameterEnum(self.MODE, self.tr("Mode"), options=MODES, defaultValue=1))
        base = QgsProcessingParameterFile(
            self.BASE_PYTHON, self.tr("Python to base the environment on (Install mode; default: QGIS's Python)"),
            behavior=QgsProcessingParameterFile.File, optional=True)
        base.setFlags(base.flags() | QgsProcessingParameterDefinition.FlagAdvanced)  # rarely anything but QGIS's
        self.addParameter(base)
        self.addParameter(QgsProcessingParameterString(self.PIP_ARGS, self.tr("Extra pip arguments (Install mode)"),
                                                       optional=True))
        self.addParameter(QgsProcessingParameterBoolean(self.DOWNLOAD_WEIGHTS,
                                                        self.tr("Download ImageNet ResNet weights (about 230 MB; "
                                                                "Install mode)"),
                                                        defaultValue=False))
        self.addOutput(QgsProcessingOutputString(self.WEIGHTS_FOLDER, self.tr("Pretrained weights folder")))
        for output, label in ((self.PYTHON, "Engine Python"), (self.GPU, "GPU"),
                              (self.TORCH_DEVICE, "Torch device"), (self.ORT_PROVIDERS, "onnxruntime providers"),
                              (self.VERSIONS, "Package versions")):
            self.addOutput(QgsProcessingOutputString(output, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):
        check_only = self.parameterAsEnum(parameters, self.MODE, context) == 1
        if check_only and self.parameterAsBool(parameters, self.DOWNLOAD_WEIGHTS, context):
            raise QgsProcessingException("'Check only' installs and downloads nothing, but 'Download ImageNet ResNet "
                                         "weights' is ticked. Choose the mode 'Install or update' to download "
                                         "them, or untick the download to check only.")
        if check_only:
            python, source = engine_python.resolve_engine_python()
            feedback.pushInfo(f"Engine Python: {python} (from {source})")
        else:
            base = self.parameterAsString(parameters, self.BASE_PYTHON, context) or engine_python.base_python()
            pip_args = self.parameterAsString(parameters, self.PIP_ARGS, context).split()
            try:
                python = install_engine_environment(base, pip_args, feedback)
            except EngineCancelled as exc:
                raise QgsProcessingException("Cancelled: the engine environment may be incomplete; run again.") \
                    from exc
            except EngineError as exc:
                raise QgsProcessingException(exc.user_message()) from exc
        weights = ""
        if self.parameterAsBool(parameters, self.DOWNLOAD_WEIGHTS, context):
            weights = str(engine_python.managed_venv_dir().parent / "pretrained_weights")
            try:
                download_imagenet_weights(weights, tuple(IMAGENET_RESNETS), feedback.pushInfo, feedback.isCanceled)
            except BadInputError as exc:
                raise QgsProcessingException(str(exc)) from exc
        report = self.run_engine("env-report", [], feedback, python=python)
        feedback.setProgress(100)
        versions = ", ".join(f"{k} {v or 'MISSING'}" for k, v in report["packages"].items())
        providers = ", ".join(report["onnxruntime_providers"]) or "none"
        if not check_only:  # the engine's report above gave the versions, GPU and providers: not again
            feedback.pushInfo(f"Engine ready: {python}")
        return {self.PYTHON: python, self.GPU: report["gpu"], self.TORCH_DEVICE: report["torch_device"] or "",
                self.ORT_PROVIDERS: providers, self.VERSIONS: versions, self.WEIGHTS_FOLDER: weights}
