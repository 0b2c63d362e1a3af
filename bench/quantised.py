"""int8 against float: the trainer's model on Zion, quantised by the ``quantise`` command (calibrated on its
training chips), both classifying the whole Zion image with ``classify_raster`` on the CPU, interleaved
(float, int8, float, int8, ...) so other load on the machine hits both alike. Agreement: share of classified
pixels on which the two maps give the same class."""
import time

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.quantise import quantise_model
from landcover_plugin.core.model.quantise_options import QuantiseOptions

from .assets import map_agreement, trainer_model
from .common import ZION_IMAGE, figure, median, paired_ratio, target

SPEEDUP_TARGET = 1.8
AGREEMENT_TARGET = 0.99
MINUTES = 3.0


def run(settings) -> dict:
    work = settings.folder("quantised")
    model, dataset, described = trainer_model(settings, 128, 0.2 if settings.quick else MINUTES)
    int8_path = work / "model_int8.onnx"
    tick = time.perf_counter()
    made = quantise_model(QuantiseOptions(model, dataset, int8_path, overwrite=True), RecordingEvents())
    quantise_seconds = time.perf_counter() - tick
    outputs = {"float": work / "float.tif", "int8": work / "int8.tif"}
    seconds = {"float": [], "int8": []}
    paths = {"float": model, "int8": int8_path}
    for round_ in range(max(3, settings.runs) + 1):  # the first round warms the file cache and is not counted
        for name in ("float", "int8"):
            tick = time.perf_counter()
            result = classify_raster(ClassifyOptions(ZION_IMAGE, paths[name], outputs[name], device="cpu",
                                                     overwrite=True))
            if round_:
                seconds[name].append(time.perf_counter() - tick)
    megapixels = result["MEGAPIXELS"]
    speedup = paired_ratio(seconds["float"], seconds["int8"])
    agreement = map_agreement(outputs["float"], outputs["int8"])
    figures = [
        figure("quantised.speedup", "int8 speed-up over float, whole classify run on Zion (CPU)", speedup, "x",
               runs=[f / i for f, i in zip(seconds["float"], seconds["int8"])],
               baseline={"label": "float model (as the trainer exports it)",
                         "value": median([megapixels / s for s in seconds["float"]]), "unit": "Mpx/s"},
               ratio=1.0 / speedup, target=target(speedup, ">=", SPEEDUP_TARGET, "x"),
               note=f"int8 {median([megapixels / s for s in seconds['int8']]):.2f} Mpx/s; model alone on the "
                    f"{made['check_chips']} validation chips {made['SPEEDUP']:.2f}x"),
        figure("quantised.agreement", "int8 map's classes equal to the float map's (Zion, classified pixels)",
               agreement, "", target=target(agreement, ">=", AGREEMENT_TARGET),
               note=f"on the validation chips: {made['AGREEMENT']:.4f} of {made['pixels_compared']} px"),
    ]
    what = (f"Model: {described}; quantised in {quantise_seconds:.1f} s (static QDQ, per-channel int8 weights, "
            f"{made['calibration_chips']} calibration chips). Zion 1128x1428 px, the card's overlap, batch 4.")
    return {"what": what, "figures": figures,
            "details": {"seconds": seconds, "quantise": {k: v for k, v in made.items() if k != "float_nodes"}}}
