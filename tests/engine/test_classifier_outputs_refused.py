"""The classifier's confidence and uncertainty rasters, given where a classified map is wanted, are refused.

The probe's case (eo-learn): 'Assess accuracy' took the Confidence output (uint8 percent, 21..89) as the map and
reported an overall accuracy of 0.0 % against lulc.tif without a word; 'Create reference sample' took the
Uncertainty output as the map and drew a sample of 'classes' 27..100. Assess already refused the uncertainty
raster; the confidence raster now says what it is (its band description) and both steps refuse both.
"""
import pytest
import rasterio
from classify_models import untrained_model

from landcover_plugin.core.assess.assess import assess_accuracy
from landcover_plugin.core.assess.options import AssessOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.sample.draw import create_sample
from landcover_plugin.core.sample.options import SampleOptions
from landcover_plugin.core.suggest.options import SuggestOptions
from landcover_plugin.core.suggest.suggest import suggest_areas


@pytest.fixture(scope="module")
def outputs(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("eolearn_outputs")
    image = shared_data / "eolearn" / "sentinel2_13band_composite.tif"
    model = untrained_model(image, folder / "m.onnx", ["cultivated", "forest", "grassland"],
                            tile=32, input_dtype="float32")
    return classify_raster(ClassifyOptions(image, model, folder / "map.tif", confidence=str(folder / "conf.tif"),
                                           uncertainty=str(folder / "unc.tif")), RecordingEvents())


def test_the_confidence_raster_says_what_it_is(outputs):
    with rasterio.open(outputs["CONFIDENCE"]) as src:
        assert src.descriptions == ("confidence (percent)",) and src.dtypes[0] == "uint8"


@pytest.mark.parametrize("kind", ["CONFIDENCE", "UNCERTAINTY"])
def test_assess_and_sample_refuse_them_as_the_map(outputs, kind, shared_data, tmp_path):
    what = kind.lower()
    with pytest.raises(BadInputError, match=f"is the {what} raster .*, not the classified map"):
        assess_accuracy(AssessOptions(outputs[kind], reference_raster=str(shared_data / "eolearn" / "lulc.tif"),
                                      output_folder=str(tmp_path / "report")), RecordingEvents())
    with pytest.raises(BadInputError, match=f"is the {what} raster .*, not the classified map"):
        create_sample(SampleOptions(outputs[kind], str(tmp_path / "sample.gpkg"), size=50, seed=1),
                      RecordingEvents())
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_suggest_refuses_the_map_as_the_confidence_raster(outputs, tmp_path):
    with pytest.raises(BadInputError, match="is the classified map .*, not the confidence raster"):
        suggest_areas(SuggestOptions(output=str(tmp_path / "s.gpkg"), uncertainty=outputs["UNCERTAINTY"],
                                     classified=outputs["OUTPUT"], confidence=outputs["OUTPUT"]), RecordingEvents())
    assert not (tmp_path / "s.gpkg").exists()
