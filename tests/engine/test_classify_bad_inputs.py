"""Bad input to the classifier: each gives a clear message naming both sides, and no output is left."""
import json
import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from classify_models import card_for, export, tiny_net, untrained_model
from osgeo import gdal

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError, Cancelled
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import metadata_props


def small_extent(image, rows=(100, 260), cols=(100, 300)):
    with rasterio.open(image) as src:
        x0, y0 = src.xy(rows[1], cols[0])
        x1, y1 = src.xy(rows[0], cols[1])
    return (x0, y0, x1, y1)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_wrong_band_count_names_both_counts(model, shared_data, tmp_path):
    with pytest.raises(BadInputError, match="raster has 7 bands but the model takes 4 bands"):
        classify_raster(ClassifyOptions(shared_data / "rstoolbox" / "landsat5_1988_7band.tif", model,
                                        tmp_path / "out.tif"))
    assert leftovers(tmp_path) == []


def test_a_raster_with_too_few_bands_says_so_without_suggesting_bands_it_lacks(zion_image, tmp_path):
    """The probe's case: the 4-band Zion raster and a 7-band model. It suggested "e.g. 1 2 3 4 5 6 7"."""
    card = card_for(["a", "b"], mean=[50.0] * 7, std=[10.0] * 7, tile=64, input_dtype="uint16")
    seven = export(tiny_net(7, 2), tmp_path / "seven.onnx", 7, 64, metadata_props(card))
    with pytest.raises(BadInputError) as info:
        classify_raster(ClassifyOptions(zion_image, seven, tmp_path / "out" / "map.tif"))
    assert info.value.message.startswith("The raster has too few bands for the model (4 of 7): the model takes 7 "
                                         "bands")
    assert "e.g." not in info.value.message and "5 6 7" not in info.value.message
    assert not (tmp_path / "out").exists()


def test_a_file_that_is_not_onnx(zion_image, tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_text("this is not a model")
    with pytest.raises(BadInputError, match="is not a usable ONNX model"):
        classify_raster(ClassifyOptions(zion_image, fake, tmp_path / "out.tif"))
    with pytest.raises(BadInputError, match="does not exist"):
        classify_raster(ClassifyOptions(zion_image, tmp_path / "missing.onnx", tmp_path / "out.tif"))


def test_a_model_with_no_usable_output(zion_image, tmp_path):
    import torch  # noqa: PLC0415 - only this test needs a classifier net

    classifier = torch.nn.Sequential(torch.nn.Conv2d(4, 5, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                     torch.nn.Softmax(dim=1)).eval()
    path = export(classifier, tmp_path / "classifier.onnx", 4, 64)
    with pytest.raises(BadInputError, match=r"has no usable output.*\(N, classes, height, width\)"):
        classify_raster(ClassifyOptions(zion_image, path, tmp_path / "out.tif"))


def test_an_extent_outside_the_raster(model, zion_image, tmp_path):
    with pytest.raises(BadInputError, match=r"does not overlap the raster, which covers 301905, 4111245, "):
        classify_raster(ClassifyOptions(zion_image, model, tmp_path / "out.tif", extent=(0, 0, 1000, 1000)))
    assert leftovers(tmp_path) == []


def test_an_extent_outside_the_raster_is_told_in_full_coordinates(shared_data, tmp_path):
    """The probe's case: an extent 10 km north-east of the eo-learn composite was told as '475300, 5.0894e+06,
    475900, 5.09e+06' against a raster covering '465181, 5.07924e+06, 466181, 5.08025e+06': northings rounded to
    the km, where a near miss would read as an overlap."""
    image = shared_data / "eolearn" / "sentinel2_13band_composite.tif"
    s2_model = untrained_model(image, tmp_path / "s2.onnx", ["cultivated", "forest"], tile=32, input_dtype="float32")
    with pytest.raises(BadInputError) as raised:
        classify_raster(ClassifyOptions(image, s2_model, tmp_path / "out.tif",
                                        extent=(475300, 5089400, 475900, 5090000)))
    assert "The extent 475300, 5089400, 475900, 5090000 does not overlap the raster, which covers 465181.0522, " \
           "5079244.891, 466180.5315, 5080254.633 in its CRS" in str(raised.value)
    assert leftovers(tmp_path) == ["s2.onnx"]


def test_an_existing_output_is_kept_unless_overwriting(model, zion_image, tmp_path):
    output = tmp_path / "out.tif"
    output.write_bytes(b"keep me")
    with pytest.raises(BadInputError, match="already exists.*--overwrite"):
        classify_raster(ClassifyOptions(zion_image, model, output, extent=small_extent(zion_image)))
    assert output.read_bytes() == b"keep me"
    classify_raster(ClassifyOptions(zion_image, model, output, extent=small_extent(zion_image), overwrite=True))
    with rasterio.open(output) as out:
        assert out.read(1).min() >= 1
    with pytest.raises(BadInputError, match="is also an input"):
        classify_raster(ClassifyOptions(output, model, output, overwrite=True))
    with pytest.raises(BadInputError, match="must be a GeoTIFF"):
        classify_raster(ClassifyOptions(zion_image, model, tmp_path / "out.png"))


def test_a_full_disk_fails_cleanly(model, zion_image, tmp_path):
    """The engine with a 60 kB file-size limit: GDAL's write fails; the partial file is removed."""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # stays ignored across exec: writes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))

    output = tmp_path / "out" / "classes.tif"
    completed = subprocess.run(
        [sys.executable, "-m", "landcover_plugin.core.engine", "classify", "--raster", str(zion_image),
         "--model", model, "--output", str(output)], capture_output=True, text=True, timeout=120,
        preexec_fn=limit_file_size)
    events = [json.loads(line) for line in completed.stdout.splitlines()]
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "bad_input"
    message = events[-1]["message"]
    assert f"Writing {output} failed: " in message and "file-size limit" in message
    assert "The partial file was removed" in message
    assert leftovers(output.parent) == []


@pytest.mark.parametrize("pipelined", [False, True])
def test_cancel_removes_the_partial_output(model, zion_image, tmp_path, pipelined):
    class CancelAfterFirstTiles(RecordingEvents):
        def progress(self, fraction, message=""):
            super().progress(fraction, message)
            if fraction > 0:
                self.cancel_requested = True

    with pytest.raises(Cancelled):
        classify_raster(ClassifyOptions(zion_image, model, tmp_path / "out.tif", confidence=tmp_path / "conf.tif",
                                        pipelined=pipelined), events=CancelAfterFirstTiles())
    assert leftovers(tmp_path) == []


def test_a_pixel_type_other_than_the_models_is_warned_about(shared_data, tmp_path):
    image = tmp_path / "landsat5.tif"
    with rasterio.open(shared_data / "rstoolbox" / "landsat5_1988_7band.tif") as src:
        profile, data = src.profile, src.read()
    data[2, 40:90, 30:200] = 255  # nodata (255) in one band: output nodata
    with rasterio.open(image, "w", **profile) as dst:
        dst.write(data)
    card = card_for(["a", "b"], mean=[0.0] * 7, std=[255.0] * 7, tile=64, input_dtype="uint16",
                    resolution=[30.0, 30.0])
    path = export(tiny_net(7, 2), tmp_path / "m7.onnx", 7, 64, metadata_props(card))
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(image, path, tmp_path / "out.tif"), events=events)
    assert any("pixels are uint8 but the model was trained on uint16" in e["message"] for e in events.of_type("log"))
    with rasterio.open(result["OUTPUT"]) as out:
        np.testing.assert_array_equal(out.read(1) == 0, (data == 255).any(axis=0))
    assert os.path.exists(result["QML"])


def test_a_source_of_a_vrt_input_is_never_the_output(model, zion_image, tmp_path):
    """Classifying a VRT mosaic into one of its own scenes replaced the scene with the map, and succeeded."""
    scene = tmp_path / "scene.tif"
    scene.write_bytes(zion_image.read_bytes())
    mosaic = tmp_path / "mosaic.vrt"
    gdal.BuildVRT(str(mosaic), [str(scene)]).FlushCache()
    for output in ({"output": scene}, {"output": tmp_path / "map.tif", "confidence": scene},
                   {"output": tmp_path / "map.tif", "uncertainty": scene}):
        with pytest.raises(BadInputError, match=f"The output {scene} is also an input \\(the raster {mosaic} "
                                                f"reads it\\): choose another output path"):
            classify_raster(ClassifyOptions(mosaic, model, overwrite=True, extent=small_extent(zion_image),
                                            **output))
        assert scene.read_bytes() == zion_image.read_bytes()
    assert leftovers(tmp_path) == ["mosaic.vrt", "scene.tif"]


def test_the_inputs_files_are_listed_once_a_run(model, zion_image, tmp_path, monkeypatch):
    """The map, confidence and uncertainty paths are checked against one listing of the files the VRT input reads
    (it was opened once per output checked), and none is needed while no output exists yet."""
    scene = tmp_path / "scene.tif"
    scene.write_bytes(zion_image.read_bytes())
    mosaic = tmp_path / "mosaic.vrt"
    gdal.BuildVRT(str(mosaic), [str(scene)]).FlushCache()
    opened, open_ex = [], gdal.OpenEx
    monkeypatch.setattr(gdal, "OpenEx", lambda path, *a, **k: opened.append(os.fspath(path)) or open_ex(path, *a, **k))
    outputs = {"output": tmp_path / "map.tif", "confidence": tmp_path / "conf.tif", "uncertainty": tmp_path / "u.tif"}
    for existing, listings in ((False, 0), (True, 1)):
        opened.clear()
        result = classify_raster(ClassifyOptions(mosaic, model, overwrite=True, extent=small_extent(zion_image),
                                                 **outputs), RecordingEvents())
        assert all(os.path.exists(result[key]) for key in ("OUTPUT", "CONFIDENCE", "UNCERTAINTY")), existing
        assert opened.count(str(mosaic)) == listings, (existing, opened)
