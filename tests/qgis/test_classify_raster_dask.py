"""Classify raster with model's Dask scheduler parameter in a real headless QGIS: advanced, optional, passed to
the engine's ``--dask`` (a real LocalCluster of one worker), the output a COG equal to a run without Dask."""
import numpy as np
import processing
import pytest
import rasterio
from classify_models import card_for, export, tiny_net
from osgeo import gdal
from qgis.core import QgsApplication, QgsPalettedRasterRenderer, QgsProcessingParameterDefinition, QgsRasterLayer

from landcover_plugin.core.model.card import metadata_props


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    card = card_for(["Water", "Forest", "Shrubland"], mean=[9000, 8000, 7500, 15000], std=[1000, 1200, 1500, 2500],
                    tile=64, input_dtype="uint16", resolution=[30.0, 30.0], crs="EPSG:32612")
    return export(tiny_net(4, 3), tmp_path_factory.mktemp("model") / "zion.onnx", 4, 64, metadata_props(card))


def test_dask_scheduler_is_an_advanced_optional_parameter(provider):
    algorithm = QgsApplication.processingRegistry().algorithmById("landcover:classify_raster")
    parameter = algorithm.parameterDefinition("DASK_SCHEDULER")
    assert parameter is not None and parameter.type() == "string"
    assert parameter.description().startswith("Dask scheduler")
    assert parameter.flags() & QgsProcessingParameterDefinition.FlagOptional
    assert parameter.flags() & QgsProcessingParameterDefinition.FlagAdvanced


def test_dask_scheduler_is_passed_to_the_engine(provider, model, shared_data, tmp_path):
    image = str(shared_data / "zion" / "landsat8_2015_b2345.tif")
    extent = "303000,318000,4140000,4150000 [EPSG:32612]"  # 500 x 333 px of Zion
    plain = processing.run("landcover:classify_raster", {"INPUT": image, "MODEL": model, "EXTENT": extent,
                                                         "OUTPUT": str(tmp_path / "plain.tif")})
    on_dask = processing.run("landcover:classify_raster", {"INPUT": image, "MODEL": model, "EXTENT": extent,
                                                           "DASK_SCHEDULER": " local:1 ",
                                                           "OUTPUT": str(tmp_path / "dask.tif")})
    assert on_dask["OUTPUT"] == str(tmp_path / "dask.tif")
    assert (tmp_path / "dask.shards" / "manifest.json").exists() and (tmp_path / "dask.vrt").exists()
    assert gdal.Info(on_dask["OUTPUT"], format="json")["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    with rasterio.open(on_dask["OUTPUT"]) as a, rasterio.open(plain["OUTPUT"]) as b:
        assert np.array_equal(a.read(1), b.read(1)) and a.transform == b.transform
    layer = QgsRasterLayer(on_dask["OUTPUT"], "dask")
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)  # the .qml beside it
    assert [c.label for c in layer.renderer().classes()] == ["Water", "Forest", "Shrubland"]


def test_confidence_or_uncertainty_with_dask_is_refused_in_the_dialog(provider, model, shared_data, tmp_path):
    """The help says 'not with confidence or uncertainty rasters', but the dialog took them and the engine refused
    them once the run had started."""
    from qgis.core import QgsProcessingContext

    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:classify_raster")
    base = {"INPUT": str(shared_data / "zion" / "landsat8_2015_b2345.tif"), "MODEL": model,
            "OUTPUT": str(tmp_path / "out.tif"), "DASK_SCHEDULER": "local:1"}
    context = QgsProcessingContext()
    ok, message = algorithm.checkParameterValues(dict(base, CONFIDENCE=str(tmp_path / "c.tif")), context)
    assert not ok and message.startswith("Confidence (%) cannot be written on Dask")
    ok, message = algorithm.checkParameterValues(
        dict(base, CONFIDENCE=str(tmp_path / "c.tif"), UNCERTAINTY=str(tmp_path / "u.tif")), context)
    assert not ok and "Confidence (%) and Uncertainty (%)" in message and "skip them" in message
    for fine in (base, dict(base, DASK_SCHEDULER="", UNCERTAINTY=str(tmp_path / "u.tif"))):
        ok, message = algorithm.checkParameterValues(fine, context)
        assert ok, message
