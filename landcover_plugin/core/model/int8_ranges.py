"""Calibrated ranges shared across a ``Concat``, so that onnxruntime's ``QLinearConcat`` copies instead of
requantising.

``QLinearConcat`` copies an input whose scale and zero point are the output's and requantises every other one
element by element through a lookup table. With each tensor calibrated on its own range, all the U-Net decoder's
concatenations requantised (13 % of the int8 model at 512 px tiles, after the rewrites of :mod:`.int8_graph`).
:func:`concat_range_overrides` reads the ranges of a first quantisation and returns onnxruntime's
``TensorQuantOverrides`` that give each input its concatenation's range (the union of its inputs'), and with it
every tensor that input is only a reshuffle of (``Transpose``, ``Reshape``: the same values). A second
quantisation with them makes those inputs copies.

One input is left on its own range: one that starts at 0 where the union goes below 0. The quantiser drops a
``Relu`` whose output range starts at 0 (the uint8 floor clips instead), so a wider range would let negative
values through. In the U-Net that is the encoder's skip connection (after a ``Relu``) beside the upsampled
decoder features (no ``Relu``): the decoder side becomes a copy, the skip side keeps its lookup table.
"""
import numpy as np
from onnx import numpy_helper

from .int8_graph import same_quantisation

RESHUFFLES = ("Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "DepthToSpace", "SpaceToDepth")


def concat_range_overrides(model) -> dict:
    """``TensorQuantOverrides`` (float tensor name -> ``[{"rmin", "rmax"}]``) for the float model that ``model``,
    a QDQ graph with per-tensor uint8 activations, was quantised from; empty when no ``Concat`` qualifies."""
    graph = model.graph
    constants, producer, quantised_by = _indexes(graph)

    def source(name):
        """The QuantizeLinear whose dequantised output is ``name``, or None."""
        dequantise = producer.get(name)
        if dequantise is None or dequantise.op_type != "DequantizeLinear":
            return None
        quantise = producer.get(dequantise.input[0])
        return quantise if quantise is not None and quantise.op_type == "QuantizeLinear" else None

    overrides = {}
    for node in graph.node:
        inputs = [source(name) for name in node.input] if node.op_type == "Concat" else []
        output = quantised_by.get(node.output[0]) if inputs else None
        if output is None or any(q is None for q in inputs):
            continue
        ranges = [_range(q, constants) for q in inputs + [output]]
        if any(r is None for r in ranges):
            continue
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
        for quantise, (own_low, _) in zip(inputs, ranges):
            if own_low >= 0 > low:
                continue  # a Relu's output: its floor at 0 is part of the model
            for name in _reshuffled_from(quantise.input[0], producer, source):
                overrides[name] = [{"rmin": np.float32(low), "rmax": np.float32(high)}]
        overrides[node.output[0]] = [{"rmin": np.float32(low), "rmax": np.float32(high)}]
    return overrides


def _range(quantise, constants):
    """The real range a per-tensor uint8 QuantizeLinear covers, or None for anything else."""
    if len(quantise.input) < 3 or quantise.input[1] not in constants or quantise.input[2] not in constants:
        return None
    scale, zero = constants[quantise.input[1]], constants[quantise.input[2]]
    if scale.size != 1 or zero.dtype != np.uint8:
        return None
    scale, zero = float(scale.reshape(())), int(zero.reshape(()))
    return (0 - zero) * scale, (255 - zero) * scale


def _reshuffled_from(name: str, producer: dict, source) -> list:
    """``name`` and the float tensors it is a reshuffle of, back through quantise/dequantise pairs."""
    names = [name]
    node = producer.get(name)
    while node is not None and node.op_type in RESHUFFLES:
        quantise = source(node.input[0])
        if quantise is None:
            break
        names.append(quantise.input[0])
        node = producer.get(quantise.input[0])
    return names


def concat_copies(model) -> tuple:
    """``(inputs quantised as their Concat's output, all inputs)`` over the quantised Concats of a QDQ graph:
    onnxruntime copies the first kind and requantises the others."""
    graph = model.graph
    constants, producer, quantised_by = _indexes(graph)
    copies = total = 0
    for node in graph.node:
        output = quantised_by.get(node.output[0]) if node.op_type == "Concat" else None
        dequantisers = [producer.get(name) for name in node.input]
        if output is None or any(d is None or d.op_type != "DequantizeLinear" for d in dequantisers):
            continue
        total += len(dequantisers)
        copies += sum(same_quantisation(dequantise, output, constants) for dequantise in dequantisers)
    return copies, total


def _indexes(graph) -> tuple:
    """The graph's constants by name, each tensor's producing node, and the QuantizeLinear reading each tensor."""
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    quantised_by = {node.input[0]: node for node in graph.node if node.op_type == "QuantizeLinear"}
    return constants, producer, quantised_by
