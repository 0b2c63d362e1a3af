"""Classify raster with model, with its optional uncertainty raster, in a real headless QGIS: written,
loaded and styled from certain to unsure."""
import processing
import rasterio
from classify_models import card_for, export, tiny_net
from qgis.core import QgsProject, QgsRectangle, QgsSingleBandPseudoColorRenderer

from landcover_plugin.core.model.card import metadata_props


def test_uncertainty_raster_is_written_and_loaded_styled(provider, shared_data, tmp_path):
    QgsProject.instance().removeAllMapLayers()
    card = card_for(["Water", "Forest", "Shrubland"], mean=[9000, 8000, 7500, 15000], std=[1000, 1200, 1500, 2500],
                    tile=64, input_dtype="uint16", resolution=[30.0, 30.0], crs="EPSG:32612")
    model = export(tiny_net(4, 3), tmp_path / "zion.onnx", 4, 64, metadata_props(card))
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    with rasterio.open(image) as src:
        left, top = src.bounds.left, src.bounds.top
    extent = QgsRectangle(left, top - 6000, left + 6000, top)  # 200 x 200 px
    uncertainty = str(tmp_path / "uncertainty.tif")
    results = processing.runAndLoadResults("landcover:classify_raster", {
        "INPUT": str(image), "MODEL": model, "EXTENT": extent, "UNCERTAINTY": uncertainty,
        "UNCERTAINTY_MEASURE": 1, "OUTPUT": str(tmp_path / "classes.tif")})
    assert results["UNCERTAINTY"] == uncertainty
    with rasterio.open(uncertainty) as src:
        values = src.read(1)
        assert src.dtypes[0] == "uint8" and src.nodata == 255 and src.shape == (200, 200)
    assert values.max() <= 100 and values.std() > 0  # margin, percent
    loaded = QgsProject.instance().mapLayersByName("Uncertainty (%)")
    assert len(loaded) == 1
    renderer = loaded[0].renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    assert renderer.classificationMax() == 100 and "unsure" in open(uncertainty[:-4] + ".qml").read()
    QgsProject.instance().removeAllMapLayers()
