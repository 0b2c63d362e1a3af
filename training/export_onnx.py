"""Export a trained network as the self-describing ONNX model of DESIGN.md, then prove it matches torch.

Input ``input``: float32 NCHW, dynamic batch; dynamic height and width when the tile size is a multiple of the
net's stride multiple (the classifier may then run tiles of any multiple of the tile size, ``tile_size``
stays the training tile for Deepness and the card), else static H = W = tile size. Output ``output``:
softmax probabilities (N, K, H, W). ``metadata_props``: the Deepness keys plus ``landcover_card``. The graph's
class Softmax is written in a form onnxruntime runs 20x faster (:mod:`fast_graph`). The file is written under
a temporary name and renamed only after onnxruntime reproduced torch's output (at the tile size and, for a
dynamic model, at twice it).
"""
import copy
import json
import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from landcover_plugin.core.errors import LandcoverError
from landcover_plugin.core.model.card import CARD_KEY, metadata_props
from landcover_plugin.core.model.fast_graph import speed_up_graph
from landcover_plugin.core.output_folder import partial_path as hidden_partial

OPSET = 17
TOLERANCE = 1e-4  # on probabilities


class ProbabilityModel(nn.Module):
    """The network with softmax inside the graph."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.softmax(self.net(x), dim=1)


def export(net: nn.Module, path, *, card: dict, tile_size: int, band_count: int, sample=None,
           in_place: bool = True) -> dict:
    """Write ``path`` (.onnx); return ``{"path", "max_abs_diff", "verify_batch"}``.

    ``sample`` is an optional float32 (N, C, tile, tile) batch of real standardised chips for the check;
    random standard-normal tiles are used otherwise. ``in_place=False``: the checked model stays under its hidden
    temporary name (:func:`partial_path`), returned as ``path``, for the caller to rename once what goes with it
    is written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = ProbabilityModel(copy.deepcopy(net).float().cpu()).eval()
    tmp, done = partial_path(path), False
    dynamic = tile_size % int(getattr(net, "multiple", 1)) == 0
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic else {0: "batch"}
    try:
        dummy = torch.zeros(1, band_count, tile_size, tile_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (dummy,), str(tmp), input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": axes, "output": axes},
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(tmp))
        speed_up_graph(proto)
        del proto.metadata_props[:]
        for key, value in metadata_props(card).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name = "landcover-trainer"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        if sample is None or tuple(sample.shape[1:]) != (band_count, tile_size, tile_size):
            sample = np.random.default_rng(0).standard_normal((2, band_count, tile_size, tile_size))
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        diff = max_abs_diff(tmp, model, sample)
        if dynamic:  # the graph must hold no size fixed at export: check a tile twice as big too
            big = np.random.default_rng(1).standard_normal((1, band_count, 2 * tile_size, 2 * tile_size))
            diff = max(diff, max_abs_diff(tmp, model, big.astype(np.float32)))
        if not diff <= TOLERANCE:
            raise LandcoverError(f"The exported ONNX model does not reproduce the trained network "
                                 f"(max abs difference {diff:.2e} in probabilities). Please report this bug; "
                                 f"the checkpoint in the checkpoints folder still holds the weights.")
        if in_place:
            os.replace(tmp, path)
        done = True
    finally:
        if tmp.exists() and (in_place or not done):
            tmp.unlink()
    return {"path": str(path if in_place else tmp), "max_abs_diff": diff, "verify_batch": int(sample.shape[0]),
            "dynamic_size": dynamic}


def max_abs_diff(onnx_path, model: nn.Module, sample: np.ndarray) -> float:
    """Largest absolute difference between onnxruntime's and torch's probabilities on ``sample``."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    ours = session.run(["output"], {"input": sample})[0]
    with torch.no_grad():
        reference = model(torch.from_numpy(sample)).numpy()
    if ours.shape != reference.shape:
        raise LandcoverError(f"The exported ONNX model gives shape {ours.shape}, torch {reference.shape}. "
                             f"Please report this bug.")
    return float(np.abs(ours - reference).max())


def set_card_entry(path, key: str, value) -> None:
    """Add ``key: value`` to the model card of the ONNX file at ``path`` (rewritten under a temporary name, then
    renamed); the weights and the Deepness keys stay as they are."""
    path = Path(path)
    proto = onnx.load(str(path))
    entry = next(prop for prop in proto.metadata_props if prop.key == CARD_KEY)
    card = json.loads(entry.value)
    card[key] = value
    entry.value = json.dumps(card)
    tmp = partial_path(path)
    try:
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def partial_path(path: Path) -> Path:
    """Where the model is written before it is renamed into place: hidden (a run killed in between leaves no file
    that the model pickers list) and this process's own (two runs into one model never share it)."""
    return Path(hidden_partial(path, ".onnx"))
