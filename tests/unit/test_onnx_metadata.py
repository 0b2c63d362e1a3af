"""The standard-library reader of ONNX metadata_props (the QGIS side uses it) against onnxruntime's."""
import onnxruntime as ort
import pytest
from classify_models import card_for, export, tiny_net

from landcover_plugin.core.model.card import CARD_KEY, metadata_props
from landcover_plugin.core.model.metadata import model_resolution_m, model_resolution_of, read_metadata_props


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
