"""The base of every engine-backed algorithm: group, instance creation and the engine call."""
import os

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..qgis_glue.engine_python import resolve_engine_python
from ..qgis_glue.engine_runner import EngineCancelled, EngineError, run_engine

ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icon.svg")


class LandcoverAlgorithm(QgsProcessingAlgorithm):
    """Group, icon, translation and ``createInstance`` shared by the provider's algorithms."""

    def group(self):
        return self.tr("Land cover")

    def groupId(self):  # noqa: N802 - QGIS's name
        return "landcover"

    def icon(self):
        return QIcon(ICON_PATH)

    def tr(self, text):
        return QCoreApplication.translate("Processing", text)

    def createInstance(self):  # noqa: N802 - QGIS's name
        return type(self)()


class EngineAlgorithm(LandcoverAlgorithm):
    """An algorithm whose work runs in the engine subprocess."""

    def run_engine(self, command: str, args, feedback, python: str = None) -> dict:
        """Run an engine command; return its outputs or raise QgsProcessingException with a clear message.

        A result the engine still delivers after a cancel (the trainer's best model) is returned.
        """
        if python is None:
            python, source = resolve_engine_python()
            feedback.pushDebugInfo(f"Engine Python: {python} (from {source})")
        try:
            return run_engine(python, command, args, feedback)
        except EngineCancelled as exc:
            raise QgsProcessingException(self.tr("Cancelled: no output was written.")) from exc
        except EngineError as exc:
            raise QgsProcessingException(exc.user_message()) from exc
