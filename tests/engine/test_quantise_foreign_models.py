"""Quantise model with models made elsewhere: Deepness metadata only, a fixed batch (as some exporters write),
float16. Both of the last two stopped with onnxruntime's own error after calibrating."""
import copy
import json

import onnx
import pytest
import torch
from classify_models import SceneFirst, band_stats, export_foreign, tiny_net

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.quantise import quantise_model
from landcover_plugin.core.model.quantise_options import QuantiseOptions


@pytest.fixture(scope="module")
def zion(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantise_foreign")
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    export_chips(ChipExportOptions(image, folder / "chips", labels_raster=shared_data / "zion" / "nlcd2011_8class.tif",
                                   chip_size=64, stride=64))
    mean, std = band_stats(image)
    props = {"model_type": "Segmentor", "class_names": json.dumps({str(k): f"class {k}" for k in range(8)}),
             "standardization_mean": json.dumps([m / 255 for m in mean]),
             "standardization_std": json.dumps([s / 255 for s in std]), "tiles_size": "64"}
    return {"folder": folder, "chips": folder / "chips", "props": props, "net": tiny_net(4, 8, seed=5)}


def exported(zion, name, batch=None, dtype=torch.float32):
    """The Deepness-style model, with a dynamic batch (``batch`` None) or that fixed batch."""
    path = zion["folder"] / name
    net = zion["net"] if dtype == torch.float32 else copy.deepcopy(zion["net"]).to(dtype)
    torch.onnx.export(net, torch.zeros(batch or 1, 4, 64, 64, dtype=dtype), str(path), input_names=["x"],
                      output_names=["y"], dynamic_axes=None if batch else {"x": {0: "b"}, "y": {0: "b"}},
                      dynamo=False)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, zion["props"])
    onnx.save(model, str(path))
    return str(path)


def quantise(zion, model, name):
    return quantise_model(QuantiseOptions(model, zion["chips"], zion["folder"] / name, calibration_chips=7,
                                          check_chips=7), RecordingEvents())


@pytest.mark.parametrize("batch", [None, 1, 3])
def test_a_deepness_model_with_any_batch_is_quantised(zion, batch):
    result = quantise(zion, exported(zion, f"batch{batch}.onnx", batch), f"batch{batch}_int8.onnx")
    assert result["AGREEMENT"] > 0.97 and result["pixels_compared"] == 7 * 64 * 64
    int8 = onnx.load(result["OUTPUT"])
    assert {p.key: p.value for p in int8.metadata_props}["class_names"] == zion["props"]["class_names"]
    assert int8.graph.input[0].type.tensor_type.shape.dim[0].dim_value == (batch or 0)


def test_a_float16_model_is_refused_before_calibrating(zion):
    with pytest.raises(BadInputError, match="is a float16 model.*Quantise the float32 model"):
        quantise(zion, exported(zion, "half.onnx", dtype=torch.float16), "half_int8.onnx")
    assert not (zion["folder"] / "half_int8.onnx").exists()


def test_a_model_without_normalisation_is_refused(zion):
    """Its int8 copy used to be calibrated on pixel values / 255 and to carry that guess as its card, which Classify
    then trusted over the analyst's --mean/--std: the copy's map agreed with the float model's on 45 % of Zion."""
    path = export_foreign(zion["net"], zion["folder"] / "bare.onnx")
    with pytest.raises(BadInputError, match="records no normalisation.*standardization_mean and standardization_std"):
        quantise(zion, path, "bare_int8.onnx")
    assert not (zion["folder"] / "bare_int8.onnx").exists()


def test_a_model_of_several_outputs_is_compared_on_the_classified_one(zion):
    """With a per-image output first, the label check took it for the map: IndexError, 'too many indices'."""
    path = export_foreign(SceneFirst(zion["net"]), zion["folder"] / "scene_first.onnx", zion["props"],
                          outputs=("scene", "map"))
    result = quantise(zion, path, "scene_first_int8.onnx")
    assert result["AGREEMENT"] > 0.97 and result["pixels_compared"] == 7 * 64 * 64
