"""Suggested squares never overlap, whatever the minimum distance: automatic, 0, or less than a square needs.

The probe's case: 500 places asked of the eo-learn composite's uncertainty (100 x 101 px, 10 m): the automatic
distance came out at 21.1 m between the centres of 5 px (50 m) squares, so most squares overlapped others and
the same place was offered for labelling several times. The engine's ``--min-distance 0`` then still meant no
minimum at all (overlapping squares), while 0 in the dialog means automatic.
"""
import itertools

import pytest
import rasterio
from osgeo import ogr

from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.suggest.options import SuggestOptions
from landcover_plugin.core.suggest.suggest import suggest_areas


@pytest.fixture
def uncertainty(eolearn_maps):
    return eolearn_maps["UNCERTAINTY"]


def overlapping_pairs(path):
    source = ogr.Open(str(path))
    squares = [f.GetGeometryRef().Clone() for f in source.GetLayer("suggested_areas")]
    return [(a, b) for a, b in itertools.combinations(range(len(squares)), 2)
            if squares[a].Intersection(squares[b]).GetArea() > 1e-6]


def test_many_places_on_a_small_raster_give_squares_that_do_not_overlap(uncertainty, tmp_path):
    events = RecordingEvents()
    result = suggest_areas(SuggestOptions(output=str(tmp_path / "s.gpkg"), uncertainty=uncertainty, count=500),
                           events)
    assert 0 < result["COUNT"] < 500
    assert not overlapping_pairs(tmp_path / "s.gpkg")
    (warning,) = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert f"Only {result['COUNT']} places found" in warning and "ask for fewer places or smaller squares" in warning


def test_a_minimum_distance_of_0_is_the_automatic_one_as_in_the_dialog(uncertainty, tmp_path):
    automatic = suggest_areas(SuggestOptions(output=str(tmp_path / "a.gpkg"), uncertainty=uncertainty, count=40),
                              RecordingEvents())
    zero = suggest_areas(SuggestOptions(output=str(tmp_path / "z.gpkg"), uncertainty=uncertainty, count=40,
                                        min_distance=0.0), RecordingEvents())
    assert not overlapping_pairs(tmp_path / "z.gpkg")
    assert (zero["COUNT"], zero["MIN_DISTANCE"]) == (automatic["COUNT"], automatic["MIN_DISTANCE"])
    assert zero["MIN_DISTANCE"] > 50  # not 0: 5 px squares of 10 m


def test_a_distance_too_small_for_the_squares_is_raised_and_the_log_says_so(uncertainty, tmp_path):
    events = RecordingEvents()
    result = suggest_areas(SuggestOptions(output=str(tmp_path / "s.gpkg"), uncertainty=uncertainty, count=500,
                                          min_distance=15.0), events)
    assert not overlapping_pairs(tmp_path / "s.gpkg")
    with rasterio.open(uncertainty) as src:
        diagonal = 5 * max(abs(src.transform.a), abs(src.transform.e)) * 2 ** 0.5  # of the 5 px (about 50 m) squares
    assert result["MIN_DISTANCE"] == pytest.approx(diagonal)
    assert any(e["message"].startswith("The minimum distance 15 m would let 5 px squares overlap: 70.7 m is used")
               for e in events.of_type("log")), events.of_type("log")
