"""Fixtures shared by the engine tests."""
import pytest
from classify_models import card_for, export, tiny_net

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
