"""Loading, checking and running an ONNX segmentation model with onnxruntime.

DESIGN.md, "Model": one float32 NCHW input with a static tile size (or dynamic height and width: then
``tile`` is the card's tile size and ``dynamic_size`` is set) and a dynamic batch; one output of class
probabilities (N, K, H, W). Our models carry a ``landcover_card``; Deepness models carry Deepness keys;
models made elsewhere may carry nothing, and then the user gives class names and normalisation
(``overrides``). What was guessed is reported, never hidden.

The session is tuned on purpose: execution providers chosen by device (CUDA first with CPU fallback, and the
fallback is logged), a fixed number of intra-op threads, full graph optimisation (on the CPU optimised once per
machine and kept: :mod:`.optimised_graphs`), sequential execution within a run, no memory pattern on the CPU
(:func:`session_options`). On the CPU the classifier runs
``streams`` batches at once, each on its share of the threads (:func:`cpu_streams`): measured on 2 cores, two one-
thread runs at once take 0.79-0.97x the time of one two-thread run after another over the same tiles (trainer's
U-Net on 512 px tiles 0.89x, on 64 px tiles 0.80x; ResNet-34 U-Net on 256 px tiles 0.97x): a run splits each
operator between the threads and waits for the slower half, which two whole runs side by side never do.
"""
import math
import os
from dataclasses import dataclass, field

import numpy as np
import onnxruntime as ort

from ..errors import BadInputError
from ..events import Events, RecordingEvents
from ..gpu import classify_gpu_unused
from ..options import DEVICES
from ..schema import MAX_CLASS_ID
from .card import CARD_KEY, card_from_metadata
from .mappable import mappable_channels
from .optimised_graphs import optimised_session

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
DEFAULT_TILE = 512
SHRINK_TILE = 64  # the tiny tile of OnnxModel.give_back_memory's run (or the largest divisor of the model's tile)


@dataclass
class OnnxModel:
    """A checked, ready-to-run model and the card that describes it."""

    path: str
    session: ort.InferenceSession
    input_name: str
    output_name: str
    input_dtype: type
    card: dict
    tile: int
    bands: int
    assumptions: list = field(default_factory=list)
    providers: list = field(default_factory=list)
    threads: int = 1  # onnxruntime threads in all (each of the streams runs threads // streams)
    fixed_batch: int = None  # the batch size the model's input requires, when it is not dynamic
    dynamic_size: bool = False  # the input takes any height and width (the classifier may run bigger tiles)
    streams: int = 1  # runs the session is made for at once, each on threads // streams intra-op threads
    _mappable: list = field(default=None, repr=False)

    @property
    def classes(self) -> list:
        return self.card["classes"]

    @property
    def mappable_channels(self) -> list:
        """The output channels of the classes the model can map: all but those its trainer shut for lack of
        training pixels (:mod:`.mappable`; read once, when first asked)."""
        if self._mappable is None:
            self._mappable = mappable_channels(self.card, self.path)
        return self._mappable

    @property
    def uses_cuda(self) -> bool:
        return CUDA in self.providers

    def close(self) -> None:
        """Drop the session; the model runs no more. onnxruntime's outputs are views of the session's memory:
        the session (and its memory) is freed with the last of them, under the GIL. :meth:`give_back_memory`
        first frees most of it without."""
        self.session = None

    def give_back_memory(self) -> bool:
        """Hand the CPU memory arena's free memory back to the system now, with the GIL released; True if done.

        The arena keeps what the biggest runs needed (hundreds of MB for 512 px tiles): freeing it takes 25-40 ms,
        and freed with the session it holds the GIL that long. onnxruntime shrinks its arenas at the end of a run
        asked to (``memory.enable_memory_arena_shrinkage``): a run on a tiny tile does that, in 1 ms more. Only
        for models of any tile size on the CPU (a fixed-size model would need a whole tile); a model that
        refuses the tiny tile just keeps its memory until :meth:`close`."""
        if self.session is None or not self.dynamic_size or self.uses_cuda:
            return False
        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        size, batch = math.gcd(self.tile, SHRINK_TILE), self.fixed_batch or 1
        tiny = np.zeros((batch, self.bands, size, size), dtype=self.input_dtype)
        try:
            out_type = _FLOAT_TYPES[self.session.get_outputs()[0].type]
            # the output outside the arena: one in it would keep its whole region
            out = np.empty((batch, len(self.classes), size, size), dtype=out_type)
            binding = self.session.io_binding()
            binding.bind_cpu_input(self.input_name, tiny)
            binding.bind_output(self.output_name, "cpu", 0, out_type, list(out.shape), out.ctypes.data)
            self.session.run_with_iobinding(binding, options)
        except Exception:  # noqa: BLE001 - onnxruntime raises several types; the memory is freed on close
            return False
        return True

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, T, T) float32 -> (N, K, T, T) float32 probabilities as the model gives them."""
        if batch.dtype != self.input_dtype:
            batch = batch.astype(self.input_dtype)
        size = self.fixed_batch
        if size is None or len(batch) == size:
            out = self.session.run([self.output_name], {self.input_name: batch})[0]
        else:  # a model exported with a fixed batch: feed it that many tiles at a time, padding the last run
            parts = []
            for start in range(0, len(batch), size):
                part = batch[start:start + size]
                if len(part) < size:
                    part = np.concatenate([part, np.zeros((size - len(part),) + part.shape[1:], part.dtype)])
                parts.append(self.session.run([self.output_name], {self.input_name: part})[0])
            out = np.concatenate(parts)[:len(batch)]
        return out if out.dtype == np.float32 else out.astype(np.float32)


def choose_providers(device: str, events: Events) -> list:
    """Execution providers for ``device`` (auto, cpu, cuda); CUDA falls back to the CPU with a warning."""
    device = (device or "auto").lower()
    if device not in DEVICES:
        raise BadInputError(f"Device '{device}' is not one of {', '.join(DEVICES)}.")
    available = ort.get_available_providers()
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        events.warning(f"CUDA was asked for but this onnxruntime ({ort.__version__}) has no CUDA execution "
                       f"provider (it has {', '.join(available)}): running on the CPU. Install "
                       f"onnxruntime-gpu with 'Set up engine environment' to use the GPU.")
    else:  # auto: the CPU, but not silently where an NVIDIA GPU goes unused
        unused = classify_gpu_unused(available, ort.__version__)
        if unused:
            events.warning(unused)
    return [CPU]


def default_threads() -> int:
    """Intra-op threads: every core on small machines; one core left to reading and writing from 4 cores."""
    cpus = usable_cpus()
    return cpus if cpus < 4 else cpus - 1


def cpu_streams(threads: int) -> int:
    """Batches to run at once on the CPU with ``threads`` threads in all: two from two threads up."""
    return 2 if threads >= 2 else 1


def threads_each(threads: int, streams: int) -> int:
    """Intra-op threads of each of ``streams`` runs at once sharing ``threads`` in all (at least one)."""
    return max(1, threads // streams)


def session_options(threads: int = None, providers: list = None) -> ort.SessionOptions:
    """Options for throughput on one batch at a time: all graph optimisations, fixed intra-op threads; on the
    CPU alone (``providers`` [CPU]) no memory pattern.

    onnxruntime's memory pattern records a run's allocations and, from the second run of a shape on, takes them
    as one block: a block beside the arena chunks the first run left, so the session's first runs fault in that
    memory twice over. Measured on 2 cores (trainer's U-Net base width 16, Zion, 512 px tiles, two runs at once):
    peak RSS of a classify 414-456 MB without against 538-569 MB with (ResNet-34 U-Net, 256 px tiles: 353-359
    against 405-411 MB); whole run within a warm process 0.897 s against 0.944 s (9 alternated rounds; 15 rounds
    0.928 against 0.964 s), on a 25 Mpx GeoTIFF 13.15 against 13.02 s (3 rounds, within the noise). Left as
    onnxruntime has it on CUDA, where nothing was measured."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = int(threads) if threads else default_threads()
    options.inter_op_num_threads = 1
    if providers is not None and list(providers) == [CPU]:
        options.enable_mem_pattern = False
    # Idle ORT threads must not spin: our reader and writer threads need those cores between batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


def usable_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def create_session(path: str, device: str = "auto", threads: int = None, events: Events = None,
                   providers: list = None):
    """An InferenceSession for ``path``; BadInputError when the file is not a loadable ONNX model."""
    events = events or RecordingEvents()
    if not os.path.isfile(path):
        raise BadInputError(f"The model file {path} does not exist. Choose the .onnx file written by "
                            f"'Train segmentation model' or another ONNX segmentation model.")
    providers = providers or choose_providers(device, events)
    try:
        session = optimised_session(path, session_options(threads, providers), providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types for bad files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadInputError(f"{path} is not a usable ONNX model: onnxruntime cannot load it ({first_line[:300]}). "
                            f"Choose an .onnx model file (export it again if it is damaged).") from exc
    used = session.get_providers()
    if CUDA in providers and CUDA not in used:
        events.warning(f"The CUDA execution provider failed to start (CUDA or cuDNN libraries missing or "
                       f"incompatible): running on the CPU with {', '.join(used)}.")
    return session


def load_model(path, *, device: str = "auto", threads: int = None, overrides: dict = None,
               events: Events = None, streams: int = 1) -> OnnxModel:
    """Load, check and describe a segmentation model; reports the device and what was assumed. ``threads``: in
    all; ``streams``: runs the caller makes at once on the CPU (0: :func:`cpu_streams`), each on an equal share
    of the threads (on CUDA one)."""
    events = events or RecordingEvents()
    path = os.fspath(path)
    providers = choose_providers(device, events)
    threads = int(threads) if threads else default_threads()
    asked = int(streams)
    streams = 1 if CUDA in providers else asked or cpu_streams(threads)
    session = create_session(path, device, threads_each(threads, streams), events, providers)
    if not asked and CUDA in providers and CUDA not in session.get_providers() and cpu_streams(threads) > 1:
        streams = cpu_streams(threads)  # CUDA failed to start: the CPU's streams, as if it had been asked for
        session = create_session(path, device, threads_each(threads, streams), events, [CPU])
    model_input = _the_input(path, session)
    output = _the_output(path, session)
    shape = list(model_input.shape)
    _check_channels_first(path, shape)
    _check_output_channels_first(path, shape, list(output.shape))
    _check_square(path, shape)
    fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    props = dict(session.get_modelmeta().custom_metadata_map)
    _check_model_type(path, props)
    channels = output.shape[1] if isinstance(output.shape[1], int) else None
    static_tile = shape[2] if isinstance(shape[2], int) and shape[2] == shape[3] else None
    if channels is None:  # learn the class count from one run on a zero tile
        probe_tile = static_tile or _tile_from_props(props) or DEFAULT_TILE
        probe_bands = shape[1] if isinstance(shape[1], int) else len((overrides or {}).get("mean") or [0, 0, 0])
        probe = np.zeros((fixed_batch or 1, probe_bands, probe_tile, probe_tile), _FLOAT_TYPES[model_input.type])
        channels = int(session.run([output.name], {model_input.name: probe})[0].shape[1])
    _check_class_count(path, channels)
    outputs = session.get_outputs()
    index = [o.name for o in outputs].index(output.name)
    card, assumptions = card_from_metadata(props, shape, channels, overrides, output_index=index)
    if len(outputs) > 1:
        assumptions.append(f"the model has {len(outputs)} outputs ({', '.join(o.name for o in outputs)}): "
                           f"classified with '{output.name}', the first of class scores (N, classes, height, width)")
    _check_normalisation(path, card)
    tile = static_tile or int(card["tile_size"])
    if static_tile is None and CARD_KEY not in props and _tile_from_props(props) is None:
        assumptions.append(f"the model input has no fixed tile size and its metadata names none: used {tile} px")
    _check_spatial_match(path, shape, output.shape)
    bands = int(card["bands"]["count"])
    if isinstance(shape[1], int) and shape[1] != bands:
        raise BadInputError(f"The model card describes {bands} bands but the model input takes {shape[1]}: "
                            f"the model file is inconsistent; give mean/std with one value per input band.")
    model = OnnxModel(path, session, model_input.name, output.name, _FLOAT_TYPES[model_input.type], card, tile,
                      bands, assumptions, session.get_providers(), threads, fixed_batch,
                      dynamic_size=not isinstance(shape[2], int) and not isinstance(shape[3], int), streams=streams)
    where = f"the CPU ({threads} threads)"
    if streams > 1:
        where = (f"the CPU ({threads} threads: {streams} batches at once, {threads_each(threads, streams)} "
                 f"thread(s) each)")
    events.info(f"Model {os.path.basename(path)}: {bands} bands in, {len(card['classes'])} classes out "
                f"({', '.join(c['name'] for c in card['classes'])}), tile {tile} px, running on "
                f"{'CUDA' if model.uses_cuda else where}; providers {', '.join(model.providers)}.")
    for assumption in assumptions:
        events.warning(f"Assumed: {assumption}.")
    return model


def _the_input(path, session):
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise BadInputError(f"{path} has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); a "
                            f"segmentation model takes one image tensor (N, C, H, W).")
    model_input = inputs[0]
    if len(model_input.shape) != 4 or model_input.type not in _FLOAT_TYPES:
        raise BadInputError(f"{path} takes input '{model_input.name}' of shape {model_input.shape} and type "
                            f"{model_input.type}; a segmentation model takes one float tensor (N, C, H, W).")
    return model_input


def _the_output(path, session):
    outputs = session.get_outputs()
    for output in outputs:
        if len(output.shape) == 4 and output.type in _FLOAT_TYPES:
            return output
    found = "; ".join(f"'{o.name}' {o.shape} {o.type}" for o in outputs)
    if any(len(o.shape) in (3, 4) and "int" in o.type for o in outputs):
        raise BadInputError(f"{path} gives class labels already ({found}: an argmax at the end of the model), but "
                            f"the classifier needs the class scores, shape (N, classes, height, width), to blend "
                            f"overlapping tiles and give confidence. Export the model without its final argmax, so "
                            f"that it outputs the logits or softmax probabilities.")
    raise BadInputError(f"{path} has no usable output: it gives {found}, but a segmentation model must give "
                        f"class probabilities of shape (N, classes, height, width). Is it a classifier or a "
                        f"detector rather than a segmentation model?")


def _check_model_type(path, props: dict):
    """Deepness's ``model_type``: only a Segmentor gives class scores per pixel; a Regressor's or Superresolution
    model's 4-D float output would otherwise be read as class scores and mapped as classes without a word."""
    kind = str(props.get("model_type", "")).strip()
    if kind and kind.lower() not in ("segmentor", "segmentation"):
        raise BadInputError(f"{os.path.basename(path)} is a '{kind}' model (its metadata's model_type): the "
                            f"classifier runs segmentation models only (model_type 'Segmentor'), whose outputs are "
                            f"class scores per pixel. Run a {kind} model in the Deepness plugin, or choose a "
                            f"segmentation model.")


def _check_channels_first(path, shape):
    """A channels-last (N, H, W, C) input: a few channels last, a tile-sized axis where the bands belong."""
    height, width, last = shape[1], shape[2], shape[3]
    if isinstance(last, int) and last <= 16 and (not isinstance(height, int) or height > 16) and \
            (not isinstance(width, int) or width > 16) and last != width:
        raise BadInputError(f"{path} takes its input channels last, shape {shape} (N, height, width, bands): the "
                            f"classifier feeds channels first (N, bands, height, width), as DESIGN.md's models "
                            f"do. Export the model with channels first (NCHW), e.g. with a transpose at its input.")


def _check_output_channels_first(path, in_shape, out_shape):
    """An (N, height, width, classes) output: its axes 1 and 2 are the input's height and width."""
    if out_shape[1:3] == in_shape[2:4] and out_shape[3] != in_shape[3] and \
            (not isinstance(out_shape[1], int) or out_shape[1] > 16):
        raise BadInputError(f"{path} gives its classes last, output shape {out_shape} (N, height, width, classes) "
                            f"for input {in_shape}: the classifier reads class scores channels first (N, classes, "
                            f"height, width). Export the model without the final transpose (or add one back to "
                            f"NCHW).")


def _check_square(path, shape):
    """Tiles are square: a fixed height and width must be equal (or both dynamic)."""
    height, width = shape[2], shape[3]
    fixed = [isinstance(v, int) for v in (height, width)]
    if any(fixed) and (not all(fixed) or height != width):
        raise BadInputError(f"{path} takes tiles of {height} x {width} px (input {shape}): the classifier runs "
                            f"square tiles. Export the model with a square input (the same height and width, e.g. "
                            f"256 x 256), or with dynamic height and width.")


def _check_class_count(path, channels: int):
    if channels < 2:
        raise BadInputError(f"{path} gives {channels} output channel: the classifier needs one probability per "
                            f"class, at least two, to choose a class per pixel (a one-channel model is a "
                            f"regression or a sigmoid for one class, and would paint every pixel the same class). "
                            f"Export it with one channel per class, e.g. background and the class.")
    if channels > MAX_CLASS_ID:
        raise BadInputError(f"{path} gives {channels} output channels (classes), but a classified raster holds at "
                            f"most {MAX_CLASS_ID} classes (ids 1..{MAX_CLASS_ID} in one byte, 0 = no data). Use a "
                            f"model with at most {MAX_CLASS_ID} classes.")


def _check_normalisation(path, card: dict):
    """Standard deviations divide every pixel: zero, negative or non-finite ones make the input garbage."""
    bad = [(b + 1, s) for b, s in enumerate(card["std"]) if not np.isfinite(s) or s <= 0]
    if bad:
        shown = ", ".join(f"band {b}: {s:g}" for b, s in bad[:6])
        raise BadInputError(f"The standard deviation must be a positive number for every band, but {shown} "
                            f"(for {os.path.basename(path)}). Give each band's real spread of values (--std, or "
                            f"the model's normalisation); a band whose std is 0 is constant and carries nothing.")
    if not all(np.isfinite(m) for m in card["mean"]):
        raise BadInputError(f"The mean of every band must be a finite number (got {card['mean']}).")


def _check_spatial_match(path, in_shape, out_shape):
    in_hw, out_hw = list(in_shape[2:]), list(out_shape[2:])
    if all(isinstance(v, int) for v in in_hw + out_hw) and in_hw != out_hw:
        raise BadInputError(f"{path} gives output of {out_hw[0]}x{out_hw[1]} px for a {in_hw[0]}x{in_hw[1]} px "
                            f"input tile; the classifier needs one probability per input pixel.")


def _tile_from_props(props: dict):
    for key in ("tile_size", "tiles_size"):
        try:
            size = float(props.get(key, ""))
        except ValueError:
            continue
        if size > 0 and size == int(size):  # '256' or '256.0' (card.py refuses other values, naming the key)
            return int(size)
    return None
