"""Match to the training raster (classify ``--match-training-raster``): another date of the training raster's place
is read as the training raster's values, by a gain and offset per band fitted over the ground they share, robust
to land cover that changed there (classify/radiometry.py)."""
import json

import numpy as np
import pytest
import rasterio
import torch
from classify_models import band_stats, card_for, export, tiny_net
from rasterio.warp import Resampling, calculate_default_transform, reproject

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import metadata_props
from landcover_plugin.core.model.map_record import TAG

EAST_FROM = 0.6


@pytest.fixture(scope="module")
def scene(shared_data, tmp_path_factory):
    """The Zion scene as the training raster, a model whose card records it (:func:`brightness_net`), and the
    scene's east 40 % as it is."""
    folder = tmp_path_factory.mktemp("match")
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    mean, std = band_stats(image)
    card = card_for(["water", "forest", "shrubland"], mean=mean, std=std, tile=64, input_dtype="uint16")
    card["training"], card["source"] = {"colour_augment": False}, {"image": str(image)}
    model = export(brightness_net(), folder / "model.onnx", 4, 64, metadata_props(card))
    with rasterio.open(image) as src:
        column = int(np.ceil(EAST_FROM * src.width))
        data = src.read()[:, :, column:]
        profile = dict(src.profile, width=data.shape[2], transform=src.transform * src.transform.translation(column, 0))
    scene = {"folder": folder, "image": image, "model": model, "data": data, "profile": profile,
             "valid": (data != profile["nodata"]).all(axis=0)}
    scene["as_it_is"] = labels(scene, write(scene, "as_it_is", data))[0]
    return scene


def brightness_net() -> torch.nn.Module:
    """A per-pixel net whose three classes are darker than the training data's mean, about it, and brighter (summed
    over the standardised bands): its labels follow the brightness as a trained model's may."""
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 3, 1), torch.nn.Softmax(dim=1))
    with torch.no_grad():
        net[0].weight[:] = torch.tensor([[-2.0] * 4, [0.0] * 4, [2.0] * 4])[:, :, None, None]
        net[0].bias[:] = torch.tensor([0.0, 1.5, 0.0])
    return net


def write(scene, name, data, profile=None):
    path = scene["folder"] / f"{name}.tif"
    data = np.clip(np.round(data), 0, 65534).astype(np.uint16)
    data[:, ~scene["valid"]] = scene["profile"]["nodata"]
    with rasterio.open(path, "w", **(profile or scene["profile"])) as dst:
        dst.write(data)
    return path


def labels(scene, raster, match=False, model=None):
    """(the map's labels, its landcover_model tag, the log's messages)."""
    events = RecordingEvents()
    out = classify_raster(ClassifyOptions(raster, model or scene["model"], scene["folder"] / f"{raster.stem}_map.tif",
                                          overwrite=True, match_training_raster=match), events)
    with rasterio.open(out["OUTPUT"]) as src:
        return src.read(1), json.loads(src.tags()[TAG]), [e["message"] for e in events.of_type("log")]


def agreement(scene, mapped, where=None):
    where = scene["valid"] if where is None else scene["valid"] & where
    return float((mapped[where] == scene["as_it_is"][where]).mean())


def test_a_brighter_date_reads_as_the_training_raster(scene):
    brighter = write(scene, "brighter", scene["data"] * 1.15)
    plain, _, _ = labels(scene, brighter)
    matched, tag, log = labels(scene, brighter, match=True)
    assert agreement(scene, plain) < 0.9  # the untrained net, too, maps a brighter raster otherwise
    assert agreement(scene, matched) > 0.99
    assert tag["matched_to_training"]["raster"] == "landsat8_2015_b2345.tif"
    assert np.allclose(tag["matched_to_training"]["gain"], 1 / 1.15, rtol=0.005)
    line = next(m for m in log if m.startswith("Matched the raster's values to the training raster"))
    assert "100% of the area classified" in line and "band 1 x 0.87" in line
    assert not [m for m in log if "than the model's training data in every band" in m]  # matched: no light warning


def test_land_cover_changed_on_a_third_is_left_out_of_the_fit(scene):
    """A brighter, hazier, noisier date whose south third holds other ground (the north's, mirrored): the pairs
    there are left out, and the rest of the map is the map of the scene as it is."""
    data = scene["data"].astype(np.float64)
    rows = data.shape[1] // 3
    data[:, -rows:] = data[:, :rows][:, ::-1]
    means = scene["data"][:, scene["valid"]].mean(axis=1)
    hazy = data * 1.1 + (np.array([0.15, 0.10, 0.06, 0.03]) * means)[:, None, None]
    hazy += np.random.default_rng(0).normal(0, 1, hazy.shape) * (0.01 * means)[:, None, None]
    matched, tag, log = labels(scene, write(scene, "changed", hazy), match=True)
    unchanged = np.zeros(scene["valid"].shape, dtype=bool)
    unchanged[:-rows] = True
    assert np.allclose(tag["matched_to_training"]["gain"], 1 / 1.1, rtol=0.03)
    kept = float(next(m for m in log if m.startswith("Matched")).split("pixel pairs sampled, ")[1].split("%")[0])
    assert 50 <= kept <= 75  # about the two thirds unchanged, less the noisiest pairs
    assert agreement(scene, matched, unchanged) > 0.95
    assert agreement(scene, labels(scene, scene["folder"] / "changed.tif")[0], unchanged) < 0.9


def test_another_crs_is_read_onto_the_raster_grid(scene):
    """The brighter date delivered in Web Mercator: the training raster (UTM) is warped onto its grid to pair the
    pixels; the gain found is the same."""
    src_crs, transform = scene["profile"]["crs"], scene["profile"]["transform"]
    height, width = scene["data"].shape[1:]
    left, top = transform * (0, 0)
    right, bottom = transform * (width, height)
    dst_transform, dst_width, dst_height = calculate_default_transform(src_crs, "EPSG:3857", width, height,
                                                                       left, bottom, right, top)
    nodata = scene["profile"]["nodata"]
    warped = np.full((4, dst_height, dst_width), nodata, dtype=np.uint16)
    brighter = np.clip(np.round(scene["data"] * 1.15), 0, 65534).astype(np.uint16)
    brighter[:, ~scene["valid"]] = nodata
    reproject(brighter, warped, src_transform=transform, src_crs=src_crs, dst_transform=dst_transform,
              dst_crs="EPSG:3857", resampling=Resampling.nearest, src_nodata=nodata, dst_nodata=nodata)
    path = scene["folder"] / "brighter_3857.tif"
    profile = dict(scene["profile"], crs="EPSG:3857", transform=dst_transform, width=dst_width, height=dst_height)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(warped)
    _, tag, _ = labels(scene, path, match=True)
    assert np.allclose(tag["matched_to_training"]["gain"], 1 / 1.15, rtol=0.01)


def test_the_training_raster_itself_is_read_as_it_is(scene):
    mapped, tag, log = labels(scene, scene["image"], match=True)
    assert "matched_to_training" not in tag
    assert any("this is the training raster; its values are read as they are" in m for m in log)


def test_refused_without_the_training_raster_or_its_ground(scene, shared_data):
    brighter = scene["folder"] / "brighter.tif"
    if not brighter.exists():
        write(scene, "brighter", scene["data"] * 1.15)
    mean, std = band_stats(scene["image"])
    card = card_for(["water", "forest", "shrubland"], mean=mean, std=std, tile=64, input_dtype="uint16")
    card["training"], card["source"] = {}, {"image": str(scene["folder"] / "moved_away.tif")}
    moved = export(tiny_net(4, 3), scene["folder"] / "moved.onnx", 4, 64, metadata_props(card))
    with pytest.raises(BadInputError, match="moved_away.tif, not found here. Put it back at that path, or turn off"):
        labels(scene, brighter, match=True, model=moved)
    card["source"] = {"image": str(shared_data / "eolearn" / "sentinel2_13band_composite.tif")}
    elsewhere = export(tiny_net(4, 3), scene["folder"] / "elsewhere.onnx", 4, 64, metadata_props(card))
    with pytest.raises(BadInputError, match="shares 0% of its ground with the training raster .*another date of the "
                                            "same place"):
        labels(scene, brighter, match=True, model=elsewhere)


def test_a_dask_shard_matches_as_the_whole_run_does(scene):
    """A shard of a Dask run is the classifier over a range of rows of the same area: its lines are fitted over the
    whole area, so its rows equal the whole matched run's, pixel for pixel, on a date noisy enough that a fit over
    fewer rows would differ."""
    noisy = scene["data"] * 1.1 + np.random.default_rng(1).normal(0, 300, scene["data"].shape)
    path = write(scene, "noisy", noisy)
    whole, tag, _ = labels(scene, path, match=True)
    for r0, r1 in ((0, 37), (37, 701), (701, 1428)):
        out = scene["folder"] / f"noisy_rows_{r0}.tif"
        classify_raster(ClassifyOptions(path, scene["model"], out, rows=[r0, r1], match_training_raster=True),
                        RecordingEvents())
        with rasterio.open(out) as src:
            assert np.array_equal(src.read(1), whole[r0:r1])
            assert json.loads(src.tags()[TAG])["matched_to_training"] == tag["matched_to_training"]
