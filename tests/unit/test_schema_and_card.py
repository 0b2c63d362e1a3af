"""Class schema rules and the model card's Deepness translation."""
import json

import pytest

from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.model.card import build_card, card_from_metadata, metadata_props
from landcover_plugin.core.schema import ClassSchema


def test_schema_names_get_cover_colours_and_ids_in_order():
    schema = ClassSchema.from_names(["Water", "forest", "fallen_dry"])
    assert schema.ids == [1, 2, 3]
    assert schema.by_id(1).colour == "#1f78b4" and schema.by_id(2).colour == "#1b7837"
    assert schema.id_for_value("WATER") == 1 and schema.id_for_value("2") == 2 and schema.id_for_value(3.0) == 3


@pytest.mark.parametrize("items, words", [
    ([{"id": 0, "name": "none"}], "1..254"),
    ([{"id": 255, "name": "x"}], "1..254"),
    ([{"id": 1, "name": "a"}, {"id": 1, "name": "b"}], "twice"),
    ([{"id": 1, "name": "a", "colour": "red"}], "#rrggbb"),
    ([], "empty"),
])
def test_schema_rejects_bad_classes_with_a_reason(items, words):
    with pytest.raises(BadInputError, match=words):
        ClassSchema.from_list(items)


def test_value_outside_schema_names_the_classes():
    with pytest.raises(BadInputError, match="1=water"):
        ClassSchema.from_names(["water"]).id_for_value("urban")


def test_table_parameter_round_trip():
    schema = ClassSchema.from_table(["1", "water", "#0000ff", "5", "crops", ""])
    assert schema.ids == [1, 5] and schema.by_id(5).colour == "#f1c232"


def _card():
    return build_card(schema=ClassSchema.from_names(["water", "forest"]), band_names=["b1", "b2", "b3"],
                      input_dtype="uint16", nodata=65535, mean=[510.0, 255.0, 1020.0], std=[51.0, 25.5, 102.0],
                      tile_size=64, overlap=0.25, resolution=[30.0, 30.0], crs="EPSG:32612",
                      architecture="unet", metrics={"val_miou": 0.5})


def test_deepness_keys_give_the_same_normalisation_as_ours():
    props = metadata_props(_card())
    assert props["model_type"] == "Segmentor"
    assert json.loads(props["class_names"]) == {"0": "water", "1": "forest"}
    assert props["resolution"] == "3000.0" and props["tiles_overlap"] == "25" and props["tile_size"] == "64"
    pixel = 765.0  # Deepness: (x/255 - m) / s must equal ours: (x - mean) / std
    for band, (m, s) in enumerate(zip(json.loads(props["standardization_mean"]),
                                      json.loads(props["standardization_std"]))):
        ours = (pixel - _card()["mean"][band]) / _card()["std"][band]
        assert (pixel / 255 - m) / s == pytest.approx(ours)


def test_card_read_back_from_our_metadata_and_from_deepness_keys_alone():
    props = metadata_props(_card())
    card, assumed = card_from_metadata(props, [None, 3, 64, 64], 2)
    assert card["classes"][1]["name"] == "forest" and assumed == []
    deepness_only = {k: v for k, v in props.items() if k != "landcover_card"}
    card, assumed = card_from_metadata(deepness_only, ["N", 3, 64, 64], 2)
    assert [c["name"] for c in card["classes"]] == ["water", "forest"]
    assert card["mean"] == pytest.approx([510.0, 255.0, 1020.0]) and card["resolution"] == [30.0, 30.0]


def test_bare_model_needs_names_per_output_and_says_what_it_assumed():
    card, assumed = card_from_metadata({}, [1, 4, 32, 32], 3)
    assert [c["name"] for c in card["classes"]] == ["class 1", "class 2", "class 3"]
    assert any("255" in a for a in assumed) and any("class names" in a for a in assumed)
    with pytest.raises(BadInputError, match="3 output channels but 2 class names"):
        card_from_metadata({}, [1, 4, 32, 32], 3, {"class_names": ["a", "b"]})
    card, _ = card_from_metadata({}, [1, 4, 32, 32], 2, {"class_names": ["a", "b"], "mean": [10], "std": [2]})
    assert card["mean"] == [10.0] * 4 and card["std"] == [2.0] * 4
