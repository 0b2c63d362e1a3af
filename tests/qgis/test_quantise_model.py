""""Quantise model (int8)" in a real headless QGIS: a net trained here on the real Zion data and its chip dataset."""
import json

import onnx
from algorithm_runs import run_algorithm
from classify_models import card_for, export, train_on_zion

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.model.card import metadata_props


def run(parameters):
    return run_algorithm("landcover:quantise_model", parameters)


def test_quantise_writes_an_int8_copy_and_reports_agreement_and_speed(provider, shared_data, tmp_path):
    zion = shared_data / "zion"
    net, names, mean, std = train_on_zion(zion)
    card = card_for(names, mean=mean, std=std, tile=64, input_dtype="uint16", nodata=65535)
    model = export(net, tmp_path / "zion.onnx", 4, 64, metadata_props(card))
    chips = tmp_path / "chips"
    export_chips(ChipExportOptions(zion / "landsat8_2015_b2345.tif", chips, labels_raster=zion / "nlcd2011_8class.tif",
                                   chip_size=64, stride=64))
    out = tmp_path / "zion_int8"  # the extension is added
    results, ok, log = run({"MODEL": model, "DATASET": str(chips), "CALIBRATION_CHIPS": 16, "CHECK_CHIPS": 16,
                            "OUTPUT": str(out)})
    assert ok, log
    assert results["OUTPUT"] == str(out) + ".onnx"
    assert 0.95 <= results["AGREEMENT"] <= 1.0 and results["SPEEDUP"] > 0
    assert "labels agree with the float model" in log
    props = {p.key: p.value for p in onnx.load(results["OUTPUT"]).metadata_props}
    assert json.loads(props["landcover_card"])["quantised"] is True and props["tile_size"] == "64"
    assert "Only " not in log  # 16 chips of each: no caution
    # one chip of each: cautioned, and times of milliseconds give no 'x faster'
    results, ok, log = run({"MODEL": model, "DATASET": str(chips), "CALIBRATION_CHIPS": 1, "CHECK_CHIPS": 1,
                            "OUTPUT": str(tmp_path / "one.onnx")})
    assert ok, log
    assert "Only 1 calibration chip(s)" in log and "Only 1 validation chip(s) to compare labels on" in log
    summary = [line for line in log.splitlines() if line.startswith("Quantised model: ")][0]
    assert ("x faster" in summary) == ("too short to time a speed-up" not in log), summary


def test_quantise_with_a_dataset_of_other_bands_fails_with_the_fix(provider, shared_data, chips, tmp_path):
    zion = shared_data / "zion"
    net, names, mean, std = train_on_zion(zion, steps=1)
    card = card_for(names, mean=mean, std=std, tile=64, input_dtype="uint16")
    model = export(net, tmp_path / "zion.onnx", 4, 64, metadata_props(card))
    results, ok, log = run({"MODEL": model, "DATASET": str(chips), "OUTPUT": str(tmp_path / "q.onnx")})
    assert not ok
    assert "7 bands but the model takes 4" in log and "calibrate on chips of the dataset" in log
