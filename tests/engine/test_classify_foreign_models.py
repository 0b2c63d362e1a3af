"""Models made elsewhere: Deepness metadata only, no metadata at all (the user gives class names and
normalisation), logits instead of probabilities, and the device choice."""
import json

import onnxruntime as ort
import pytest
import rasterio
from classify_models import SceneFirst, band_stats, card_for, export, export_foreign, tiny_net

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY, metadata_props

NAMES = ["water", "forest", "shrubland", "developed"]


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("foreign")
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    mean, std = band_stats(image)
    card = card_for(NAMES, mean=mean, std=std, tile=64, input_dtype="uint16", resolution=[30.0, 30.0])
    net = tiny_net(4, len(NAMES), seed=7)
    props = metadata_props(card)
    ours = export(net, folder / "ours.onnx", 4, 64, props)
    with rasterio.open(image) as src:
        x0, y0 = src.xy(500, 200)
        x1, y1 = src.xy(300, 450)
    extent = (x0, y0, x1, y1)
    reference = classify_raster(ClassifyOptions(image, ours, folder / "ours.tif",
                                                extent=extent), events=RecordingEvents())
    with rasterio.open(reference["OUTPUT"]) as out:
        labels = out.read(1)
    return {"folder": folder, "image": image, "mean": mean, "std": std, "net": net, "props": props,
            "extent": extent, "labels": labels}


def run(setup, model, name, **options):
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(setup["image"], model, setup["folder"] / name, extent=setup["extent"],
                                             **options), events=events)
    with rasterio.open(result["OUTPUT"]) as out:
        return out.read(1), result, [e["message"] for e in events.of_type("log")]


def test_a_deepness_model_runs_the_same_as_ours(setup):
    deepness_props = {k: v for k, v in setup["props"].items() if k != CARD_KEY}
    assert set(deepness_props) >= {"model_type", "class_names", "resolution", "standardization_mean",
                                   "standardization_std", "tiles_overlap"}
    model = export(setup["net"], setup["folder"] / "deepness.onnx", 4, 64, deepness_props)
    labels, result, _ = run(setup, model, "deepness.tif")
    assert [c["name"] for c in result["CLASSES"]] == NAMES
    # Deepness divides by 255 then standardises; read back, the same numbers reach the net.
    assert (labels == setup["labels"]).mean() > 0.9999


def test_a_bare_model_runs_with_the_users_class_names_and_normalisation(setup):
    model = export(setup["net"], setup["folder"] / "bare.onnx", 4, 64)
    labels, result, _ = run(setup, model, "bare.tif", class_names=NAMES, mean=setup["mean"], std=setup["std"],
                            overlap=25)  # our card's overlap (percent); a bare model gets 15 % by default
    assert [c["name"] for c in result["CLASSES"]] == NAMES
    assert (labels == setup["labels"]).mean() > 0.9999
    # Without class names it still runs, and says what it assumed.
    _labels, result, logs = run(setup, model, "bare_unnamed.tif", mean=setup["mean"], std=setup["std"])
    assert [c["name"] for c in result["CLASSES"]] == ["class 1", "class 2", "class 3", "class 4"]
    assert any("Assumed: no class names" in m for m in logs)
    with pytest.raises(BadInputError, match="4 output channels but 2 class names"):
        run(setup, model, "bare_wrong.tif", class_names=["a", "b"])


def test_a_model_giving_logits_gets_a_softmax(setup):
    model = export(tiny_net(4, len(NAMES), seed=7, softmax=False), setup["folder"] / "logits.onnx", 4, 64,
                   setup["props"])
    labels, _result, logs = run(setup, model, "logits.tif", confidence=setup["folder"] / "logits_conf.tif")
    assert any("not class probabilities" in m for m in logs)
    assert (labels == setup["labels"]).mean() > 0.9999
    with rasterio.open(setup["folder"] / "logits_conf.tif") as conf:
        confidence = conf.read(1)
    assert confidence.min() >= 100 // len(NAMES) and confidence.max() <= 100


def test_device_choice_is_reported(setup):
    model = export(setup["net"], setup["folder"] / "device.onnx", 4, 64, setup["props"])
    _labels, result, logs = run(setup, model, "cuda.tif", device="cuda")
    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert result["DEVICE"] == "cuda"
    else:
        assert result["DEVICE"] == "cpu"
        assert any("CUDA was asked for" in m and "running on the CPU" in m for m in logs)
    _labels, result, logs = run(setup, model, "cpu.tif", device="cpu")
    assert result["DEVICE"] == "cpu" and any("running on the CPU" in m for m in logs)
    with pytest.raises(BadInputError, match="Device 'tpu'"):
        run(setup, model, "tpu.tif", device="tpu")


def test_resampling_to_the_models_resolution(setup):
    card = card_for(NAMES, mean=setup["mean"], std=setup["std"], tile=64, input_dtype="uint16",
                    resolution=[60.0, 60.0])
    model = export(setup["net"], setup["folder"] / "coarse.onnx", 4, 64, metadata_props(card))
    labels, _result, logs = run(setup, model, "coarse_warned.tif")
    assert labels.shape == setup["labels"].shape
    assert any("resolution is 30 m per pixel but the model was trained at 60 m" in m for m in logs)
    labels, result, logs = run(setup, model, "coarse.tif", resample=True)
    with rasterio.open(result["OUTPUT"]) as out:
        assert out.res == (60.0, 60.0)
    assert abs(labels.shape[0] - setup["labels"].shape[0] / 2) <= 1
    assert any("Resampled (bilinear) from 30 m to the model's 60 m" in m for m in logs)
    assert labels.min() >= 1


def test_deepness_metadata_in_its_other_forms_runs(setup):
    """class_names as a list of names, or as Deepness's one-item list of dicts; one normalisation value for all
    bands. Each used to stop with a Python error (int('water'), 'float' object is not iterable)."""
    deepness = {k: v for k, v in setup["props"].items() if k != CARD_KEY}
    for name, names in (("list", json.dumps(NAMES)),
                        ("listed_dict", json.dumps([{str(k): n for k, n in enumerate(NAMES)}]))):
        model = export(setup["net"], setup["folder"] / f"{name}.onnx", 4, 64, {**deepness, "class_names": names})
        labels, result, _ = run(setup, model, f"{name}.tif")
        assert [c["name"] for c in result["CLASSES"]] == NAMES
        assert (labels == setup["labels"]).mean() > 0.9999
    one = {**deepness, "standardization_mean": "0.5", "standardization_std": "0.25"}
    model = export(setup["net"], setup["folder"] / "one_value.onnx", 4, 64, one)
    scaled = {**deepness, "standardization_mean": json.dumps([0.5] * 4), "standardization_std": json.dumps([0.25] * 4)}
    four = export(setup["net"], setup["folder"] / "four_values.onnx", 4, 64, scaled)
    assert (run(setup, model, "one_value.tif")[0] == run(setup, four, "four_values.tif")[0]).all()
    no_std = {k: v for k, v in deepness.items() if k != "standardization_std"}
    model = export(setup["net"], setup["folder"] / "no_std.onnx", 4, 64, no_std)
    _labels, _result, logs = run(setup, model, "no_std.tif")
    assert any("no 'standardization_std': used Deepness's default 1" in m for m in logs)


@pytest.mark.parametrize("key, value, fix", [("class_names", "{0: 'water', 1: 'forest'}", "or give the class names"),
                                             ("class_names", '{"a": "water"}', "or give the class names"),
                                             ("standardization_std", "[0.1, 'x']", "or give the normalisation"),
                                             ("resolution", "50 cm", "set_model_props\\)\\.$"),
                                             ("resolution", "0", "set_model_props\\)\\.$"),
                                             ("tiles_overlap", "", "set_model_props\\)\\.$")])
def test_malformed_deepness_metadata_names_the_key(setup, key, value, fix):
    """Each used to stop with a bare Python error (JSONDecodeError, ValueError, ZeroDivisionError)."""
    deepness = {k: v for k, v in setup["props"].items() if k != CARD_KEY}
    model = export(setup["net"], setup["folder"] / "malformed.onnx", 4, 64, {**deepness, key: value})
    with pytest.raises(BadInputError, match=f"metadata key '{key}' is .* but it must be .*{fix}"):
        run(setup, model, "malformed.tif")
    assert not (setup["folder"] / "malformed.tif").exists()


def test_a_dynamic_model_with_a_zero_tile_size_names_the_key(setup):
    deepness = {k: v for k, v in setup["props"].items() if k not in (CARD_KEY, "tile_size")}
    path = export_foreign(setup["net"], setup["folder"] / "any_size.onnx", {**deepness, "tiles_size": "0"},
                          any_size=True)
    with pytest.raises(BadInputError, match="metadata key 'tiles_size' is '0', but it must be a positive number"):
        run(setup, path, "zero_tile.tif")


def test_the_users_normalisation_replaces_malformed_deepness_values(setup):
    deepness = {k: v for k, v in setup["props"].items() if k != CARD_KEY}
    model = export(setup["net"], setup["folder"] / "bad_std.onnx", 4, 64, {**deepness, "standardization_std": "?"})
    labels, _result, _logs = run(setup, model, "bad_std.tif", mean=setup["mean"], std=setup["std"], overlap=25)
    assert (labels == setup["labels"]).mean() > 0.9999


@pytest.mark.parametrize("kind", ["Regressor", "Detector", "Superresolution", "Recognition"])
def test_a_deepness_model_of_another_kind_is_refused(setup, kind):
    """A Regressor's (N, K, H, W) float output used to be mapped as K classes without a word."""
    deepness = {k: v for k, v in setup["props"].items() if k != CARD_KEY}
    model = export(setup["net"], setup["folder"] / "kind.onnx", 4, 64, {**deepness, "model_type": kind})
    with pytest.raises(BadInputError, match=f"is a '{kind}' model .*segmentation models only .*Deepness plugin"):
        run(setup, model, "kind.tif")
    assert not (setup["folder"] / "kind.tif").exists()


def test_parameters_a_model_card_overrules_are_reported(setup):
    """A model with our card ignored the class names, mean and std given as parameters without a word."""
    model = export(setup["net"], setup["folder"] / "carded.onnx", 4, 64, setup["props"])
    labels, result, logs = run(setup, model, "carded.tif", class_names=["a", "b", "c", "d"], mean=[0.0], std=[1.0])
    assert [c["name"] for c in result["CLASSES"]] == NAMES and (labels == setup["labels"]).mean() > 0.9999
    assert any("card records its class names and normalisation: the class names, mean, std given as parameters "
               "were not used" in m for m in logs)


def test_a_deepness_model_of_several_outputs_takes_its_outputs_class_names(setup):
    """Deepness lists one class_names dict per output; that list used to be refused (or stop with a Python error)."""
    names = [{"0": "bare", "1": "built"}, {str(k): n for k, n in enumerate(NAMES)}]
    deepness = {k: v for k, v in setup["props"].items() if k != CARD_KEY}
    path = export_foreign(SceneFirst(setup["net"]), setup["folder"] / "two_outputs.onnx",
                          {**deepness, "class_names": json.dumps(names)}, outputs=("scene", "map"))
    labels, result, logs = run(setup, path, "two_outputs.tif")
    assert [c["name"] for c in result["CLASSES"]] == NAMES and (labels == setup["labels"]).mean() > 0.9999
    assert any("the model has 2 outputs (scene, map): classified with 'map'" in m for m in logs)


def test_a_tile_size_written_as_a_float_is_the_models_tile(setup):
    """'256.0' was used, but the log said the metadata named no tile size."""
    deepness = {k: v for k, v in setup["props"].items() if k not in (CARD_KEY, "tile_size")}
    path = export_foreign(setup["net"], setup["folder"] / "float_tile.onnx", {**deepness, "tiles_size": "256.0"},
                          any_size=True)
    labels, _result, logs = run(setup, path, "float_tile.tif")
    assert any("tile 256 px" in m for m in logs) and not any("names none" in m for m in logs)
    assert (labels == setup["labels"]).mean() > 0.999


def test_an_overlap_of_a_whole_tile_is_refused_or_capped(setup):
    """tiles_overlap '100' (or --overlap 100) ran tiles one pixel apart: 4,096 runs of a 64 px tile per tile."""
    deepness = {k: v for k, v in setup["props"].items() if k != CARD_KEY}
    capped = export(setup["net"], setup["folder"] / "overlap90.onnx", 4, 64, {**deepness, "tiles_overlap": "90"})
    _labels, result, logs = run(setup, capped, "overlap90.tif")
    assert result["OVERLAP"] == 48 and any("overlapping by 90 %: used 75 %" in m for m in logs)
    for value in ("100", "-10"):
        model = export(setup["net"], setup["folder"] / "overlap.onnx", 4, 64, {**deepness, "tiles_overlap": value})
        with pytest.raises(BadInputError, match=f"'tiles_overlap' is '{value}', but it must be a percentage"):
            run(setup, model, "overlap.tif")
    for value in (100, -5):
        with pytest.raises(BadInputError, match=f"tile overlap is {value} % of the tile: give 0 to 75 %"):
            run(setup, capped, "overlap.tif", overlap=value)
    assert not (setup["folder"] / "overlap.tif").exists()
