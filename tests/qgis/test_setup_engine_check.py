"""Set up engine environment as an analyst opens it: Check only by default, a file picker for the base Python,
and the versions said once in the Log."""
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
)


def test_check_mode_is_the_default_and_the_base_python_is_a_file_picker(provider):
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:setup_engine_environment")
    mode = algorithm.parameterDefinition("MODE")
    assert isinstance(mode, QgsProcessingParameterEnum) and mode.options()[mode.defaultValue()].startswith("Check")
    base = algorithm.parameterDefinition("BASE_PYTHON")
    assert isinstance(base, QgsProcessingParameterFile) and base.behavior() == QgsProcessingParameterFile.File
    assert base.flags() & base.FlagOptional


def test_check_mode_says_each_version_once(provider):
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:setup_engine_environment")
    feedback = QgsProcessingFeedback()
    results, ok = algorithm.run({}, QgsProcessingContext(), feedback)  # the defaults: check only
    log = feedback.textLog()
    assert ok, log
    torch = next(v for v in results["VERSIONS"].split(", ") if v.startswith("torch "))
    assert log.count(torch) == 1 and log.count("onnxruntime 1.") == 1, log
    assert log.count("GPU: ") == 1 and "Installing" not in log and "pip" not in log


def test_check_mode_never_downloads_the_weights(provider):
    """Check only installs and downloads nothing: asking it for the weights fails, saying which mode downloads."""
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:setup_engine_environment")
    feedback = QgsProcessingFeedback()
    results, ok = algorithm.run({"DOWNLOAD_WEIGHTS": True}, QgsProcessingContext(), feedback)
    log = feedback.textLog()
    assert not ok and "'Check only' installs and downloads nothing" in log and "Install or update" in log
    assert "Downloading" not in log and "MB" not in log.split("'Check only'")[0]
