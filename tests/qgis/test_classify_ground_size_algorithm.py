"""Classify raster with model fetches a web or virtual layer at the model's resolution on the ground: in Web
Mercator (the CRS of XYZ and most web layers) 30 m at Zion is 37.8 units; fetched at 30 units, the model saw
everything 1.26x too big. In degrees (EPSG:4326, many WMS services) it was not fetched at all: "no native
resolution", though the model records one."""
import processing
import pytest
import rasterio
from classify_models import card_for, export, tiny_net
from osgeo import gdal
from qgis.core import QgsProcessingFeedback, QgsRasterLayer

from landcover_plugin.core.ground import ground_scale
from landcover_plugin.core.model.card import metadata_props


class Recording(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.lines = []

    def pushInfo(self, info):  # noqa: N802 - QGIS's name
        self.lines.append(info)
        super().pushInfo(info)


def classify_virtual(uri, tmp_path) -> tuple:
    """Classify raster with model on a virtual raster layer (QGIS's on-the-fly raster calculator, a non-file
    layer) with a one-band model trained at 30 m: ``(results, feedback)``."""
    virtual = QgsRasterLayer(uri, "nir", "virtualraster")
    assert virtual.isValid() and virtual.providerType() == "virtualraster"
    card = card_for(["dark", "bright"], mean=[15000], std=[2500], tile=32, input_dtype="float64",
                    resolution=[30.0, 30.0])
    model = export(tiny_net(1, 2), tmp_path / "nir30.onnx", 1, 32, metadata_props(card))
    feedback = Recording()
    results = processing.run("landcover:classify_raster", {"INPUT": virtual, "MODEL": model,
                                                           "OUTPUT": str(tmp_path / "nir.tif")}, feedback=feedback)
    return results, feedback


def test_a_web_mercator_virtual_layer_is_fetched_at_the_models_size_on_the_ground(provider, shared_data, tmp_path):
    mercator = tmp_path / "zion_3857.tif"
    gdal.Warp(str(mercator), str(shared_data / "zion" / "landsat8_2015_b2345.tif"), dstSRS="EPSG:3857",
              xRes=30, yRes=30, resampleAlg="near")
    with rasterio.open(mercator) as src:  # a piece 9000 x 7500 units wide around its centre
        cx, cy = src.transform * (src.width / 2, src.height / 2)
        expected = 30.0 / ground_scale(src.crs.to_wkt(), cx, cy)
    xmin, ymin, xmax, ymax = cx - 4500, cy - 3750, cx + 4500, cy + 3750
    # A non-file layer (QGIS's on-the-fly raster calculator) holding the NIR band, in EPSG:3857.
    uri = (f"?crs=EPSG:3857&extent={xmin},{ymin},{xmax},{ymax}&width=300&height=250&formula=%22zion@4%22"
           f"&zion:uri={mercator}&zion:provider=gdal")
    results, feedback = classify_virtual(uri, tmp_path)
    assert 37.0 < expected < 38.5
    with rasterio.open(results["OUTPUT"]) as out:
        assert abs(out.res[0] - expected) < 0.1  # fetched at 30 m on the ground, not at 30 units (24 m)
        assert (out.width, out.height) == (round(9000 / expected), round(7500 / expected))
        assert out.read(1).min() >= 1
    assert any(f"at {expected:.1f} EPSG:3857 units per pixel: the model's 30 m on the ground" in line
               for line in feedback.lines)


def test_a_virtual_layer_in_degrees_is_fetched_at_the_models_size_on_the_ground(provider, shared_data, tmp_path):
    wgs84 = tmp_path / "zion_4326.tif"
    gdal.Warp(str(wgs84), str(shared_data / "zion" / "landsat8_2015_b2345.tif"), dstSRS="EPSG:4326",
              resampleAlg="near")
    with rasterio.open(wgs84) as src:  # a piece 0.1 x 0.08 degrees around its centre
        cx, cy = src.transform * (src.width / 2, src.height / 2)
    xmin, ymin, xmax, ymax = cx - 0.05, cy - 0.04, cx + 0.05, cy + 0.04
    uri = (f"?crs=EPSG:4326&extent={xmin},{ymin},{xmax},{ymax}&width=300&height=250&formula=%22zion@4%22"
           f"&zion:uri={wgs84}&zion:provider=gdal")
    results, feedback = classify_virtual(uri, tmp_path)
    with rasterio.open(results["OUTPUT"]) as out:  # 30 m each way on the ground at 37.3 N
        assert out.crs.to_epsg() == 4326
        assert out.res[0] == pytest.approx(0.000338, rel=0.005) and out.res[1] == pytest.approx(0.000270, rel=0.005)
        assert out.read(1).min() >= 1
    assert any("units per pixel: the model's 30 m on the ground" in line and "EPSG:4326" in line
               for line in feedback.lines)
