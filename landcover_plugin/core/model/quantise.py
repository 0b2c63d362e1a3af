"""The ``quantise`` engine command: an int8 copy of a segmentation model, with onnxruntime's own tools.

Static quantisation in QDQ form (``onnxruntime.quantization.quantize_static``): int8 weights per output
channel, uint8 activations whose ranges are calibrated (min/max) on standardised chips of the training
dataset. The class probabilities stay float (quantised to 1/255 they would tie), and so do the nodes that
compute them. Before quantising, the graph is pre-processed (shape inference, onnxruntime's basic fusions)
and its Softmax rewritten in the fast form (:mod:`.fast_graph`), so models exported before that gain too;
transposed convolutions and edge pads are rewritten so that they run in int8 too, channels last
(:mod:`.int8_graph`). A second calibration gives each concatenation's inputs its range where that is safe, so
that onnxruntime copies them instead of requantising (:mod:`.int8_ranges`).

The copy keeps every metadata key of the original (the Deepness keys, so Deepness runs it) and its
``landcover_card`` says ``"quantised": true`` with how it was made and how well its labels agree with the
float model's on validation chips (pixels where the two argmax classes are the same, over valid pixels).
"""
import json
import os
import shutil
import tempfile
import time

import numpy as np

from ..chips.dataset import load_spec
from ..errors import BadInputError, write_failure
from ..events import Events, RecordingEvents
from ..options import check_bounds
from ..output_folder import file_in_place
from ..rasters import open_raster, read, valid_mask
from .card import CARD_KEY
from .quantise_options import DEFAULT_CALIBRATION_CHIPS, QuantiseOptions
from .session import create_session, load_model

AGREEMENT_TARGET = 0.99
BATCH = 4
FEW_CHIPS = 16  # fewer calibration or check chips than this: their ranges and agreement are warned as untrustworthy
TIMED_SECONDS = 0.05  # model time below this (either model): too short for a speed-up that means anything


def quantise_model(options: QuantiseOptions, events: Events = None) -> dict:
    """Write ``options.output``, the int8 copy of ``options.model``; returns its path, label agreement and speed."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .int8_ranges import concat_range_overrides

    events = events or RecordingEvents()
    check_bounds(options)
    started = time.perf_counter()
    source, output = os.path.abspath(os.fspath(options.model)), _output_path(options)
    model = load_model(source, device="cpu", events=events)
    if model.card.get("quantised"):
        raise BadInputError(f"{source} is already quantised (its card says so): quantise the float model it "
                            f"was made from.")
    if model.card.get("normalisation_assumed"):
        raise BadInputError(f"{source} records no normalisation (no landcover_card, no Deepness "
                            f"standardization_mean/std): quantising would calibrate on pixel values divided by 255, a "
                            f"guess, and write that guess into the int8 copy, where Classify trusts it over a mean and "
                            f"std you give. Write the model's normalisation into it first (the Deepness keys "
                            f"standardization_mean and standardization_std, per band, after dividing by 255; and "
                            f"class_names), e.g. with onnx.helper.set_model_props, then quantise it.")
    if model.input_dtype != np.float32:
        raise BadInputError(f"{source} is a float16 model: onnxruntime's int8 quantisation calibrates float32 "
                            f"models only. Quantise the float32 model it was converted from (classify runs this "
                            f"float16 model as it is).")
    spec = load_spec(options.dataset)
    if spec.band_count != model.bands:
        raise BadInputError(f"The chip dataset {spec.folder} has {spec.band_count} bands but the model takes "
                            f"{model.bands}: calibrate on chips of the dataset the model was trained on.")
    calibration, check = _split_chips(spec, int(options.calibration_chips), int(options.check_chips))
    _warn_few_chips(len(calibration), len(check), spec, events)
    events.progress(0.05, f"reading {len(calibration)} calibration chips")
    calib_x, _ = _standardised(calibration, spec, model)
    with tempfile.TemporaryDirectory(prefix="landcover-quantise-") as work:
        float_path, prepared = os.path.join(work, "float.onnx"), os.path.join(work, "prepared.onnx")
        rewrites = _write_fast_float(onnx, source, float_path)
        events.progress(0.15, "pre-processing the graph")
        _pre_process(float_path, prepared, events)
        excluded = _float_nodes(onnx.load(prepared))
        events.progress(0.25, f"calibrating activation ranges on {len(calib_x)} chips")
        quantised = os.path.join(work, "int8.onnx")
        settings = {"quant_format": QuantFormat.QDQ, "per_channel": True, "activation_type": QuantType.QUInt8,
                    "weight_type": QuantType.QInt8, "calibrate_method": CalibrationMethod.MinMax,
                    "nodes_to_exclude": excluded}
        quantize_static(prepared, quantised, _Reader(model.input_name, calib_x, model.fixed_batch), **settings)
        overrides = concat_range_overrides(onnx.load(quantised))
        if overrides:
            events.progress(0.45, "calibrating again with each concatenation's inputs on its range")
            quantize_static(prepared, quantised, _Reader(model.input_name, calib_x, model.fixed_batch),
                            extra_options={"TensorQuantOverrides": overrides}, **settings)
        rewrites.update(_after_quantising(onnx, quantised))
        events.progress(0.7, f"comparing labels with the float model on {len(check)} validation chips")
        check_x, check_valid = _standardised(check, spec, model)
        agreement = _agreement(model, create_session(quantised, "cpu", model.threads, events), check_x, check_valid)
        card = dict(model.card, quantised=True, quantisation={
            "method": "onnxruntime static quantisation, QDQ", "weights": "int8, per output channel",
            "activations": "uint8, min/max calibration", "float_nodes": excluded,
            "calibration_chips": len(calib_x), "calibration_dataset": str(spec.folder),
            "source_model": os.path.basename(source), "agreement": agreement, "graph_rewrites": rewrites,
            "onnxruntime": _ort_version()})
        _write_with_metadata(onnx, quantised, output, source, card)
    seconds = time.perf_counter() - started
    level = events.info if agreement["label_agreement"] >= AGREEMENT_TARGET else events.warning
    level(f"Quantised model written to {output}: its labels agree with the float model's on "
          f"{100 * agreement['label_agreement']:.2f} % of {agreement['pixels']} valid pixels of {len(check)} "
          f"validation chips" + ("" if agreement["label_agreement"] >= AGREEMENT_TARGET else
                                 f" (below {100 * AGREEMENT_TARGET:.0f} %: compare the maps before using it)")
          + f"; {_timing(agreement)}.")
    events.progress(1.0, "done")
    return {"OUTPUT": output, "AGREEMENT": agreement["label_agreement"], "SPEEDUP": agreement["speedup"],
            "pixels_compared": agreement["pixels"], "calibration_chips": len(calib_x), "check_chips": len(check),
            "float_nodes": excluded, "SECONDS": round(seconds, 3), "speedup_timed": _timed(agreement)}


def _warn_few_chips(calibration: int, check: int, spec, events) -> None:
    """Too few calibration chips give activation ranges that miss what the scene holds (clipped in int8); too
    few check chips, an agreement that says little about the map. Say so, with the count advised."""
    advised = f"at least {FEW_CHIPS}, {DEFAULT_CALIBRATION_CHIPS} advised"
    if calibration < FEW_CHIPS:
        have = len(spec.split("train") or spec.chips)
        cause = f" (the dataset has only {have} training chips)" if calibration >= have else ""
        events.warning(f"Only {calibration} calibration chip(s){cause}: the int8 activation ranges come from "
                       f"them, and values beyond what they hold are clipped on the map. Calibrate on more chips "
                       f"({advised}), or export more chips from the training image.")
    if check < FEW_CHIPS:
        events.warning(f"Only {check} validation chip(s) to compare labels on: the agreement below is too rough to "
                       f"trust ({advised}); compare on more chips before relying on it.")


def _timed(agreement: dict) -> bool:
    return min(agreement["float_seconds"], agreement["int8_seconds"]) >= TIMED_SECONDS


def _timing(agreement: dict) -> str:
    """Each model's time on the check chips, in ms under a second; the speed-up only from times long enough."""
    def text(seconds):
        return f"{seconds:.2f} s" if seconds >= 1 else f"{1000 * seconds:.1f} ms"

    times = f"model time {text(agreement['float_seconds'])} float, {text(agreement['int8_seconds'])} int8"
    if _timed(agreement):
        return f"{times} ({agreement['speedup']:.2f}x)"
    return f"{times} (too short to time a speed-up: compare on more validation chips)"


def _output_path(options) -> str:
    output = os.path.abspath(os.fspath(options.output))
    if os.path.splitext(output)[1].lower() != ".onnx":
        raise BadInputError(f"The quantised model {output} must be an ONNX file: give a path ending in .onnx.")
    if os.path.exists(options.model) and os.path.exists(output) and os.path.samefile(output, options.model):
        raise BadInputError(f"The output {output} is the model to quantise: choose another path (the float "
                            f"model is kept).")
    if os.path.isdir(output):
        raise BadInputError(f"The output {output} is a folder: give a file path ending in .onnx.")
    if os.path.exists(output) and not options.overwrite:
        raise BadInputError(f"The output {output} already exists: choose another path, or allow overwriting "
                            f"(--overwrite; Processing always overwrites the file you chose).")
    _check_writable(os.path.dirname(output))
    return output


def _check_writable(folder: str) -> None:
    """Create the output's folder if missing (as Classify and Train do) and try writing a file there, so that a
    folder that cannot be written is named before minutes of calibrating, not after."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise BadInputError(f"Cannot write the quantised model into {folder}: {write_failure(exc, folder)}. Choose a "
                            f"folder you can write to.") from exc


def _split_chips(spec, calibration_count: int, check_count: int) -> tuple:
    """Calibration chips from the training split, check chips from the validation split (else the training
    chips not used to calibrate), each evenly spread over its split."""
    if calibration_count < 1 or check_count < 1:
        raise BadInputError("Give at least 1 calibration chip and 1 check chip.")
    train, val = spec.split("train") or spec.chips, spec.split("val")
    calibration = _spread(train, calibration_count)
    rest = val or [c for c in spec.chips if c not in calibration] or calibration
    return calibration, _spread(rest, check_count)


def _spread(chips: list, count: int) -> list:
    if len(chips) <= count:
        return list(chips)
    return [chips[int(i)] for i in np.linspace(0, len(chips) - 1, count).round()]


def _standardised(chips, spec, model) -> tuple:
    """(n, bands, tile, tile) float32 standardised with the model's card, invalid pixels 0, chips placed in the
    top-left of a model tile (cut when bigger); and (n, tile, tile) validity."""
    tile = model.tile
    mean = np.asarray(model.card["mean"], np.float32)[:, None, None]
    inv_std = (1.0 / np.asarray(model.card["std"], np.float32))[:, None, None]
    x = np.zeros((len(chips), model.bands, tile, tile), np.float32)
    valid = np.zeros((len(chips), tile, tile), bool)
    for index, chip in enumerate(chips):
        with open_raster(chip.image, "image chip", "Export the chips again.") as dataset:
            data = read(dataset)[:, :tile, :tile]
        rows, cols = data.shape[1:]
        ok = valid_mask(data, spec.nodata)
        part = x[index, :, :rows, :cols]
        np.subtract(data, mean, out=part, casting="unsafe")
        part *= inv_std
        part[:, ~ok] = 0.0
        valid[index, :rows, :cols] = ok
    return x, valid


class _Reader:
    """onnxruntime's CalibrationDataReader protocol: one chip a call (or the model's fixed batch), then None."""

    def __init__(self, input_name: str, x: np.ndarray, fixed_batch: int = None):
        size = fixed_batch or 1
        self.items = iter([{input_name: _padded(x[i:i + size], size)} for i in range(0, len(x), size)])

    def get_next(self):
        return next(self.items, None)


def _write_fast_float(onnx, source: str, target: str) -> dict:
    """The float graph to quantise, with the rewrites of :mod:`.fast_graph` and :mod:`.int8_graph`; returns
    how many nodes each rewrote."""
    from .fast_graph import speed_up_graph
    from .int8_graph import upsampling_as_pixel_shuffle

    proto = onnx.load(source)
    rewrites = {"Softmax": speed_up_graph(proto)["Softmax"],
                "ConvTranspose as pixel shuffle": upsampling_as_pixel_shuffle(proto)}
    onnx.save(proto, target)
    return rewrites


def _after_quantising(onnx, path: str) -> dict:
    """The rewrites of the quantised graph (:mod:`.int8_graph`), and how many Concat inputs it copies
    (:mod:`.int8_ranges`)."""
    from .int8_graph import pads_on_quantised_tensors, shapes_of_quantised_tensors
    from .int8_ranges import concat_copies

    proto = onnx.load(path)
    done = {"Pad on uint8": pads_on_quantised_tensors(proto), "Shape of uint8": shapes_of_quantised_tensors(proto)}
    if any(done.values()):
        onnx.save(proto, path)
    copies, inputs = concat_copies(proto)
    done["Concat inputs copied"] = f"{copies} of {inputs}"
    return done


def _pre_process(source: str, target: str, events) -> None:
    """onnxruntime's recommended pre-processing; a model it cannot handle is quantised as it is."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(source, target, skip_symbolic_shape=True)  # it would leave files in the working folder
    except Exception as exc:  # noqa: BLE001 - optional step: its failure must not stop the quantisation
        events.warning(f"onnxruntime's pre-processing failed ({type(exc).__name__}: {str(exc)[:200]}): "
                       f"quantising the graph as it is.")
        shutil.copyfile(source, target)


def _float_nodes(proto) -> list:
    """Nodes left in float: those computing the class probabilities."""
    from .fast_graph import softmax_node_names

    return softmax_node_names(proto)


def _agreement(model, int8_session, x: np.ndarray, valid: np.ndarray) -> dict:
    """Share of valid pixels where the float and int8 models choose the same class, and each one's time."""
    same = total = 0
    seconds = {"float": 0.0, "int8": 0.0}
    step = model.fixed_batch or BATCH  # a model exported with a fixed batch takes that many chips a run
    for start in range(0, len(x), step):
        ok = valid[start:start + step]
        batch = _padded(x[start:start + step], step if model.fixed_batch else len(ok))
        labels = {}
        for name, session in (("float", model.session), ("int8", int8_session)):
            tick = time.perf_counter()
            probs = session.run([model.output_name], {model.input_name: batch})[0]  # the classified output
            seconds[name] += time.perf_counter() - tick
            labels[name] = probs[:len(ok)].argmax(axis=1)
        same += int((labels["float"] == labels["int8"])[ok].sum())
        total += int(ok.sum())
    if total == 0:
        raise BadInputError("The check chips hold no valid pixel (all nodata): the label agreement cannot be "
                            "measured. Check the chip dataset.")
    return {"label_agreement": round(same / total, 5), "pixels": total,
            "float_seconds": round(seconds["float"], 5), "int8_seconds": round(seconds["int8"], 5),
            "speedup": round(seconds["float"] / max(seconds["int8"], 1e-9), 3)}


def _padded(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` with zero chips added up to ``size`` (a fixed-batch model's last run)."""
    if len(x) >= size:
        return x
    return np.concatenate([x, np.zeros((size - len(x),) + x.shape[1:], x.dtype)])


def _write_with_metadata(onnx, quantised: str, output: str, source: str, card: dict) -> None:
    """The int8 graph with the original model's metadata and the card marked quantised (a foreign model gets
    one); written under a temporary name, then renamed (a full disk leaves nothing behind and says so)."""
    proto = onnx.load(quantised)
    props = {p.key: p.value for p in onnx.load(source, load_external_data=False).metadata_props}
    props[CARD_KEY] = json.dumps(card)  # the other keys (Deepness's) stay as they were
    del proto.metadata_props[:]
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    with file_in_place(output, "the quantised model ", ".onnx") as partial:
        onnx.save(proto, partial)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
