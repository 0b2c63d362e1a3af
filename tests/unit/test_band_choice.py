"""Which raster bands classify feeds a model: given, the card's source bands, or 1..n; else a clear refusal."""
import pytest

from landcover_plugin.core.band_choice import choose_bands, describe_model_bands, name_mismatch_warning, parse_bands
from landcover_plugin.core.errors import BadInputError

RED_BLUE_GREEN = {"count": 3, "names": ["red", "blue", "green"], "source_bands": [3, 1, 2], "source_count": 4}


def test_band_numbers_parse_from_lists_text_and_empty():
    assert parse_bands(["3", "1", "2"]) == [3, 1, 2] == parse_bands("3,1,2") == parse_bands(["3,1", 2])
    assert parse_bands(None) is None and parse_bands([]) is None and parse_bands("") is None
    with pytest.raises(BadInputError, match="band numbers .* got 'red'"):
        parse_bands(["red"])


@pytest.mark.parametrize("raster_count, expected, how", [
    (4, [3, 1, 2], "source"),  # the training raster itself
    (6, [3, 1, 2], "source"),  # more bands than the model takes: the recorded ones
    (3, [1, 2, 3], "in their order"),  # a raster made of the model's bands, in its order
])
def test_default_bands_follow_the_card_when_the_raster_looks_like_the_source(raster_count, expected, how):
    bands, said = choose_bands(raster_count, RED_BLUE_GREEN)
    assert bands == expected and how in said


def test_a_reordered_source_of_the_same_count_is_read_in_the_cards_order():
    card = {"count": 3, "names": ["band 3", "band 2", "band 1"], "source_bands": [3, 2, 1], "source_count": 3}
    assert choose_bands(3, card)[0] == [3, 2, 1]
    assert choose_bands(3, card, ["1", "2", "3"]) == ([1, 2, 3], "as given")


def test_an_older_card_without_source_bands_takes_bands_one_to_n_or_refuses():
    card = {"count": 4, "names": ["b1", "b2", "b3", "b4"]}
    assert choose_bands(4, card)[0] == [1, 2, 3, 4]
    with pytest.raises(BadInputError) as info:
        choose_bands(7, card)
    assert ("The raster has 7 bands but the model takes 4 bands, in this order: 1 'b1', 2 'b2', 3 'b3', 4 'b4'"
            in info.value.message and "--bands, e.g. 1 2 3 4" in info.value.message)


def test_too_few_bands_wrong_counts_and_repeated_bands_are_refused():
    with pytest.raises(BadInputError, match=r"raster has too few bands for the model \(2 of 3\): the model takes 3 "
                                            r"bands.*'red' .source band 3."):
        choose_bands(2, RED_BLUE_GREEN)
    with pytest.raises(BadInputError, match="2 bands given .4, 1. but the model takes 3 bands"):
        choose_bands(4, RED_BLUE_GREEN, [4, 1])
    with pytest.raises(BadInputError, match="Band.s. 1 chosen more than once"):
        choose_bands(4, RED_BLUE_GREEN, [1, 1, 2])
    assert describe_model_bands(RED_BLUE_GREEN).startswith("3 bands, in this order: 1 'red' (source band 3)")


def test_a_raster_lacking_the_recorded_source_bands_is_not_told_to_feed_bands_one_to_n(shared_data):
    """The probe's case: chips of the eo-learn composite's bands 4, 3, 2, 8 (of 13), then a 5-band copy of its
    bands 1-5 to classify. The refusal suggested 'e.g. 1 2 3 4', which feeds blue, green, red and red edge where
    the model takes red, green, blue and NIR."""
    import rasterio  # noqa: PLC0415

    with rasterio.open(shared_data / "eolearn" / "sentinel2_13band_composite.tif") as src:
        count = src.count
    card = {"count": 4, "names": ["band 4", "band 3", "band 2", "band 8"], "source_bands": [4, 3, 2, 8],
            "source_count": count}
    with pytest.raises(BadInputError) as info:
        choose_bands(5, card)
    assert "e.g. 1 2 3 4" not in info.value.message
    assert "the model learnt from bands 4, 3, 2, 8 of a 13-band raster: give the bands of this raster that hold " \
           "those" in info.value.message


TWO_RASTERS = {"count": 4, "names": ["band 1", "band 2", "band 3", "band 4"], "source_bands": [1, 2, 3, 4],
               "source_count": 4, "source_choices": [{"source_bands": [1, 2, 3, 4], "source_count": 4},
                                                     {"source_bands": [2, 3, 4, 5], "source_count": 5}]}


@pytest.mark.parametrize("raster_count, expected", [(4, [1, 2, 3, 4]), (5, [2, 3, 4, 5])])
def test_a_model_of_rasters_whose_bands_were_chosen_differently_reads_each_by_its_choice(raster_count, expected):
    bands, said = choose_bands(raster_count, TWO_RASTERS)
    assert bands == expected and f"training raster of {raster_count} bands" in said


def test_a_raster_like_none_of_the_training_rasters_is_refused_with_every_choice_named():
    with pytest.raises(BadInputError, match="the model learnt from bands 1, 2, 3, 4 of a 4-band raster; bands 2, 3, "
                                            "4, 5 of a 5-band raster: give the bands"):
        choose_bands(6, TWO_RASTERS)
    alike = dict(TWO_RASTERS, source_choices=[{"source_bands": [1, 2, 3, 4], "source_count": 4},
                                              {"source_bands": [4, 3, 2, 1], "source_count": 4}])
    with pytest.raises(BadInputError, match="rasters of 4 bands whose bands were chosen differently"):
        choose_bands(4, alike)
    assert choose_bands(4, alike, [4, 3, 2, 1])[0] == [4, 3, 2, 1]


def test_one_choice_of_bands_from_rasters_of_several_counts_is_read_from_either():
    card = dict(TWO_RASTERS, source_choices=[{"source_bands": [1, 2, 3, 4], "source_count": 4},
                                             {"source_bands": [1, 2, 3, 4], "source_count": 7}])
    assert choose_bands(7, card)[0] == [1, 2, 3, 4] == choose_bands(6, card)[0]


BGRN = {"count": 4, "names": ["Blue", "green", "red", "NIR"], "source_bands": [1, 2, 3, 4], "source_count": 4}


@pytest.mark.parametrize("raster_names, expected", [
    (("red", "green", "blue", "nir"), [3, 2, 1, 4]),  # restacked: the names, not the band numbers
    (("coastal", "blue", "green", "red", "nir", "swir1"), [2, 3, 4, 5]),  # more bands, shifted
    ((" BLUE ", "Green", "RED", "nir"), [1, 2, 3, 4]),  # case and spaces do not matter
])
def test_bands_named_as_the_models_are_read_whatever_their_numbers(raster_names, expected):
    bands, said = choose_bands(len(raster_names), BGRN, raster_names=raster_names)
    assert bands == expected and said == "the raster's bands named as the model's"
    assert name_mismatch_warning(bands, BGRN, raster_names) is None


@pytest.mark.parametrize("raster_names", [
    None,  # no descriptions read
    (None, None, None, None, None),  # a raster without band descriptions
    ("B2", "B3", "B4", "B8", "B11"),  # another naming convention
    ("blue", "green", "red", "red", "nir"),  # 'red' twice: no sure match
    ("blue", "green", "red", "swir1", "swir2"),  # 'nir' missing
])
def test_without_a_sure_match_by_name_the_band_numbers_decide(raster_names):
    assert choose_bands(5, BGRN, raster_names=raster_names) == ([1, 2, 3, 4],
                                                                "the training source's bands, recorded in the model")


def test_a_model_without_band_names_is_not_matched_by_name():
    assert choose_bands(4, RED_BLUE_GREEN | {"names": ["band 3", "band 1", "band 2"]},
                        raster_names=("band 3", "band 1", "band 2", "nir"))[0] == [3, 1, 2]


def test_names_fed_to_other_bands_of_the_model_are_reported_with_the_fix():
    restacked = ("red", "green", "blue", "nir")
    message = name_mismatch_warning([1, 2, 3, 4], BGRN, restacked)  # e.g. Bands 1 2 3 4 given
    assert ("raster band 1 'red' is fed to the model's band 1 'Blue'; the raster's band 3 is named 'blue'; raster "
            "band 3 'blue' is fed to the model's band 3 'red'; the raster's band 1 is named 'red'.") in message
    assert "green" not in message and "Choose Bands 3 2 1 4 (the bands named as the model's)" in message
    partly = ("red", "green", "blue", "swir1")  # no full match: the advice cannot name the bands
    message = name_mismatch_warning([1, 2, 3, 4], BGRN, partly)
    assert "raster band 4" not in message and "Choose the raster bands that hold" in message
    assert name_mismatch_warning([1, 2, 3, 4], BGRN, ("B2", "B3", "B4", "B8")) is None
    assert name_mismatch_warning([1, 2, 3, 4], BGRN, (None, "green", None, None)) is None


def test_names_by_position_are_not_names():
    """ERDAS Imagine's 'Layer_3' is the third band of whatever file, not a kind of band: a 3-band extract of bands
    2-4 fed its bands 2 and 3 by hand gets no warning that 'Layer_3' is its band 3."""
    card = {"count": 2, "names": ["Layer_3", "Layer_4"], "source_bands": [3, 4], "source_count": 4}
    assert name_mismatch_warning([2, 3], card, ("Layer_1", "Layer_2", "Layer_3")) is None
    assert choose_bands(4, card, raster_names=("Layer_4", "Layer_3", "x", "y"))[0] == [3, 4]


def test_sensor_band_numbers_match_with_or_without_leading_zeros():
    """Sentinel-2 bands as Earth Engine names them (B2, B8A) against SNAP's names (B02, B8A), in another order."""
    card = {"count": 4, "names": ["B2", "B3", "B4", "B8A"], "source_bands": [1, 2, 3, 4], "source_count": 4}
    assert choose_bands(5, card, raster_names=("B8A", "B04", "B03", "B02", "B11"))[0] == [4, 3, 2, 1]
    assert choose_bands(5, card, raster_names=("B8", "B04", "B03", "B02", "B11"))[0] == [1, 2, 3, 4]  # no B8A


def test_a_model_of_unnamed_bands_reads_an_rgba_raster_without_its_alpha():
    card = {"count": 3, "names": ["band 1", "band 2", "band 3"]}  # e.g. a Deepness model: no names, no source
    assert choose_bands(4, card, alpha=4) == ([1, 2, 3], "the raster's bands but its alpha band")
    assert choose_bands(4, card, alpha=1)[0] == [2, 3, 4]
    with pytest.raises(BadInputError, match="The raster has 4 bands but the model takes 3"):
        choose_bands(4, card)  # no alpha: which three is the analyst's call
    assert choose_bands(3, card, alpha=3)[0] == [1, 2, 3]  # the model's count: read as it is
