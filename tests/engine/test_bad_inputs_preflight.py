"""Pre-flight check (issue 12 #15): before classifying, the raster's band statistics are compared with the
model card's; a raster far off is warned about with the numbers per band and the likely cause."""
import numpy as np
import pytest
import rasterio
import torch
from classify_models import band_stats, card_for, export, tiny_net, untrained_model

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import metadata_props


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("preflight")
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    mean, std = band_stats(image)
    card = card_for(["water", "forest", "shrubland"], mean=mean, std=std, tile=64, input_dtype="uint16")
    model = export(tiny_net(4, 3), folder / "m.onnx", 4, 64, metadata_props(card))
    with rasterio.open(image) as src:
        window = ((300, 556), (300, 556))
        profile = dict(src.profile, width=256, height=256, transform=src.window_transform(window))
        data = src.read(window=window)
    return {"folder": folder, "model": model, "card": card, "profile": profile, "data": data}


def raster(setup, name, data, **profile):
    path = setup["folder"] / f"{name}.tif"
    with rasterio.open(path, "w", **dict(setup["profile"], **profile)) as dst:
        dst.write(data)
    return path


def warnings_for(setup, name, data, **profile):
    events = RecordingEvents()
    classify_raster(ClassifyOptions(raster(setup, name, data, **profile), setup["model"],
                                    setup["folder"] / f"{name}_map.tif"), events)
    return [e["message"] for e in events.of_type("log") if e["level"] == "warning"]


def reflectance(data):
    return np.where(data != 65535, data * 2e-5 - 0.1, np.nan).astype(np.float32)


def test_the_training_kind_of_image_passes_quietly(setup):
    assert not [m for m in warnings_for(setup, "same", setup["data"]) if "training data" in m]


def test_reflectance_instead_of_digital_numbers_is_named(setup):
    warnings = warnings_for(setup, "reflectance", reflectance(setup["data"]), dtype="float32", nodata=None)
    message = next(m for m in warnings if "do not look like the model's training data" in m)
    assert "4 of 4 bands far off" in message and "band 1: mean 0." in message and "vs trained" in message
    assert "another scaling" in message and "reflectance 0-1 vs digital numbers" in message


def test_bands_in_another_order_are_named(setup):
    message = next(m for m in warnings_for(setup, "reordered", setup["data"][[3, 1, 2, 0]])
                   if "training data" in m)
    assert "the bands are in another order" in message
    assert "raster band 1, fed as the model's band 1, looks like its band 4" in message
    assert "raster band 4, fed as the model's band 4, looks like its band 1" in message
    assert "Choose Bands 4,2,3,1 (the raster's bands in the model's order)" in message


def test_bands_chosen_out_of_order_speak_of_the_choice(setup):
    """The probe's case: Bands given in reverse on the training kind of raster. The advice names the raster
    bands chosen (not their positions) and says to clear or reorder the choice, not to rearrange the raster."""
    events = RecordingEvents()
    path = raster(setup, "chosen", setup["data"])
    classify_raster(ClassifyOptions(path, setup["model"], setup["folder"] / "chosen_map.tif", bands=[4, 3, 2, 1]),
                    events)
    message = next(e["message"] for e in events.of_type("log") if "training data" in e["message"])
    assert "the bands you chose look out of order" in message
    assert "raster band 4, fed as the model's band 1, looks like its band 4" in message
    assert "raster band 1, fed as the model's band 4, looks like its band 1" in message
    assert "band 1 (raster band 4): mean" in message
    assert "clear Bands (the model's recorded bands are then read) or choose Bands 1,2,3,4." in message
    assert "Rearrange" not in message and "raster band 1 looks like" not in message


def test_the_warning_is_told_when_the_run_then_fails(setup):
    """The check runs beside the first model runs (classify/pipeline.py, _Preflight): a run that fails at once still
    tells it, since it may say why (here a model that returns NaN, on reflectance instead of digital numbers)."""
    net = tiny_net(4, 3)
    with torch.no_grad():
        net[0].bias.fill_(float("nan"))
    broken = export(net, setup["folder"] / "nan.onnx", 4, 64, metadata_props(setup["card"]))
    path = raster(setup, "failing", reflectance(setup["data"]), dtype="float32", nodata=None)
    events = RecordingEvents()
    with pytest.raises(BadInputError, match="returned NaN or infinite values"):
        classify_raster(ClassifyOptions(path, broken, setup["folder"] / "failing_map.tif"), events)
    warnings = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert any("do not look like the model's training data" in m and "another scaling" in m for m in warnings)


def test_a_border_of_zeros_without_a_nodata_value_is_named(setup):
    """The probe's case: 40 px of zeros around Zion, no nodata value: those pixels were classified, silently."""
    data = np.zeros((4, 256 + 80, 256 + 80), dtype=np.uint16)
    data[:, 40:-40, 40:-40] = setup["data"]
    shape = dict(width=336, height=336, transform=setup["profile"]["transform"] * rasterio.Affine.translation(-40, -40))
    message = next(m for m in warnings_for(setup, "zero_border", data, nodata=None, **shape) if "0 in every band" in m)
    assert "the raster has no nodata value: those look like no data" in message
    assert "Assign a specified nodata value to output bands' set to 0" in message
    with_nodata = warnings_for(setup, "zero_border_nodata", data, nodata=0, **shape)
    assert not [m for m in with_nodata if "0 in every band" in m or "training data" in m]


def test_a_declared_scale_and_offset_is_named(setup):
    """The probe's case: uint8 values with a per-band scale/offset that turns them into the training data's
    digital numbers; the model reads the stored values, and the warning says so instead of 'Rescale'."""
    scale, offset = 105.15, 5252.0
    packed = np.clip(np.round((setup["data"] - offset) / scale), 0, 254).astype(np.uint8)
    path = raster(setup, "scaled", packed, dtype="uint8", nodata=255)
    with rasterio.open(path, "r+") as dst:
        dst.scales, dst.offsets = (scale,) * 4, (offset,) * 4
    events = RecordingEvents()
    classify_raster(ClassifyOptions(path, setup["model"], setup["folder"] / "scaled_map.tif"), events)
    message = next(e["message"] for e in events.of_type("log") if "training data" in e["message"])
    assert "another scaling" in message and "Rescale the raster" not in message
    assert "declares a scale and offset for its values (every band: value x 105.15 + 5252)" in message
    assert "the model reads the stored values: the scale and offset are not applied" in message
    assert "'-unscale -ot UInt16'" in message


@pytest.mark.parametrize("size", [1, 8])
def test_a_raster_of_a_few_pixels_gets_no_verdict(setup, size):
    """The probe's 1x1 px raster was '4 of 4 bands far off' (one pixel has no spread): too few pixels to judge."""
    data = setup["data"][:, 100:100 + size, 100:100 + size]
    warnings = warnings_for(setup, f"pixels_{size}", data, width=size, height=size)
    assert not [m for m in warnings if "training data" in m]


def test_a_9999_fill_without_a_nodata_value_is_named_not_blamed_on_the_sensor(shared_data, tmp_path):
    """The probe's case: the eo-learn Sentinel-2 composite with its NaN gaps (12 %) saved as -9999 and no nodata
    value. The warning spoke of another sensor (every band's mean -1162 against 0.15); it names the fill value
    and how to declare it, and the bands compared without the fill raise nothing more."""
    image = shared_data / "eolearn" / "sentinel2_13band_composite.tif"
    model = untrained_model(image, tmp_path / "m.onnx", ["cultivated", "forest", "grassland"],
                            tile=32, input_dtype="float32")
    with rasterio.open(image) as src:
        data, profile = src.read(), dict(src.profile, nodata=None)
    with rasterio.open(tmp_path / "filled.tif", "w", **profile) as dst:
        dst.write(np.where(np.isnan(data), -9999, data).astype(np.float32))
    events = RecordingEvents()
    classify_raster(ClassifyOptions(tmp_path / "filled.tif", model, tmp_path / "map.tif"), events)
    warnings = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert len(warnings) == 1, warnings
    assert "12% of the sampled pixels" in warnings[0] and "are -9999 in every band" in warnings[0]
    assert "set to -9999; or gdal_edit -a_nodata -9999) and run again" in warnings[0]
    with rasterio.open(tmp_path / "filled.tif", "r+") as dst:
        dst.nodata = -9999  # the advice followed: the fill is no data, and nothing is said
    events = RecordingEvents()
    classify_raster(ClassifyOptions(tmp_path / "filled.tif", model, tmp_path / "map2.tif"), events)
    assert not [e for e in events.of_type("log") if e["level"] == "warning"]
    with rasterio.open(tmp_path / "map2.tif") as out:
        assert (out.read(1)[np.isnan(data).any(axis=0)] == 0).all()


def test_thirteen_bands_chosen_in_reverse_speak_of_the_choice_not_the_sensor(shared_data, tmp_path):
    """The probe's case: the eo-learn composite's 13 bands chosen in reverse (Bands 13..1) for a model of its bands
    1..13. Two bands came out far off (B03 and B10), more bands than the orders tried (8), so the warning blamed
    'another sensor, processing level or scene type' and advised another raster or model."""
    image = shared_data / "eolearn" / "sentinel2_13band_composite.tif"
    model = untrained_model(image, tmp_path / "m.onnx", ["cultivated", "forest", "grassland"],
                            tile=32, input_dtype="float32")
    events = RecordingEvents()
    classify_raster(ClassifyOptions(image, model, tmp_path / "map.tif", bands=list(range(13, 0, -1))), events)
    (message,) = [e["message"] for e in events.of_type("log") if "training data" in e["message"]]
    assert "another sensor" not in message
    assert "the bands you chose (13,12,11,10,9,8,7,6,5,4,3,2,1) are not the ones the model learnt from, in its " \
           "order (1,2,3,4,5,6,7,8,9,10,11,12,13). Clear Bands" in message
