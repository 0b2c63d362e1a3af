"""Fixtures shared by the engine tests."""
import pytest
from classify_models import card_for, export, tiny_net, untrained_model

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import metadata_props


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A small untrained 4-band, 3-class model with our card (Zion's band statistics, 64 px tiles)."""
    card = card_for(["water", "forest", "shrubland"], mean=[9000, 8000, 7500, 15000],
                    std=[1000, 1200, 1500, 2500], tile=64, input_dtype="uint16", resolution=[30.0, 30.0])
    return export(tiny_net(4, 3), tmp_path_factory.mktemp("model") / "m.onnx", 4, 64, metadata_props(card))


@pytest.fixture
def zion_image(shared_data):
    return shared_data / "zion" / "landsat8_2015_b2345.tif"


@pytest.fixture(scope="session")
def eolearn_maps(shared_data, tmp_path_factory):
    """The eo-learn composite classified by an untrained 3-class model: ``classify_raster``'s outputs (OUTPUT,
    CONFIDENCE, UNCERTAINTY, ...), to be read only."""
    folder = tmp_path_factory.mktemp("eolearn_maps")
    image = shared_data / "eolearn" / "sentinel2_13band_composite.tif"
    model = untrained_model(image, folder / "m.onnx", ["cultivated", "forest", "grassland"],
                            tile=32, input_dtype="float32")
    return classify_raster(ClassifyOptions(image, model, folder / "map.tif", confidence=str(folder / "conf.tif"),
                                           uncertainty=str(folder / "unc.tif")), RecordingEvents())
