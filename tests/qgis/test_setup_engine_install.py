"""Set up engine environment, install mode, for real: a managed venv made and filled by pip."""
import os
import sys

import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsSettings

from landcover_plugin.algorithms.setup_engine import SetupEngineAlgorithm
from landcover_plugin.qgis_glue import engine_python


@pytest.mark.slow
def test_install_creates_the_managed_venv_and_reports(qgis_app, monkeypatch):
    monkeypatch.delenv("LANDCOVER_PYTHON", raising=False)
    venv_dir = engine_python.managed_venv_dir()
    assert str(venv_dir).startswith(QgsApplication.qgisSettingsDirPath())
    algorithm = SetupEngineAlgorithm()
    algorithm.initAlgorithm()
    feedback = QgsProcessingFeedback()
    base = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    results, ok = algorithm.run({"MODE": 0, "BASE_PYTHON": base}, QgsProcessingContext(), feedback)
    assert ok, feedback.textLog()[-3000:]
    python = str(engine_python.venv_python(venv_dir))
    assert results["PYTHON"] == python and os.path.exists(python)
    assert QgsSettings().value(engine_python.SETTING_KEY) == python
    assert engine_python.resolve_engine_python() == (python, "the plugin setting 'landcover/engine_python'")
    assert "torch 2.13" in results["VERSIONS"] and "numpy 1." in results["VERSIONS"]
    assert feedback.progress() == pytest.approx(100.0)
