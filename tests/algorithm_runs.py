"""Running one of the plugin's Processing algorithms in the test's headless QGIS, as the dialog does."""
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProject


def run_algorithm(algorithm_id: str, parameters: dict, feedback=None) -> tuple:
    """``(results, ok, log)`` of ``algorithm_id`` run with ``parameters`` in the current project."""
    algorithm = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
    assert algorithm is not None, f"{algorithm_id} is not registered"
    context, feedback = QgsProcessingContext(), feedback or QgsProcessingFeedback()
    context.setProject(QgsProject.instance())
    results, ok = algorithm.run(parameters, context, feedback)
    return results, ok, feedback.textLog()


def checked_run(algorithm_id: str, parameters: dict) -> tuple:
    """As :func:`run_algorithm`, after the parameter check the dialog makes first: ``({}, False, message)`` when
    that check refuses them, so a test sees the message the analyst would."""
    algorithm = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
    assert algorithm is not None, f"{algorithm_id} is not registered"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    ok, message = algorithm.checkParameterValues(parameters, context)
    if not ok:
        return {}, False, message
    return run_algorithm(algorithm_id, parameters)
