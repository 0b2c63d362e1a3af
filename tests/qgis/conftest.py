"""Fixtures for tests that run inside QGIS (pytest-qgis)."""
import pytest

from landcover_plugin.plugin import LandcoverPlugin


@pytest.fixture(scope="module")
def provider(qgis_app, qgis_processing):
    """The plugin's provider registered in the Processing registry, as QGIS does at start-up."""
    plugin = LandcoverPlugin(None)
    plugin.initProcessing()
    yield plugin.provider
    plugin.unload()
