"""The classifier's confidence and uncertainty rasters, given where a classified map is wanted, are refused.

The probe's case (eo-learn): 'Assess accuracy' took the Confidence output (uint8 percent, 21..89) as the map and
reported an overall accuracy of 0.0 % against lulc.tif without a word; 'Create reference sample' took the
Uncertainty output as the map and drew a sample of 'classes' 27..100. Assess already refused the uncertainty
raster; the confidence raster now says what it is (its band description) and both steps refuse both.
"""
import pytest
import rasterio

from landcover_plugin.core.assess.assess import assess_accuracy
from landcover_plugin.core.assess.options import AssessOptions
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.sample.draw import create_sample
from landcover_plugin.core.sample.options import SampleOptions
from landcover_plugin.core.suggest.options import SuggestOptions
from landcover_plugin.core.suggest.suggest import suggest_areas


def test_the_confidence_raster_says_what_it_is(eolearn_maps):
    with rasterio.open(eolearn_maps["CONFIDENCE"]) as src:
        assert src.descriptions == ("confidence (percent)",) and src.dtypes[0] == "uint8"


@pytest.mark.parametrize("kind", ["CONFIDENCE", "UNCERTAINTY"])
def test_assess_and_sample_refuse_them_as_the_map(eolearn_maps, kind, shared_data, tmp_path):
    what = kind.lower()
    with pytest.raises(BadInputError, match=f"is the {what} raster .*, not the classified map"):
        assess_accuracy(AssessOptions(eolearn_maps[kind], reference_raster=str(shared_data / "eolearn" / "lulc.tif"),
                                      output_folder=str(tmp_path / "report")), RecordingEvents())
    with pytest.raises(BadInputError, match=f"is the {what} raster .*, not the classified map"):
        create_sample(SampleOptions(eolearn_maps[kind], str(tmp_path / "sample.gpkg"), size=50, seed=1),
                      RecordingEvents())
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_suggest_refuses_the_map_as_the_confidence_raster(eolearn_maps, tmp_path):
    with pytest.raises(BadInputError, match="is the classified map .*, not the confidence raster"):
        suggest_areas(SuggestOptions(output=str(tmp_path / "s.gpkg"), uncertainty=eolearn_maps["UNCERTAINTY"],
                                     classified=eolearn_maps["OUTPUT"], confidence=eolearn_maps["OUTPUT"]),
                      RecordingEvents())
    assert not (tmp_path / "s.gpkg").exists()


def test_a_raster_of_fractions_is_refused_as_the_map_by_every_step(eolearn_maps, shared_data, tmp_path):
    """A probability raster made elsewhere (float32 on the map's grid, no band description) is no classified map:
    assess, sample and suggest all refuse it, naming its pixel type (suggest used to take it without a word)."""
    with rasterio.open(eolearn_maps["CONFIDENCE"]) as src:
        profile, fractions = src.profile, src.read(1) / 100.0
    profile.update(dtype="float32", nodata=None)
    probability = tmp_path / "inputs" / "probability.tif"
    probability.parent.mkdir()
    with rasterio.open(probability, "w", **profile) as dst:
        dst.write(fractions.astype("float32"), 1)
    out = tmp_path / "out"
    out.mkdir()
    runs = [lambda: assess_accuracy(AssessOptions(str(probability), output_folder=str(out / "report"),
                                                  reference_raster=str(shared_data / "eolearn" / "lulc.tif")),
                                    RecordingEvents()),
            lambda: create_sample(SampleOptions(str(probability), str(out / "sample.gpkg"), size=50, seed=1),
                                  RecordingEvents()),
            lambda: suggest_areas(SuggestOptions(output=str(out / "s.gpkg"), uncertainty=eolearn_maps["UNCERTAINTY"],
                                                 classified=str(probability)), RecordingEvents())]
    for run in runs:
        with pytest.raises(BadInputError, match="has pixel type float32; it must hold integer class ids"):
            run()
    assert list(out.iterdir()) == []
