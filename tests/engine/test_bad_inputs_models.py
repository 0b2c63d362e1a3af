"""Probe findings on models (issue 12): fixed batches, one-class or NaN outputs, bad normalisation, and models
whose shape the classifier used to misdescribe (dynamic channel axis, 300 classes, channels last)."""
import numpy as np
import pytest
import rasterio
import torch
from classify_models import band_stats, card_for, export, tiny_net

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import metadata_props

NAMES = ["water", "forest", "shrubland"]


@pytest.fixture(scope="module")
def zion(shared_data):
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    mean, std = band_stats(image)
    with rasterio.open(image) as src:
        x0, y0 = src.xy(260, 100)
        x1, y1 = src.xy(100, 300)
    return {"image": image, "mean": mean, "std": std, "extent": (x0, y0, x1, y1),
            "props": metadata_props(card_for(NAMES, mean=mean, std=std, tile=64, input_dtype="uint16"))}


def classify(zion, model, out, **options):
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(zion["image"], model, out, extent=zion["extent"], **options), events)
    with rasterio.open(result["OUTPUT"]) as dst:
        return dst.read(1), result, [e["message"] for e in events.of_type("log")]


def export_fixed(net, path, shape, props=None):
    """Exported with every axis fixed (no dynamic batch), as some tools do."""
    torch.onnx.export(net, torch.zeros(*shape), str(path), input_names=["image"], output_names=["probabilities"],
                      dynamo=False)
    if props:
        import onnx  # noqa: PLC0415
        model = onnx.load(str(path))
        onnx.helper.set_model_props(model, props)
        onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("batch", [1, 3])
def test_a_model_with_a_fixed_batch_runs_that_many_tiles_at_a_time(zion, tmp_path, batch):
    net = tiny_net(4, 3, seed=3)
    dynamic = export(net, tmp_path / "dynamic.onnx", 4, 64, zion["props"])
    fixed = export_fixed(net, tmp_path / "fixed.onnx", (batch, 4, 64, 64), zion["props"])
    expected, _, _ = classify(zion, dynamic, tmp_path / "dynamic.tif")
    labels, result, logs = classify(zion, fixed, tmp_path / "fixed.tif", batch_size=4)
    assert result["BATCH_SIZE"] == batch and any(f"fixed batch of {batch}" in m for m in logs)
    assert (labels == expected).mean() > 0.9999


def test_a_one_channel_model_is_refused(zion, tmp_path):
    path = export(tiny_net(4, 1), tmp_path / "one.onnx", 4, 64)
    with pytest.raises(BadInputError, match="gives 1 output channel.*at least two"):
        classify(zion, path, tmp_path / "out.tif", mean=zion["mean"], std=zion["std"])
    assert not (tmp_path / "out.tif").exists()


def test_a_model_returning_nan_stops_with_a_clear_error(zion, tmp_path):
    net = tiny_net(4, 3)
    with torch.no_grad():
        net[0].bias.fill_(float("nan"))
    path = export(net, tmp_path / "nan.onnx", 4, 64, zion["props"])
    with pytest.raises(BadInputError, match="returned NaN or infinite values"):
        classify(zion, path, tmp_path / "out.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.onnx"]


@pytest.mark.parametrize("std", [[0, 1, 1, 1], [-5.0], [1, 1, float("inf"), 1]])
def test_zero_negative_or_infinite_std_is_refused(zion, tmp_path, std):
    path = export(tiny_net(4, 3), tmp_path / "bare.onnx", 4, 64)
    with pytest.raises(BadInputError, match="standard deviation must be a positive number"):
        classify(zion, path, tmp_path / "out.tif", class_names=NAMES, mean=[0.0], std=std)


def test_a_dynamic_channel_axis_is_named_as_such(zion, tmp_path):
    path = tmp_path / "anybands.onnx"
    torch.onnx.export(tiny_net(4, 3), torch.zeros(1, 4, 64, 64), str(path), input_names=["image"],
                      output_names=["p"], dynamic_axes={"image": {0: "batch", 1: "bands"}, "p": {0: "batch"}},
                      dynamo=False)
    with pytest.raises(BadInputError, match="does not fix how many bands.*one value per band"):
        classify(zion, str(path), tmp_path / "out.tif", class_names=NAMES)
    labels, _, _ = classify(zion, str(path), tmp_path / "out.tif", class_names=NAMES, mean=zion["mean"],
                            std=zion["std"])
    assert labels.min() >= 1


def test_a_model_of_300_classes_names_the_limit(zion, tmp_path):
    path = export(tiny_net(4, 300), tmp_path / "many.onnx", 4, 64)
    with pytest.raises(BadInputError, match="300 output channels.*at most 254 classes"):
        classify(zion, path, tmp_path / "out.tif", mean=zion["mean"], std=zion["std"])


def test_a_channels_last_model_is_named_as_such(zion, tmp_path):
    class ChannelsLast(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_net(4, 3)

        def forward(self, x):
            return self.net(x.permute(0, 3, 1, 2))

    path = tmp_path / "nhwc.onnx"
    torch.onnx.export(ChannelsLast().eval(), torch.zeros(1, 64, 64, 4), str(path), input_names=["image"],
                      output_names=["p"], dynamic_axes={"image": {0: "batch"}, "p": {0: "batch"}}, dynamo=False)
    with pytest.raises(BadInputError, match=r"channels last.*\(N, height, width, bands\).*NCHW") as info:
        classify(zion, str(path), tmp_path / "out.tif", mean=zion["mean"], std=zion["std"])
    assert "64x4 px" not in info.value.message and "bands but" not in info.value.message


def test_outputs_are_finite_for_a_normal_model(zion, tmp_path):
    labels, _, _ = classify(zion, export(tiny_net(4, 3), tmp_path / "m.onnx", 4, 64, zion["props"]),
                            tmp_path / "ok.tif")
    assert np.isin(np.unique(labels), [1, 2, 3]).all()


def test_the_same_crs_written_another_way_is_not_news(zion, tmp_path):
    with rasterio.open(zion["image"]) as src:
        wkt = src.crs.to_wkt()
    logs_for = {}
    for name, crs in (("wkt", wkt), ("epsg", "EPSG:32612"), ("other", "EPSG:32633")):
        card = card_for(NAMES, mean=zion["mean"], std=zion["std"], tile=64, input_dtype="uint16", crs=crs)
        model = export(tiny_net(4, 3), tmp_path / f"{name}.onnx", 4, 64, metadata_props(card))
        logs_for[name] = " ".join(classify(zion, model, tmp_path / f"{name}.tif")[2])
    assert "trained in" not in logs_for["wkt"] and "trained in" not in logs_for["epsg"]
    assert "The raster's CRS is EPSG:32612; the model was trained in EPSG:32633." in logs_for["other"]


@pytest.mark.parametrize("keepdim", [False, True])
def test_a_model_ending_in_an_argmax_is_told_to_drop_it(zion, tmp_path, keepdim):
    class Labels(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_net(4, 3)

        def forward(self, x):
            return torch.argmax(self.net(x), dim=1, keepdim=keepdim)

    path = export(Labels().eval(), tmp_path / "labels.onnx", 4, 64, zion["props"])
    with pytest.raises(BadInputError, match=r"gives class labels already .*int64.*without its final argmax"):
        classify(zion, path, tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def test_a_model_giving_its_classes_last_is_named_as_such(zion, tmp_path):
    """It used to say 'The model has 64 output channels but 3 class names were given'."""
    class ClassesLast(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = tiny_net(4, 3)

        def forward(self, x):
            return self.net(x).permute(0, 2, 3, 1)

    path = export(ClassesLast().eval(), tmp_path / "nhwc_out.onnx", 4, 64, zion["props"])
    with pytest.raises(BadInputError, match=r"gives its classes last.*\(N, classes, height, width\)") as info:
        classify(zion, path, tmp_path / "out.tif")
    assert "64 output channels" not in info.value.message


@pytest.mark.parametrize("dynamic", [{}, {3: "width"}])
def test_a_model_of_oblong_tiles_is_refused_before_the_run(zion, tmp_path, dynamic):
    """A fixed 64 x 128 px input ran 64 px tiles and stopped mid-run with onnxruntime's 'Got invalid dimensions'."""
    path = tmp_path / "oblong.onnx"
    torch.onnx.export(tiny_net(4, 3), torch.zeros(1, 4, 64, 128), str(path), input_names=["image"],
                      output_names=["p"], dynamic_axes={"image": {0: "batch", **dynamic}, "p": {0: "batch"}},
                      dynamo=False)
    with pytest.raises(BadInputError, match=r"takes tiles of 64 x (128|width) px.*square tiles.*dynamic height"):
        classify(zion, str(path), tmp_path / "out.tif", class_names=NAMES, mean=zion["mean"], std=zion["std"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oblong.onnx"]
