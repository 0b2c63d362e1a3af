"""Options of the ``quantise`` command (engine flags, Processing defaults and the Python API in one place)."""
from dataclasses import dataclass

from ..options import option

DEFAULT_CALIBRATION_CHIPS = 64


@dataclass
class QuantiseOptions:
    model: str = option(help="float ONNX segmentation model to quantise")
    dataset: str = option(help="chip dataset folder the model was trained on (calibration and agreement chips)")
    output: str = option(help="int8 ONNX model to write (.onnx)")
    calibration_chips: int = option(DEFAULT_CALIBRATION_CHIPS,
                                    minimum=1, maximum=10_000,
                                    help="training chips the activation ranges are calibrated on")
    check_chips: int = option(DEFAULT_CALIBRATION_CHIPS,
                              minimum=1, maximum=10_000,
                              help="validation chips the int8 labels are compared with the float model's on")
    overwrite: bool = option(False, help="replace an existing output file")
