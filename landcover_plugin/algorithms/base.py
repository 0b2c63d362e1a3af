"""The base of every algorithm: group, instance creation and, for engine-backed ones, the engine call.

An engine-backed algorithm is three small steps, like GDAL's algorithms in Processing:

* ``engine_options(parameters, context, feedback)``: the parameters as the command's options dataclass
  (layers first written to files the engine reads);
* the engine runs that command (:meth:`EngineAlgorithm.engine_command` gives its argv without running it,
  as GDAL's ``getConsoleCommands`` does, so a test can check the call);
* ``processing_outputs``: the engine's outputs, which carry the Processing output names, for each output
  the algorithm declares (override to add styling or a summary line).
"""
import os

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterDistance,
    QgsProcessingParameterNumber,
    QgsProperty,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..core.engine import command_argv
from ..core.options import DEVICE_LABELS, DEVICES, bounds_of, number_text
from ..qgis_glue.engine_python import resolve_engine_python
from ..qgis_glue.engine_runner import EngineCancelled, EngineError, run_engine

ICON_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icon.svg")
DEVICE_OPTIONS = [DEVICE_LABELS[d] for d in DEVICES]  # Processing enum labels, in DEVICES order


def number_range(options_class, name: str, zero_means_default: bool = False) -> dict:
    """``minValue``/``maxValue`` of a Processing number parameter: the range the engine accepts for the option
    ``name`` of ``options_class``, so that the dialog refuses what the engine would. ``zero_means_default``: the
    parameter's 0 stands for the option left out (automatic, none), so the dialog also takes 0."""
    low, high = bounds_of(options_class, name)
    limits = {}
    if zero_means_default or low is not None:
        limits["minValue"] = 0 if zero_means_default else low
    if high is not None:
        limits["maxValue"] = high
    return limits


def out_of_range(algorithm, parameters) -> str:
    """The message for the first number parameter given outside its range, naming it; '' when none is."""
    for parameter in algorithm.parameterDefinitions():
        if not isinstance(parameter, (QgsProcessingParameterNumber, QgsProcessingParameterDistance)):
            continue
        value = parameters.get(parameter.name())
        if value is None or value == "" or isinstance(value, QgsProperty):
            continue  # not given, or an expression: QGIS evaluates and checks it
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue  # not a number: QGIS's own check names it
        low, high = parameter.minimum(), parameter.maximum()
        if low <= number <= high:
            continue
        if low > -1e300 and high < 1e300:
            span = f"from {number_text(low)} to {number_text(high)}"
        else:
            span = f"at least {number_text(low)}" if low > -1e300 else f"at most {number_text(high)}"
        return f"{parameter.description()} ({parameter.name()}) must be {span}, got {value}."
    return ""


class LandcoverAlgorithm(QgsProcessingAlgorithm):
    """Group, icon, translation and ``createInstance`` shared by the provider's algorithms."""

    def checkParameterValues(self, parameters, context):
        """A number out of its range is refused with a message naming the parameter and its range (QGIS's own
        check says only 'Incorrect parameter value')."""
        message = out_of_range(self, parameters)
        if message:
            return False, message
        return super().checkParameterValues(parameters, context)

    def group(self):
        return self.tr("Land cover")

    def groupId(self):
        return "landcover"

    def icon(self):
        return QIcon(ICON_PATH)

    def tr(self, text):
        return QCoreApplication.translate("Processing", text)

    def createInstance(self):
        return type(self)()


class EngineAlgorithm(LandcoverAlgorithm):
    """An algorithm whose work runs in the engine subprocess (``COMMAND``)."""

    COMMAND = None

    def engine_options(self, parameters, context, feedback):
        """The command's options dataclass for these parameters."""
        raise NotImplementedError

    def engine_command(self, parameters, context, feedback) -> list:
        """The engine's argv (after ``python -m landcover_plugin.core.engine``) for these parameters."""
        return command_argv(self.COMMAND, self.engine_options(parameters, context, feedback))

    def processAlgorithm(self, parameters, context, feedback):
        argv = self.engine_command(parameters, context, feedback)
        outputs = self.run_engine(argv[0], argv[1:], feedback)
        return self.processing_outputs(outputs, context, feedback)

    def processing_outputs(self, outputs: dict, context, feedback) -> dict:
        """The engine's outputs under the algorithm's declared output names."""
        return {d.name(): outputs.get(d.name()) for d in self.outputDefinitions()}

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
