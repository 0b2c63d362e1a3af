"""The standard-library reader of ONNX metadata_props (the QGIS side uses it) against onnxruntime's."""
import json
import math

import onnxruntime as ort
import pytest
from classify_models import card_for, export, tiny_net

from landcover_plugin.core.model.card import CARD_KEY, metadata_props
from landcover_plugin.core.model.metadata import (
    card_resolution_m,
    model_resolution_m,
    model_resolution_of,
    read_metadata_props,
)


def test_reads_what_onnxruntime_reads(tmp_path):
    card = card_for(["wasser", "wald", "ödland"], mean=[1, 2, 3], std=[4, 5, 6], tile=32, input_dtype="uint8",
                    resolution=[0.25, 0.25])
    path = export(tiny_net(3, 3), tmp_path / "m.onnx", 3, 32, metadata_props(card))
    props = read_metadata_props(path)
    assert props == dict(ort.InferenceSession(path).get_modelmeta().custom_metadata_map)
    assert model_resolution_m(props) == 0.25 == model_resolution_of(path)
    deepness_only = {k: v for k, v in props.items() if k != CARD_KEY}
    assert model_resolution_m(deepness_only) == pytest.approx(0.25)  # from Deepness' centimetres


def test_no_metadata_and_not_onnx(tmp_path):
    path = export(tiny_net(3, 2), tmp_path / "bare.onnx", 3, 32)
    assert read_metadata_props(path) == {}
    assert model_resolution_of(path) is None
    text = tmp_path / "text.onnx"
    text.write_text("not a model at all")
    assert model_resolution_of(text) is None
    assert model_resolution_of(tmp_path / "missing.onnx") is None


GEOGRAPHIC = 'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],UNIT["degree",0.01745]]'
PROJECTED = 'PROJCS["WGS 84 / UTM zone 12N",GEOGCS["WGS 84"],UNIT["metre",1]]'


@pytest.mark.parametrize("resolution, crs, metres", [
    ([30.0, 30.0], PROJECTED, 30.0),
    ([26.57, 33.27], GEOGRAPHIC, math.sqrt(26.57 * 33.27)),  # measured on the ground: the square of its area
    ([0.0003, 0.0003], GEOGRAPHIC, None),  # degrees read as metres by older trainers: no resolution
    ([0.005, 0.005], PROJECTED, 0.005),  # a projected CRS's units are taken as they are
    (None, PROJECTED, None),
])
def test_the_card_s_resolution_in_metres(resolution, crs, metres):
    card = {"resolution": resolution, "crs": crs}
    assert card_resolution_m(card) == (None if metres is None else pytest.approx(metres))
    props = {"landcover_card": json.dumps(card), "resolution": "0.03"}
    assert model_resolution_m(props) == (None if metres is None else pytest.approx(metres))  # the card wins
