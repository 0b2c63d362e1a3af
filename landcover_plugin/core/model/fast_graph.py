"""Rewrite slow ONNX operators of a segmentation model into equivalent fast ones (same outputs, to float rounding).

Measured with onnxruntime 1.32 on 2 CPU cores, the trainer's U-Net (base width 16) on 4 x 256 px tiles:
``Softmax`` over the class axis of an NCHW tensor took 42 ms of 168 ms per batch (onnxruntime moves the
axis last and back); written as ReduceMax, Sub, Exp, ReduceSum, Div it takes 2 ms, in float and int8 models.

Tried and left out: a 2x2 stride-2 ``ConvTranspose`` (no int8 kernel) as a 1x1 convolution and
``DepthToSpace``: the DepthToSpace cost more than the ConvTranspose it replaced (21 ms against 13 ms a batch).

:func:`speed_up_graph` rewrites a ``ModelProto`` in place; the trainer's exporter applies it before it checks
onnxruntime against torch, and :mod:`.quantise` applies it to models exported before it existed.
"""
import numpy as np
import onnx
from onnx import helper, numpy_helper

SOFTMAX_PARTS = ("ReduceMax", "Sub", "Exp", "ReduceSum", "Div")


def speed_up_graph(model: onnx.ModelProto) -> dict:
    """Rewrite ``model``'s graph in place; returns how many nodes of each kind were rewritten."""
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
    nodes, done = [], {"Softmax": 0}
    for node in graph.node:
        if node.op_type == "Softmax" and opset >= 13 and _attributes(node).get("axis", -1) == 1:
            nodes += _softmax_nodes(graph, node, opset)
            done["Softmax"] += 1
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return done


def softmax_node_names(model: onnx.ModelProto) -> list:
    """Names of the nodes that compute class probabilities (a Softmax, or the parts :func:`speed_up_graph`
    wrote): quantising them would round probabilities to 1/255 and make ties. With them, the node that makes the
    softmax's input when it holds the trainer's -1e4 on the logits of classes without a training pixel (an
    ``Add``, or the head ``Conv`` whose bias onnxruntime's pre-processing fused it into): quantised, that range
    would set the int8 step of every logit (about 40: labels agreed with the float model on 57 %)."""
    nodes = [n for n in model.graph.node
             if n.op_type == "Softmax" or (n.op_type in SOFTMAX_PARTS and n.name.endswith(_SUFFIXES))]
    inputs = {n.input[0] for n in nodes if n.op_type in ("Softmax", "ReduceMax")}
    offsets = [n for n in model.graph.node if set(n.output) & inputs and _holds_unseen_offset(model.graph, n)]
    return [n.name for n in offsets + nodes]


def unseen_channels(model: onnx.ModelProto, channels: int) -> list:
    """The output channels (0-based) that the trainer's unseen-class offset shuts (classes without a training
    pixel: probability 0 everywhere), read from the graph; [] when it holds no such offset (every class can be
    mapped). For models exported before their card recorded ``left_out_classes``."""
    offsets = [_unseen_offset(model.graph, n) for n in _softmax_feeders(model)]
    for values in offsets:
        if values is not None and values.size == channels:
            return [int(k) for k in np.flatnonzero(values.ravel() <= UNSEEN_OFFSET)]
    return []


def _softmax_feeders(model: onnx.ModelProto) -> list:
    """The nodes whose output is the class softmax's input (a Softmax's, or the ReduceMax of its fast form)."""
    inputs = {n.input[0] for n in model.graph.node
              if n.op_type == "Softmax" or (n.op_type == "ReduceMax" and n.name.endswith(_SUFFIXES))}
    return [n for n in model.graph.node if set(n.output) & inputs]


def _holds_unseen_offset(graph, node) -> bool:
    """Whether ``node`` adds a constant with the trainer's unseen-class offset (-1e4) to the logits."""
    return _unseen_offset(graph, node) is not None


def _unseen_offset(graph, node):
    """The constant that ``node`` adds to the logits when it holds the trainer's unseen-class offset, else None."""
    if node.op_type not in ("Add", "Conv"):
        return None
    constants = {i.name: i for i in graph.initializer}
    constants.update({n.output[0]: a.t for n in graph.node if n.op_type == "Constant"
                      for a in n.attribute if a.name == "value"})
    inputs = node.input[1:] if node.op_type == "Add" else node.input[2:]  # a Conv's bias
    for name in inputs:
        if name in constants:
            values = numpy_helper.to_array(constants[name])
            if (values <= UNSEEN_OFFSET).any():
                return values
    return None


UNSEEN_OFFSET = -1e3  # the trainer adds -1e4 (training/networks.py, UNSEEN_LOGIT); no real logit or bias is this low
_SUFFIXES = tuple(f"_class_softmax_{part}" for part in SOFTMAX_PARTS)


def _attributes(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _unique(graph, stem: str) -> str:
    taken = {n for node in graph.node for n in list(node.input) + list(node.output)}
    taken |= {init.name for init in graph.initializer}
    name, index = stem, 0
    while name in taken:
        index += 1
        name = f"{stem}_{index}"
    return name


def _axes(graph, name: str) -> str:
    graph.initializer.append(numpy_helper.from_array(np.asarray([1], dtype=np.int64), name))
    return name


def _softmax_nodes(graph, node, opset: int) -> list:
    """exp(x - max_c x) / sum_c exp(x - max_c x) over axis 1, as five element-wise and reduce nodes."""
    x, y = node.input[0], node.output[0]
    stem = _unique(graph, (node.name or "softmax").strip("/").replace("/", "_"))
    name = {part: f"{stem}_class_softmax_{part}" for part in SOFTMAX_PARTS}
    if opset >= 18:
        reduce_max = helper.make_node("ReduceMax", [x, _axes(graph, name["ReduceMax"] + "_axes")],
                                      [name["ReduceMax"] + "_out"], name=name["ReduceMax"], keepdims=1)
    else:
        reduce_max = helper.make_node("ReduceMax", [x], [name["ReduceMax"] + "_out"], name=name["ReduceMax"],
                                      axes=[1], keepdims=1)
    return [reduce_max,
            helper.make_node("Sub", [x, name["ReduceMax"] + "_out"], [name["Sub"] + "_out"], name=name["Sub"]),
            helper.make_node("Exp", [name["Sub"] + "_out"], [name["Exp"] + "_out"], name=name["Exp"]),
            helper.make_node("ReduceSum", [name["Exp"] + "_out", _axes(graph, name["ReduceSum"] + "_axes")],
                             [name["ReduceSum"] + "_out"], name=name["ReduceSum"], keepdims=1),
            helper.make_node("Div", [name["Exp"] + "_out", name["ReduceSum"] + "_out"], [y], name=name["Div"])]
