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
