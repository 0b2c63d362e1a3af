"""Suggested squares never overlap when the distance between them is automatic.

The probe's case: 500 places asked of the eo-learn composite's uncertainty (100 x 101 px, 10 m): the automatic
distance came out at 21.1 m between the centres of 5 px (50 m) squares, so most squares overlapped others and
the same place was offered for labelling several times.
"""
import itertools

from classify_models import band_stats, card_for, export, tiny_net
from osgeo import ogr

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import metadata_props
from landcover_plugin.core.suggest.options import SuggestOptions
from landcover_plugin.core.suggest.suggest import suggest_areas


def test_many_places_on_a_small_raster_give_squares_that_do_not_overlap(shared_data, tmp_path):
    image = shared_data / "eolearn" / "sentinel2_13band_composite.tif"
    mean, std = band_stats(image)
    card = card_for(["cultivated", "forest", "grassland"], mean=mean, std=std, tile=32, input_dtype="float32")
    model = export(tiny_net(13, 3), tmp_path / "m.onnx", 13, 32, metadata_props(card))
    outputs = classify_raster(ClassifyOptions(image, model, tmp_path / "map.tif",
                                              uncertainty=str(tmp_path / "unc.tif")), RecordingEvents())
    events = RecordingEvents()
    result = suggest_areas(SuggestOptions(output=str(tmp_path / "s.gpkg"), uncertainty=outputs["UNCERTAINTY"],
                                          count=500), events)
    assert 0 < result["COUNT"] < 500
    source = ogr.Open(str(tmp_path / "s.gpkg"))
    squares = [f.GetGeometryRef().Clone() for f in source.GetLayer("suggested_areas")]
    overlapping = [(a, b) for a, b in itertools.combinations(range(len(squares)), 2)
                   if squares[a].Intersection(squares[b]).GetArea() > 1e-6]
    assert not overlapping, f"{len(overlapping)} overlapping pairs of {len(squares)} squares"
    (warning,) = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert f"Only {result['COUNT']} places found" in warning and "ask for fewer places or smaller squares" in warning
