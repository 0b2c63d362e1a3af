"""Graph rewrites that let onnxruntime run more of a quantised segmentation model in int8, channels last.

Profiled op by op, the trainer's U-Net after plain static QDQ quantisation (onnxruntime 1.32, 2 CPU cores,
512 px tiles, model alone: float 69.7 ms, int8 39.5 ms) kept float islands and layout changes:

- **Transposed convolutions** (the decoder's 2x2, stride-2 upsampling) have no int8 kernel: each ran
  dequantise, float ``ConvTranspose``, quantise. A ``ConvTranspose`` whose kernel equals its stride is a 1x1
  convolution to ``stride**2`` times the channels followed by a pixel shuffle (the same sums, in the same order:
  the outputs are identical), and both have uint8 kernels. :func:`upsampling_as_pixel_shuffle` rewrites the float
  graph so before quantising. The shuffle is written channels last (``Transpose`` to NHWC, ``Reshape``,
  ``Transpose``, ``Reshape``, ``Transpose`` back) rather than as ``DepthToSpace``: onnxruntime runs its int8
  convolutions channels last, cancels the outer transposes against its own and carries the layout through the
  decoder's ``Concat`` and ``Pad``, where a ``DepthToSpace`` (NCHW only) cost itself 12 % of the model and
  pinned 12 layout transposes (8 %) around every decoder level. The shuffle's output width comes from a
  ``Shape``; :func:`shapes_of_quantised_tensors` reads it from the uint8 tensor, not from a dequantised copy.
- **Edge padding** (the U-Net's deep levels pad with edge pixels): the quantiser leaves ``Pad`` between a
  dequantise and a quantise of the same scale. Repeating edge (or reflected) values creates no new value, so
  the pad is exact on the uint8 tensor itself; :func:`pads_on_quantised_tensors` rewrites it so after quantising.

What the decoder's ``Concat`` costs is set by the calibration instead (:mod:`.int8_ranges`).
"""
import numpy as np
from onnx import helper, numpy_helper

VALUE_PRESERVING_PADS = (b"edge", b"reflect")


def upsampling_as_pixel_shuffle(model) -> int:
    """Rewrite, in place, every ``ConvTranspose`` whose kernel equals its stride (no padding, dilation, group
    or output padding) as a 1x1 ``Conv`` and a channels-last pixel shuffle; returns how many were rewritten."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    nodes, weights, rewritten = [], set(), 0
    for node in graph.node:
        parts = _as_pixel_shuffle(graph, node, initializers) if node.op_type == "ConvTranspose" else None
        if parts is None:
            nodes.append(node)
            continue
        nodes += parts
        weights.update(node.input[1:])
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused_initializers(graph, weights)
    return rewritten


def _as_pixel_shuffle(graph, node, initializers):
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    bias_name = node.input[2] if len(node.input) > 2 else ""  # "" or absent: no bias
    if node.input[1] not in initializers or (bias_name and bias_name not in initializers):
        return None
    weight = numpy_helper.to_array(initializers[node.input[1]])  # (in, out, kh, kw)
    if weight.ndim != 4 or weight.shape[2] != weight.shape[3]:
        return None
    block = weight.shape[2]
    plain = (attrs.get("strides", [1, 1]) == [block, block] and attrs.get("group", 1) == 1
             and not any(attrs.get("pads", [])) and not any(attrs.get("output_padding", []))
             and all(d == 1 for d in attrs.get("dilations", [1, 1])) and "output_shape" not in attrs
             and attrs.get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID"))
    if not plain or block < 2:
        return None
    cin, cout = weight.shape[:2]
    # The 1x1 convolution's output channel (a*block + b)*cout + c is output channel c at block position (a, b):
    # channels last, (n, h, w, a, b, c) -> (n, h, a, w, b, c) -> (n, h*block, w*block, c).
    pointwise = weight.transpose(2, 3, 1, 0).reshape(cout * block * block, cin, 1, 1)
    bias = numpy_helper.to_array(initializers[bias_name]) if bias_name else np.zeros(cout, weight.dtype)
    stem = (node.name or node.output[0]).strip("/").replace("/", "_") + "_as_pixel_shuffle"

    def name(part: str) -> str:
        return f"{stem}_{part}"

    constants = {"weight": pointwise.astype(weight.dtype), "bias": np.tile(bias, block * block).astype(bias.dtype),
                 "blocks_shape": np.array([0, 0, 0, block, block, -1], np.int64),
                 "batch_rows": np.array([0, -1], np.int64), "channels": np.array([cout], np.int64),
                 "width_from": np.array([3], np.int64), "width_to": np.array([4], np.int64),
                 "block": np.array([block], np.int64)}
    graph.initializer.extend(numpy_helper.from_array(value, name(key)) for key, value in constants.items())
    spread = name("spread")
    return [helper.make_node("Conv", [node.input[0], name("weight"), name("bias")], [spread], name=name("conv"),
                             kernel_shape=[1, 1]),
            helper.make_node("Transpose", [spread], [name("nhwc")], name=name("nhwc"), perm=[0, 2, 3, 1]),
            helper.make_node("Reshape", [name("nhwc"), name("blocks_shape")], [name("blocks")], name=name("blocks")),
            helper.make_node("Transpose", [name("blocks")], [name("shuffled")], name=name("shuffle"),
                             perm=[0, 1, 3, 2, 4, 5]),
            helper.make_node("Shape", [spread], [name("shape")], name=name("shape")),
            helper.make_node("Slice", [name("shape"), name("width_from"), name("width_to")], [name("width")],
                             name=name("width")),
            helper.make_node("Mul", [name("width"), name("block")], [name("out_width")], name=name("out_width")),
            helper.make_node("Concat", [name("batch_rows"), name("out_width"), name("channels")],
                             [name("out_shape")], name=name("out_shape"), axis=0),
            helper.make_node("Reshape", [name("shuffled"), name("out_shape")], [name("up_nhwc")],
                             name=name("up_nhwc")),
            helper.make_node("Transpose", [name("up_nhwc")], [node.output[0]], name=stem, perm=[0, 3, 1, 2])]


def shapes_of_quantised_tensors(model) -> int:
    """Rewrite, in place, each ``Shape`` of a ``DequantizeLinear``'s output as the ``Shape`` of its quantised
    input (the same shape), dropping dequantisations left unused; returns how many were rewritten. Left as it
    is, onnxruntime dequantises a whole activation (in its NCHW layout) only to read its shape."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    rewritten = 0
    for node in graph.node:
        source = producer.get(node.input[0]) if node.op_type == "Shape" else None
        if source is not None and source.op_type == "DequantizeLinear":
            node.input[0] = source.input[0]
            rewritten += 1
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    nodes = [n for n in graph.node if n.op_type != "DequantizeLinear" or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def pads_on_quantised_tensors(model) -> int:
    """Rewrite, in place, each ``DequantizeLinear -> Pad (edge or reflect) -> QuantizeLinear`` whose two
    quantisations are the same into a ``Pad`` of the quantised tensor; returns how many were rewritten."""
    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    replaced, dropped = {}, set()
    for node in graph.node:
        if node.op_type != "Pad":
            continue
        mode = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "mode"), b"constant")
        dequantise, after = producer.get(node.input[0]), consumers.get(node.output[0], [])
        if (mode not in VALUE_PRESERVING_PADS or dequantise is None or dequantise.op_type != "DequantizeLinear"
                or len(after) != 1 or after[0].op_type != "QuantizeLinear" or node.output[0] in outputs
                or not same_quantisation(dequantise, after[0], constants)):
            continue
        quantise = after[0]
        replaced[id(node)] = helper.make_node("Pad", [dequantise.input[0]] + list(node.input[1:]),
                                              [quantise.output[0]], name=node.name + "_quantised",
                                              mode=mode.decode())
        dropped.add(id(quantise))
        if len(consumers[dequantise.output[0]]) == 1 and dequantise.output[0] not in outputs:
            dropped.add(id(dequantise))
    nodes = [replaced.get(id(node), node) for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    return len(replaced)


def same_quantisation(dequantise, quantise, constants) -> bool:
    """Same scale and zero point (constants), on the same axis."""
    if len(dequantise.input) != len(quantise.input) or len(dequantise.input) < 2:
        return False
    axis = [{a.name: helper.get_attribute_value(a) for a in n.attribute}.get("axis", 1)
            for n in (dequantise, quantise)]
    pairs = zip(dequantise.input[1:], quantise.input[1:])
    return axis[0] == axis[1] and all(a in constants and b in constants and constants[a].dtype == constants[b].dtype
                                      and np.array_equal(constants[a], constants[b]) for a, b in pairs)


def _drop_unused_initializers(graph, names: set) -> None:
    """Drop the initializers ``names`` that no node uses any more (none when the graph has subgraphs, which
    could use them unseen here)."""
    if not names or any(a.type in (a.GRAPH, a.GRAPHS) for node in graph.node for a in node.attribute):
        return
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used or init.name not in names]
    del graph.initializer[:]
    graph.initializer.extend(keep)
