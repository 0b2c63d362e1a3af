"""The int8 graph rewrites on the trainer's own U-Net (transposed-conv upsampling, edge pads at the deep levels,
the upsampling's shape, the decoder's concatenation ranges): each leaves the model's outputs as they were, or
within the quantisation's own error, and takes float islands and layout changes out of the quantised graph."""
import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

from landcover_plugin.core.model.int8_graph import (
    pads_on_quantised_tensors,
    shapes_of_quantised_tensors,
    upsampling_as_pixel_shuffle,
)
from landcover_plugin.core.model.int8_ranges import concat_copies, concat_range_overrides
from training.export_onnx import OPSET
from training.networks import build_network

BANDS, CLASSES, TILE = 4, 5, 64


def run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def ops(path) -> list:
    return [node.op_type for node in onnx.load(str(path)).graph.node]


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    """The trainer's U-Net (base width 8, random weights, batch norm statistics made non-trivial), exported
    with dynamic height and width as the trainer does; and chips to run it on."""
    torch.manual_seed(0)
    net = build_network("unet", BANDS, CLASSES, base_width=8)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    net.eval()
    path = tmp_path_factory.mktemp("int8_graph") / "unet.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's notices, as the trainer's exporter does
        torch.onnx.export(net, torch.zeros(1, BANDS, TILE, TILE), str(path), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "n", 2: "h", 3: "w"}},
                          opset_version=OPSET, dynamo=False)
    x = np.random.default_rng(0).normal(size=(6, BANDS, TILE, TILE)).astype(np.float32)
    return path, x


def quantise(float_path, int8_path, x, **extra):
    class Reader:
        def __init__(self):
            self.items = iter([{"image": x[i:i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(float_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax, **extra)
    return onnx.load(str(int8_path))


@pytest.fixture(scope="module")
def rewritten(unet, tmp_path_factory):
    """The U-Net with its upsampling rewritten, and its plain int8 copy."""
    path, x = unet
    model = onnx.load(str(path))
    upsampling_as_pixel_shuffle(model)
    folder = tmp_path_factory.mktemp("int8_rewritten")
    float_path = folder / "float.onnx"
    onnx.save(model, str(float_path))
    quantise(float_path, folder / "int8.onnx", x)
    return float_path, folder / "int8.onnx", folder


def optimised_ops(model, folder) -> list:
    """The operators onnxruntime runs for ``model`` on the CPU, after all its graph optimisations."""
    source, optimised = folder / "to_optimise.onnx", folder / "optimised.onnx"
    onnx.save(model, str(source))
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(optimised)
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return ops(optimised)


def test_transposed_convolutions_become_pixel_shuffles_with_the_same_outputs(unet, tmp_path):
    path, x = unet
    model = onnx.load(str(path))
    before = sum(node.op_type == "ConvTranspose" for node in model.graph.node)
    assert before == 4  # the U-Net's four upsampling steps (depth 4)
    assert upsampling_as_pixel_shuffle(model) == before
    rewritten = tmp_path / "rewritten.onnx"
    onnx.save(model, str(rewritten))
    shuffles = [n for n in onnx.load(str(rewritten)).graph.node if n.op_type == "Transpose"
                and list(onnx.helper.get_attribute_value(n.attribute[0])) == [0, 1, 3, 2, 4, 5]]
    assert "ConvTranspose" not in ops(rewritten) and len(shuffles) == before
    unused = {init.name for init in model.graph.initializer} - {i for n in model.graph.node for i in n.input}
    assert not unused, f"the transposed convolutions' weights stayed: {unused}"
    wide = np.random.default_rng(1).normal(size=(1, BANDS, 96, 128)).astype(np.float32)  # other tile sizes too
    for data in (x, wide):
        np.testing.assert_allclose(run(rewritten, data), run(path, data), rtol=1e-5, atol=1e-5)


def test_only_kernel_equal_to_stride_transposed_convolutions_are_rewritten():
    net = torch.nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1).eval()  # overlapping kernels: not a reshuffle
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, 8, 8), buffer, opset_version=OPSET, dynamo=False)
    model = onnx.load_from_string(buffer.getvalue())
    assert upsampling_as_pixel_shuffle(model) == 0
    assert [node.op_type for node in model.graph.node] == ["ConvTranspose"]


def test_edge_pads_run_on_the_quantised_tensors_with_the_same_outputs(unet, rewritten, tmp_path):
    x = unet[1]
    int8_path = rewritten[2] / "int8.onnx"
    int8 = onnx.load(str(int8_path))
    pads = sum(node.op_type == "Pad" for node in int8.graph.node)
    assert pads >= 4  # edge padding before each convolution of the deep levels
    assert pads_on_quantised_tensors(int8) == pads
    fused_path = tmp_path / "int8_pads.onnx"
    onnx.save(int8, str(fused_path))
    producers = {out: node.op_type for node in int8.graph.node for out in node.output}
    for node in int8.graph.node:
        if node.op_type == "Pad" and node.name.endswith("_quantised"):
            assert producers[node.input[0]] == "QuantizeLinear"
    np.testing.assert_array_equal(run(fused_path, x), run(int8_path, x))  # a uint8 edge pad is exact


def test_the_upsampling_reads_its_shape_from_the_uint8_tensor_and_the_decoder_stays_channels_last(
        unet, rewritten, tmp_path):
    x = unet[1]
    int8 = onnx.load(str(rewritten[2] / "int8.onnx"))
    plain_path = tmp_path / "plain.onnx"
    onnx.save(int8, str(plain_path))
    pads_on_quantised_tensors(int8)
    assert shapes_of_quantised_tensors(int8) == 4  # one Shape per upsampling
    producers = {out: node.op_type for node in int8.graph.node for out in node.output}
    assert all(producers[n.input[0]] != "DequantizeLinear" for n in int8.graph.node if n.op_type == "Shape")
    done_path = tmp_path / "done.onnx"
    onnx.save(int8, str(done_path))
    np.testing.assert_array_equal(run(done_path, x), run(plain_path, x))
    # onnxruntime runs the int8 convolutions channels last: the only layout changes left are the input's, the
    # output's and the four shuffles themselves (a DepthToSpace pinned two more around every decoder level)
    optimised = optimised_ops(int8, tmp_path)
    assert "DepthToSpace" not in optimised and "ConvTranspose" not in optimised
    assert optimised.count("Transpose") == 2 + 4


def test_concatenation_inputs_share_its_range_except_a_relu_floor(unet, rewritten, tmp_path):
    x = unet[1]
    float_path, _, folder = rewritten
    first = onnx.load(str(folder / "int8.onnx"))
    assert concat_copies(first)[0] < 6
    overrides = concat_range_overrides(first)
    second = quantise(float_path, tmp_path / "shared.onnx", x, extra_options={"TensorQuantOverrides": overrides})
    # each decoder level: the upsampled features (no Relu) are copied, the skip (after a Relu) is not; the pixel
    # branch and the decoder output (both after a Relu) are both copied
    assert concat_copies(second) == (4 + 2, 10)
    float_labels = run(float_path, x).argmax(1)
    for model in (first, second):
        path = tmp_path / "check.onnx"
        onnx.save(model, str(path))
        assert (run(path, x).argmax(1) == float_labels).mean() > 0.97
