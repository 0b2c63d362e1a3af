"""Classify raster with model in a real headless QGIS: parameters -> engine -> a styled layer with a legend."""
import json
import os

import numpy as np
import processing
import pytest
import rasterio
from classify_models import card_for, export, tiny_net
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)

from landcover_plugin.core.model.card import metadata_props

NAMES = ["Water", "Forest", "Shrubland"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    card = card_for(NAMES, mean=[9000, 8000, 7500, 15000], std=[1000, 1200, 1500, 2500], tile=64,
                    input_dtype="uint16", resolution=[30.0, 30.0], crs="EPSG:32612")
    return export(tiny_net(4, 3), tmp_path_factory.mktemp("model") / "zion.onnx", 4, 64, metadata_props(card))


@pytest.fixture
def zion_layer(shared_data):
    layer = QgsRasterLayer(str(shared_data / "zion" / "landsat8_2015_b2345.tif"), "zion")
    assert layer.isValid()
    return layer


def a_piece(layer, crs=None):
    """An extent of about 300 x 250 px in the middle of the image, in ``crs`` (default: the layer's)."""
    full = layer.extent()
    piece = QgsRectangle(full.xMinimum() + 9000, full.yMinimum() + 15000, full.xMinimum() + 18000,
                         full.yMinimum() + 22500)
    if crs is not None:
        piece = QgsCoordinateTransform(layer.crs(), crs, QgsProject.instance()).transformBoundingBox(piece)
    return piece


def test_output_is_loaded_with_the_class_legend(provider, model, zion_layer, tmp_path, shared_data):
    QgsProject.instance().removeAllMapLayers()
    output, confidence = str(tmp_path / "classes.tif"), str(tmp_path / "confidence.tif")
    park = QgsVectorLayer(str(shared_data / "zion" / "park_boundary.gpkg"), "park", "ogr")
    # The extent given in WGS 84: the algorithm brings it into the raster's CRS.
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    extent = a_piece(zion_layer, wgs84)
    extent_text = f"{extent.xMinimum()},{extent.xMaximum()},{extent.yMinimum()},{extent.yMaximum()} [EPSG:4326]"
    results = processing.runAndLoadResults("landcover:classify_raster", {
        "INPUT": zion_layer, "MODEL": model, "EXTENT": extent_text, "MASK": park, "BATCH_SIZE": 2,
        "DEVICE": 1, "OVERLAP": 25, "CONFIDENCE": confidence, "OUTPUT": output})
    assert results["OUTPUT"] == output and results["CONFIDENCE"] == confidence
    loaded = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source() == output]
    assert len(loaded) == 1
    renderer = loaded[0].renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(c.value, c.label) for c in renderer.classes()] == [(1, "Water"), (2, "Forest"), (3, "Shrubland")]
    with rasterio.open(output) as out, rasterio.open(zion_layer.source()) as src:
        assert out.crs == src.crs and out.res == src.res
        left, top = out.transform.c, out.transform.f
        assert (left - src.transform.c) % 30 == 0 and (src.transform.f - top) % 30 == 0  # on the input grid
        assert out.width > 250 and out.height > 200
        labels = out.read(1)
    assert 0 < (labels == 0).mean() < 1  # the park edge crosses the piece: outside it is no data
    assert {int(v) for v in set(labels.ravel())} <= {0, 1, 2, 3}
    QgsProject.instance().removeAllMapLayers()


def test_a_raster_with_the_wrong_bands_fails_with_the_engines_message(provider, model, shared_data, tmp_path):
    layer = QgsRasterLayer(str(shared_data / "rstoolbox" / "landsat5_1988_7band.tif"), "landsat5")
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:classify_raster")
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    with pytest.raises(QgsProcessingException, match="raster has 7 bands but the model takes 4 bands"):
        algorithm.run({"INPUT": layer, "MODEL": model, "OUTPUT": str(tmp_path / "out.tif")}, context, feedback,
                      catchExceptions=False)
    assert not (tmp_path / "out.tif").exists()


def test_relative_paths_are_the_callers(provider, model, zion_layer, tmp_path, monkeypatch):
    """``qgis_process run ... -- INPUT=scene.tif OUTPUT=map.tif`` in a data folder: the engine starts in the plugin's
    folder, and read and wrote relative paths there ("The raster scene.tif does not exist")."""
    import shutil
    shutil.copy(zion_layer.source(), tmp_path / "scene.tif")
    shutil.copy(model, tmp_path / "model.onnx")
    monkeypatch.chdir(tmp_path)
    extent = a_piece(zion_layer)
    results = processing.run("landcover:classify_raster", {
        "INPUT": "scene.tif", "MODEL": "model.onnx", "OUTPUT": "map.tif", "DEVICE": 1, "CONFIDENCE": "conf.tif",
        "UNCERTAINTY": "unsure.tif",
        "EXTENT": f"{extent.xMinimum()},{extent.xMaximum()},{extent.yMinimum()},{extent.yMaximum()}"})
    assert (tmp_path / "map.tif").is_file() and (tmp_path / "map.qml").is_file()
    with rasterio.open(tmp_path / "map.tif") as out:
        assert out.width > 250 and set(out.read(1).ravel().tolist()) <= {0, 1, 2, 3}
    # absolute: valid for the next step of a graphical model or script run from any folder
    assert results["OUTPUT"] == str(tmp_path / "map.tif") and results["CONFIDENCE"] == str(tmp_path / "conf.tif")
    assert results["UNCERTAINTY"] == str(tmp_path / "unsure.tif")
    # the steps after Classify, given relative paths too
    steps = {"assess_accuracy": {"CLASSIFIED": "map.tif", "REFERENCE_RASTER": "map.tif", "OUTPUT_HTML": "acc.html"},
             "create_reference_sample": {"INPUT": "map.tif", "SIZE": 20, "SEED": 1, "OUTPUT": "sample.gpkg"},
             "suggest_training_areas": {"UNCERTAINTY": "unsure.tif", "CLASSIFIED": "map.tif", "COUNT": 3,
                                        "OUTPUT": "areas.gpkg"}}
    for name, parameters in steps.items():
        outputs = processing.run(f"landcover:{name}", parameters)
        paths = {key: value for key, value in outputs.items() if isinstance(value, str) and value}
        assert paths and all(os.path.isabs(value) and value.startswith(str(tmp_path)) for value in paths.values()), \
            (name, paths)
        assert all(os.path.exists(value.split("|", 1)[0]) for value in paths.values()), (name, paths)


def test_a_foreign_model_with_class_names_from_the_user(provider, zion_layer, tmp_path):
    bare = export(tiny_net(4, 3, seed=2), tmp_path / "bare.onnx", 4, 64)
    extent = a_piece(zion_layer)
    results = processing.run("landcover:classify_raster", {
        "INPUT": zion_layer, "MODEL": bare, "CLASS_NAMES": "sand, rock, snow", "MEAN": "9000,8000,7500,15000",
        "STD": "1500", "EXTENT": f"{extent.xMinimum()},{extent.xMaximum()},{extent.yMinimum()},"
                                 f"{extent.yMaximum()} [EPSG:32612]", "OUTPUT": str(tmp_path / "bare.tif")})
    layer = QgsRasterLayer(results["OUTPUT"], "bare")
    # The .qml beside the raster is its default style: the names show even when loaded by hand.
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)
    assert [c.label for c in layer.renderer().classes()] == ["sand", "rock", "snow"]


def test_a_virtual_layer_is_fetched_at_the_models_resolution(provider, zion_layer, tmp_path):
    # A non-file layer (QGIS's on-the-fly raster calculator) holding Zion's NIR band at 30 m.
    extent = a_piece(zion_layer)
    uri = (f"?crs=EPSG:32612&extent={extent.xMinimum()},{extent.yMinimum()},{extent.xMaximum()},"
           f"{extent.yMaximum()}&width=300&height=250&formula=%22zion@4%22"
           f"&zion:uri={zion_layer.source()}&zion:provider=gdal")
    virtual = QgsRasterLayer(uri, "nir", "virtualraster")
    assert virtual.isValid() and virtual.providerType() == "virtualraster"
    card = card_for(["dark", "bright"], mean=[15000], std=[2500], tile=32, input_dtype="float64",
                    resolution=[60.0, 60.0])
    model = export(tiny_net(1, 2), tmp_path / "nir60.onnx", 1, 32, metadata_props(card))
    results = processing.run("landcover:classify_raster", {"INPUT": virtual, "MODEL": model,
                                                           "OUTPUT": str(tmp_path / "nir.tif")})
    with rasterio.open(results["OUTPUT"]) as out:
        assert out.res == (60.0, 60.0)
        assert (out.width, out.height) == (150, 125)
        assert out.read(1).min() >= 1


def test_an_empty_map_is_reported_as_an_error_in_the_log(provider, model, tmp_path, shared_data):
    """All nodata in: the map is written, but Processing's log shows the cause as an error, not a success."""
    blank = tmp_path / "blank.tif"
    with rasterio.open(shared_data / "zion" / "landsat8_2015_b2345.tif") as src:
        window = ((100, 228), (100, 228))
        profile = dict(src.profile, width=128, height=128, transform=src.window_transform(window))
        data = src.read(window=window)
    data[:] = 65535
    with rasterio.open(blank, "w", **profile) as dst:
        dst.write(data)

    class Recording(QgsProcessingFeedback):
        errors = []

        def reportError(self, error, fatalError=False):  # noqa: N802, N803 - Qt's names
            self.errors.append((error, fatalError))
            super().reportError(error, fatalError)

    feedback = Recording()
    results = processing.run("landcover:classify_raster", {"INPUT": str(blank), "MODEL": model,
                                                           "OUTPUT": str(tmp_path / "out.tif")}, feedback=feedback)
    assert results["OUTPUT"] == str(tmp_path / "out.tif")
    assert any("empty (all no data)" in message and not fatal for message, fatal in feedback.errors)


def test_the_classes_are_weighed_by_the_models_scene_shares_unless_unticked(provider, zion_layer, tmp_path):
    # a card holding the scene's class shares (as the trainer writes for a model trained on polygons): Water
    # weighed 1, the others almost nothing
    card = card_for(NAMES, mean=[9000, 8000, 7500, 15000], std=[1000, 1200, 1500, 2500], tile=64,
                    input_dtype="uint16", resolution=[30.0, 30.0], crs="EPSG:32612")
    card["class_shares"] = {"weights": [1.0, 1e-6, 1e-6], "scene_shares": [0.98, 0.01, 0.01],
                            "learned_shares": [1 / 3] * 3, "class_ids": [1, 2, 3]}
    weighed_model = export(tiny_net(4, 3), tmp_path / "shares.onnx", 4, 64, metadata_props(card))
    shares = {}
    for weigh in (True, False):
        output = str(tmp_path / f"weighed_{weigh}.tif")
        processing.run("landcover:classify_raster", {
            "INPUT": zion_layer, "MODEL": weighed_model, "EXTENT": a_piece(zion_layer), "DEVICE": 1,
            "WEIGH_CLASS_SHARES": weigh, "OUTPUT": output})
        with rasterio.open(output) as out:
            labels = out.read(1)
        shares[weigh] = np.bincount(labels[labels > 0], minlength=4)[1:] / (labels > 0).sum()
    assert shares[True][0] > 0.99  # weighed: Water wherever the model gives it any chance
    assert shares[False][0] < 0.9  # the model's own probabilities: the untrained net spreads its classes


def test_another_date_is_matched_to_the_training_raster_when_ticked(provider, zion_layer, tmp_path, shared_data):
    """The dialog's 'Match to the training raster' reaches the engine: a piece of Zion 15 % brighter is read
    with the gain that undoes it, recorded in the map; without the training raster the run fails, saying so."""
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    card = card_for(NAMES, mean=[9000, 8000, 7500, 15000], std=[1000, 1200, 1500, 2500], tile=64,
                    input_dtype="uint16", resolution=[30.0, 30.0], crs="EPSG:32612")
    card["training"], card["source"] = {}, {"image": str(image)}
    matching = export(tiny_net(4, 3), tmp_path / "dated.onnx", 4, 64, metadata_props(card))
    with rasterio.open(image) as src:
        window = ((300, 556), (300, 556))
        data = src.read(window=window).astype(np.float64) * 1.15
        profile = dict(src.profile, width=256, height=256, transform=src.window_transform(window))
    brighter = tmp_path / "brighter.tif"
    with rasterio.open(brighter, "w", **profile) as dst:
        dst.write(np.round(data).astype(np.uint16))
    output = str(tmp_path / "matched.tif")
    processing.run("landcover:classify_raster", {"INPUT": str(brighter), "MODEL": matching, "DEVICE": 1,
                                                 "MATCH_TRAINING_RASTER": True, "OUTPUT": output})
    with rasterio.open(output) as out:
        record = json.loads(out.tags()["landcover_model"])
    assert np.allclose(record["matched_to_training"]["gain"], 1 / 1.15, rtol=0.01)
    card["source"] = {"image": str(tmp_path / "gone.tif")}
    lost = export(tiny_net(4, 3), tmp_path / "lost.onnx", 4, 64, metadata_props(card))
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:classify_raster")
    with pytest.raises(QgsProcessingException, match="gone.tif, not found here"):
        algorithm.run({"INPUT": str(brighter), "MODEL": lost, "MATCH_TRAINING_RASTER": True,
                       "OUTPUT": str(tmp_path / "lost.tif")}, QgsProcessingContext(), QgsProcessingFeedback(),
                      catchExceptions=False)
    assert not (tmp_path / "lost.tif").exists()
