"""The largest tile that keeps a model's labels is measured at export, on the training image, and bounds the
classifier's automatic tile: a net that sees only 5x5 px gives the same map at any size (the automatic tile grows),
a net whose every pixel depends on the tile's zero padding does not (the automatic tile stays the model's own)."""
from types import SimpleNamespace

import onnx
import pytest
import rasterio
import torch
from classify_models import card_for, train_on_zion

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.classify.tile_agreement import AGREEMENT, measure
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import metadata_props
from landcover_plugin.core.model.session import load_model
from training.export_onnx import set_card_entry
from training.finish import record_tile_agreement

TILE = 64


class PaddingBound(torch.nn.Module):
    """Two classes: band 1 itself against its 63x63 px mean with the tile's zero padding counted in. In a 64 px tile
    every pixel's mean reaches the padding; in a big tile most do not, so the labels change all over it."""

    def forward(self, x):
        band = x[:, :1]
        local = torch.nn.functional.avg_pool2d(band + 1.0, (63, 1), stride=1, padding=(31, 0))  # separable: fast
        local = torch.nn.functional.avg_pool2d(local, (1, 63), stride=1, padding=(0, 31))
        return torch.softmax(torch.cat([band, local - 1.0], dim=1), dim=1)


def export_dynamic(net, path, names, mean, std):
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(net, torch.zeros(1, 4, TILE, TILE), str(path), input_names=["image"],
                      output_names=["probabilities"], dynamic_axes={"image": axes, "probabilities": axes},
                      dynamo=False)
    card = card_for(names, mean=mean, std=std, tile=TILE, input_dtype="uint16", resolution=[30.0, 30.0],
                    crs="EPSG:32612", nodata=65535, overlap=0.25)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, metadata_props(card))
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def models(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("agreement")
    net, names, mean, std = train_on_zion(shared_data / "zion")
    local = export_dynamic(net, folder / "local.onnx", names, mean, std)
    untouched = folder / "untouched.onnx"
    untouched.write_bytes(local.read_bytes())
    padding = export_dynamic(PaddingBound().eval(), folder / "padding.onnx", names[:2], mean, std)
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    return {"local": local, "padding": padding, "untouched": untouched, "image": image, "folder": folder,
            "measured": {name: measure(path, image) for name, path in (("local", local), ("padding", padding))}}


def test_a_net_with_a_small_receptive_field_keeps_its_labels_at_every_size_measured(models):
    measured = models["measured"]["local"]
    assert measured["tile"] == 512 and measured["threshold"] == AGREEMENT
    assert set(measured["agreement"]) == {"128", "256", "512"}
    assert min(measured["agreement"].values()) >= AGREEMENT
    assert measured["pixels"] > 500_000  # a 768 x 768 px window of the image, nearly all valid


def test_a_net_that_sees_the_padding_everywhere_keeps_its_own_tile(models):
    measured = models["measured"]["padding"]
    assert measured["tile"] == TILE
    assert measured["agreement"]["128"] < AGREEMENT


def test_the_card_entry_keeps_the_deepness_keys_and_bounds_the_automatic_tile(models):
    path = models["padding"]
    before = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    set_card_entry(path, "tile_agreement", models["measured"]["padding"])
    after = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert {k: v for k, v in after.items() if k != "landcover_card"} == \
        {k: v for k, v in before.items() if k != "landcover_card"}
    assert load_model(path, device="cpu").card["tile_agreement"]["tile"] == TILE
    events = RecordingEvents()
    auto = classify_raster(ClassifyOptions(models["image"], path, models["folder"] / "auto.tif", tile_size=0,
                                           device="cpu"), events)
    assert auto["TILE"] == TILE
    assert any("were not used" in e["message"] for e in events.of_type("log"))
    events = RecordingEvents()
    asked = classify_raster(ClassifyOptions(models["image"], path, models["folder"] / "asked.tif", tile_size=256,
                                            device="cpu"), events)
    assert asked["TILE"] == 256  # asked for: run, with a warning naming the measured agreement
    assert any("may change the labels" in e["message"] and "128 px" in e["message"]
               for e in events.of_type("log"))
    with rasterio.open(auto["OUTPUT"]) as a, rasterio.open(asked["OUTPUT"]) as b:
        assert (a.read(1) == b.read(1)).mean() < AGREEMENT


def test_a_model_measured_safe_at_512_px_runs_512_px_tiles_automatically(models):
    path = models["local"]
    set_card_entry(path, "tile_agreement", models["measured"]["local"])
    result = classify_raster(ClassifyOptions(models["image"], path, models["folder"] / "local.tif", tile_size=0,
                                             device="cpu"))
    assert result["TILE"] > TILE


def test_with_no_tile_size_given_a_measured_model_runs_bigger_tiles_and_an_unmeasured_one_its_own(models):
    path = models["folder"] / "default_tile.onnx"
    path.write_bytes(models["untouched"].read_bytes())
    assert classify_raster(ClassifyOptions(models["image"], path, models["folder"] / "unmeasured.tif",
                                           device="cpu"))["TILE"] == TILE  # no measurement in its card
    set_card_entry(path, "tile_agreement", models["measured"]["local"])
    events = RecordingEvents()
    default = classify_raster(ClassifyOptions(models["image"], path, models["folder"] / "default.tif",
                                              device="cpu"), events)
    assert default["TILE"] > TILE and default["TILE"] <= models["measured"]["local"]["tile"]
    told = [e["message"] for e in events.of_type("log") if f"instead of the model's {TILE} px" in e["message"]]
    assert len(told) == 1 and "fewer pixels" in told[0]
    assert "tile size" not in told[0].lower()  # no engine-only --tile-size: Classify in QGIS has no such field
    own = classify_raster(ClassifyOptions(models["image"], path, models["folder"] / "own.tif", tile_size=TILE,
                                          device="cpu"))
    assert own["TILE"] == TILE
    with rasterio.open(default["OUTPUT"]) as a, rasterio.open(own["OUTPUT"]) as b:
        labels, reference = a.read(1), b.read(1)
    assert (labels == reference)[reference > 0].mean() >= AGREEMENT
    set_card_entry(path, "tile_agreement", models["measured"]["padding"])  # safe at its own tile only
    assert classify_raster(ClassifyOptions(models["image"], path, models["folder"] / "kept.tif",
                                           device="cpu"))["TILE"] == TILE


def test_the_trainer_records_the_agreement_and_an_unreadable_image_leaves_the_model_as_it_was(models, tmp_path):
    bad = tmp_path / "not_a_raster.tif"
    bad.write_text("not a raster")
    events = RecordingEvents()
    record_tile_agreement(models["untouched"], SimpleNamespace(raw={"source": {"image": str(bad)}}), events)
    assert any("Could not measure" in e["message"] for e in events.of_type("log"))
    assert "tile_agreement" not in load_model(models["untouched"], device="cpu").card
    events = RecordingEvents()
    record_tile_agreement(models["untouched"], SimpleNamespace(raw={"source": {"image": str(models["image"])}}),
                          events)
    assert load_model(models["untouched"], device="cpu").card["tile_agreement"] == models["measured"]["local"]
    assert any("automatic tile is at most 512 px" in e["message"] for e in events.of_type("log"))


def test_a_bigger_tile_that_saves_nothing_is_not_announced(models):
    """A 100 x 100 px crop: 64 px tiles overlapping by 16 px compute 2 x 2 tiles, as many pixels as one 128 px tile,
    which runs (fewer calls); "0 % fewer pixels" said nothing the analyst could use, so nothing is said."""
    path = models["folder"] / "tie.onnx"
    path.write_bytes(models["untouched"].read_bytes())
    set_card_entry(path, "tile_agreement", models["measured"]["local"])
    crop = models["folder"] / "crop_100.tif"
    with rasterio.open(models["image"]) as src:
        window = rasterio.windows.Window(400, 400, 100, 100)
        profile = dict(src.profile, width=100, height=100, transform=src.window_transform(window))
        with rasterio.open(crop, "w", **profile) as dst:
            dst.write(src.read(window=window))
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(crop, path, models["folder"] / "tie.tif", device="cpu"), events)
    assert result["TILE"] == 2 * TILE
    assert not [e for e in events.of_type("log") if "fewer pixels" in e["message"] or "instead of" in e["message"]]
