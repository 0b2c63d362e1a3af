"""The "Land cover" Processing provider, with an explicit list of its algorithms."""
import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms.assess_accuracy import AssessAccuracyAlgorithm
from .algorithms.classify_raster import ClassifyRasterAlgorithm
from .algorithms.create_reference_sample import CreateReferenceSampleAlgorithm
from .algorithms.create_training_layer import CreateTrainingLayerAlgorithm
from .algorithms.export_chips import ExportChipsAlgorithm
from .algorithms.quantise_model import QuantiseModelAlgorithm
from .algorithms.setup_engine import SetupEngineAlgorithm
from .algorithms.suggest_training_areas import SuggestTrainingAreasAlgorithm
from .algorithms.train_model import TrainModelAlgorithm

ICON_PATH = os.path.join(os.path.dirname(__file__), "icon.svg")

ALGORITHMS = [
    SetupEngineAlgorithm,
    AssessAccuracyAlgorithm,
    CreateTrainingLayerAlgorithm,
    ExportChipsAlgorithm,
    ClassifyRasterAlgorithm,
    TrainModelAlgorithm,
    CreateReferenceSampleAlgorithm,
    SuggestTrainingAreasAlgorithm,
    QuantiseModelAlgorithm,
]


class LandcoverProvider(QgsProcessingProvider):
    def id(self):
        return "landcover"

    def name(self):
        return "Land cover"

    def longName(self):
        return "Land cover: deep-learning land-cover mapping"

    def icon(self):
        return QIcon(ICON_PATH)

    def svgIconPath(self):
        return ICON_PATH

    def supportedOutputRasterLayerExtensions(self):
        """GeoTIFF only: the classified, confidence and uncertainty rasters are GeoTIFFs (colour table, class
        names, overviews), so the file dialogs offer no format the engine refuses."""
        return ["tif"]

    def defaultRasterFileExtension(self):
        return "tif"

    def loadAlgorithms(self):
        for algorithm_class in ALGORITHMS:
            self.addAlgorithm(algorithm_class())
