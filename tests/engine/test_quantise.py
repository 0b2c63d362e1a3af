"""Quantise model (int8): a net trained here on the real Zion data and its Zion chip dataset; the int8 copy keeps
the metadata, says it is quantised, and classifies Zion with (nearly) the float model's labels."""
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
from classify_models import card_for, export, train_on_zion

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY, metadata_props
from landcover_plugin.core.model.quantise import quantise_model
from landcover_plugin.core.model.quantise_options import QuantiseOptions

TILE = 64
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def zion(shared_data, tmp_path_factory):
    """A net trained on Zion (our card, 64 px tiles), the Zion chip dataset, and its int8 copy."""
    folder = tmp_path_factory.mktemp("quantise")
    zion_dir = shared_data / "zion"
    image = zion_dir / "landsat8_2015_b2345.tif"
    net, names, mean, std = train_on_zion(zion_dir, steps=60)
    card = card_for(names, mean=mean, std=std, tile=TILE, input_dtype="uint16", resolution=[30.0, 30.0],
                    crs="EPSG:32612", nodata=65535, overlap=0.25)
    model = export(net, folder / "zion.onnx", 4, TILE, metadata_props(card))
    dataset = folder / "chips"
    export_chips(ChipExportOptions(image, dataset, labels_raster=zion_dir / "nlcd2011_8class.tif",
                                   chip_size=TILE, stride=TILE))
    events = RecordingEvents()
    result = quantise_model(QuantiseOptions(model, dataset, folder / "zion_int8.onnx", calibration_chips=32,
                                            check_chips=32), events)
    return {"model": model, "dataset": dataset, "image": image, "result": result, "events": events,
            "folder": folder}


def props_of(path) -> dict:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_the_int8_copy_is_quantised_and_keeps_the_metadata(zion):
    result = zion["result"]
    assert result["OUTPUT"] == str(zion["folder"] / "zion_int8.onnx")
    graph = onnx.load(result["OUTPUT"]).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    weights = [init for init in graph.initializer if init.data_type == onnx.TensorProto.INT8 and len(init.dims) == 4]
    assert weights, "no int8 convolution weights"
    before, after = props_of(zion["model"]), props_of(result["OUTPUT"])
    assert {k: v for k, v in after.items() if k != CARD_KEY} == {k: v for k, v in before.items() if k != CARD_KEY}
    card, float_card = json.loads(after[CARD_KEY]), json.loads(before[CARD_KEY])
    assert card["quantised"] is True and not float_card.get("quantised")
    assert card["classes"] == float_card["classes"] and card["mean"] == float_card["mean"]
    q = card["quantisation"]
    assert q["calibration_chips"] == result["calibration_chips"] == 32 and q["source_model"] == "zion.onnx"
    assert q["agreement"]["label_agreement"] == result["AGREEMENT"]
    # the tiny net's one Softmax is rewritten in the fast form; it has no transposed convolution, edge pad or
    # concatenation (the U-Net's are in tests/unit/test_int8_graph.py)
    assert q["graph_rewrites"] == {"Softmax": 1, "ConvTranspose as pixel shuffle": 0, "Pad on uint8": 0,
                                   "Shape of uint8": 0, "Concat inputs copied": "0 of 0"}


def test_label_agreement_is_computed_on_validation_chips_and_high(zion):
    result = zion["result"]
    assert result["check_chips"] == 32 and result["pixels_compared"] > 32 * TILE * TILE * 0.9
    assert 0.98 <= result["AGREEMENT"] <= 1.0
    assert result["SPEEDUP"] > 0
    assert any("agree with the float model" in e["message"] for e in zion["events"].of_type("log"))


def test_the_int8_model_classifies_zion_like_the_float_model(zion):
    maps = {}
    for name, model in (("float", zion["model"]), ("int8", zion["result"]["OUTPUT"])):
        out = zion["folder"] / f"map_{name}.tif"
        classify_raster(ClassifyOptions(zion["image"], model, out, device="cpu"))
        with rasterio.open(out) as src:
            maps[name] = src.read(1)
    valid = maps["float"] > 0
    assert valid.mean() > 0.9 and np.array_equal(valid, maps["int8"] > 0)
    assert (maps["float"] == maps["int8"])[valid].mean() >= 0.98


def test_quantising_a_quantised_model_is_refused(zion):
    with pytest.raises(BadInputError, match="already quantised"):
        quantise_model(QuantiseOptions(zion["result"]["OUTPUT"], zion["dataset"], zion["folder"] / "again.onnx"))


def test_a_dataset_with_other_bands_is_refused(zion, chips):
    with pytest.raises(BadInputError, match="7 bands but the model takes 4"):
        quantise_model(QuantiseOptions(zion["model"], chips, zion["folder"] / "other.onnx"))


@pytest.mark.parametrize("name, message", [("zion.onnx", "is the model to quantise"),
                                           ("zion_int8.onnx", "already exists"), ("model.tif", "ONNX file")])
def test_bad_output_paths_name_the_fix(zion, name, message):
    with pytest.raises(BadInputError, match=message):
        quantise_model(QuantiseOptions(zion["model"], zion["dataset"], zion["folder"] / name))


def test_a_missing_output_folder_is_created(zion):
    out = zion["folder"] / "new" / "deeper" / "q.onnx"
    result = quantise_model(QuantiseOptions(zion["model"], zion["dataset"], out, calibration_chips=4, check_chips=4))
    assert result["OUTPUT"] == str(out) and onnx.load(str(out)).graph.node
    assert sorted(p.name for p in out.parent.iterdir()) == ["q.onnx"], "a temporary file was left beside it"


def test_an_output_folder_that_cannot_be_written_says_so_before_calibrating(zion, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    events = RecordingEvents()
    with pytest.raises(BadInputError, match=r"Cannot write the quantised model into .*not_a_folder/sub: .*Choose a "
                                            r"folder you can write to"):
        quantise_model(QuantiseOptions(zion["model"], zion["dataset"], blocker / "sub" / "q.onnx"), events)
    assert not [e for e in events.of_type("progress") if "calibrating" in e["message"]]
    assert blocker.read_text() == "a file where the output folder should be"


def test_the_engine_command_reports_the_agreement(zion, engine_python):
    out = zion["folder"] / "cli_int8.onnx"
    cwd = zion["folder"] / "cwd"
    cwd.mkdir()
    run = subprocess.run([engine_python, "-m", "landcover_plugin.core.engine", "quantise", "--model",
                          str(zion["model"]), "--dataset", str(zion["dataset"]), "--output", str(out),
                          "--calibration-chips", "8", "--check-chips", "8"],
                         capture_output=True, text=True, timeout=300, cwd=cwd,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.returncode == 0, run.stderr[-2000:]
    events = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    result = [e for e in events if e["event"] == "result"][0]["outputs"]
    assert result["OUTPUT"] == str(out) and out.is_file() and result["calibration_chips"] == 8
    assert 0.9 <= result["AGREEMENT"] <= 1.0
    assert list(cwd.iterdir()) == [], "the quantiser left files in the working folder"


def test_too_few_chips_are_warned_and_times_too_short_give_no_speed_up(zion):
    events = RecordingEvents()
    result = quantise_model(QuantiseOptions(zion["model"], zion["dataset"], zion["folder"] / "one.onnx",
                                            calibration_chips=1, check_chips=1), events)
    warnings = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert any(w.startswith("Only 1 calibration chip(s): ") and "at least 16, 64 advised" in w for w in warnings)
    assert any(w.startswith("Only 1 validation chip(s) to compare labels on") for w in warnings), warnings
    line = [e["message"] for e in events.of_type("log") if e["message"].startswith("Quantised model written")][0]
    agreement = json.loads(props_of(result["OUTPUT"])[CARD_KEY])["quantisation"]["agreement"]
    assert agreement["float_seconds"] > 0 and agreement["int8_seconds"] > 0  # not rounded to nothing
    # one 64 px chip runs in milliseconds: the times say so, and no ratio of such times is offered as a speed-up
    assert " ms float, " in line and " ms int8" in line
    timed = min(agreement["float_seconds"], agreement["int8_seconds"]) >= 0.05
    assert result["speedup_timed"] == timed and ("too short to time a speed-up" in line) == (not timed)
    assert ("x)" in line) == timed
    # the fixture's 32 chips of each: no caution
    assert not [e for e in zion["events"].of_type("log") if e["message"].startswith("Only ")]
