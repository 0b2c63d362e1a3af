"""The ``export-chips`` engine command, run as a subprocess on the real sample data: a good run, and
each bad input answered by one clear error event, exit code 2 and no output left behind."""
import json
import resource
import signal
import subprocess

import numpy as np
import pytest
import rasterio
from osgeo import gdal, ogr, osr
from rasterio.windows import Window

gdal.UseExceptions()
ogr.UseExceptions()
osr.UseExceptions()


def run_export(engine_python, repo_root, *args, timeout=120):
    proc = subprocess.run([engine_python, "-m", "landcover_plugin.core.engine", "export-chips", *map(str, args)],
                          cwd=repo_root, capture_output=True, text=True, timeout=timeout)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, events, proc.stderr


def hidden_leftovers(parent):
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


def test_zion_nlcd_export(engine_python, repo_root, shared_data, tmp_path):
    zion = shared_data / "zion"
    code, events, stderr = run_export(engine_python, repo_root, "--image", zion / "landsat8_2015_b2345.tif",
                                      "--labels-raster", zion / "nlcd2011_8class.tif", "--output", tmp_path / "z",
                                      "--chip-size", 128, "--stride", 96, "--val-fraction", 0.25)
    assert code == 0, stderr
    assert events[-1]["event"] == "result" and not [e for e in events if e["event"] == "error"]
    outputs = events[-1]["outputs"]
    progress = [e["fraction"] for e in events if e["event"] == "progress"]
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(progress) >= 2
    logs = " ".join(e["message"] for e in events if e["event"] == "log")
    assert "chips" in logs and "Forest" in logs  # the summary reaches the log
    dataset = json.loads((tmp_path / "z" / "dataset.json").read_text())
    assert outputs["OUTPUT"] == str(tmp_path / "z") and outputs["DATASET"] == str(tmp_path / "z" / "dataset.json")
    assert outputs["TRAIN_CHIPS"] == sum(c["split"] == "train" for c in dataset["chips"]) > 0
    assert outputs["VAL_CHIPS"] == sum(c["split"] == "val" for c in dataset["chips"]) > 0
    assert outputs["CHIPS"] == len(dataset["chips"]) == len(list((tmp_path / "z" / "images").iterdir()))
    # one chip against a window read of the source, pixel for pixel
    chip = dataset["chips"][len(dataset["chips"]) // 2]
    w = chip["window"]
    with rasterio.open(zion / "landsat8_2015_b2345.tif") as src, \
            rasterio.open(tmp_path / "z" / chip["image"]) as image:
        np.testing.assert_array_equal(image.read(), src.read(window=Window(w["col_off"], w["row_off"], 128, 128)))
        assert image.transform == src.window_transform(Window(w["col_off"], w["row_off"], 128, 128))


def _mars_copy(source, target):
    """The rstoolbox polygons with their CRS replaced by a Mars CRS: no transformation to Earth exists."""
    mars = osr.SpatialReference()
    mars.SetFromUserInput("IAU_2015:49900")
    gdal.VectorTranslate(str(target), str(source), dstSRS=mars, reproject=False)
    return target


def _mars_raster(source, target):
    """The NLCD map with a Mars CRS assigned."""
    mars = osr.SpatialReference()
    mars.SetFromUserInput("IAU_2015:49900")
    gdal.Translate(str(target), str(source), outputSRS=mars.ExportToWkt())
    return target


def _tiny_raster(source, target):
    with rasterio.open(source) as src:
        profile = dict(src.profile, width=60, height=50, transform=src.window_transform(Window(0, 0, 60, 50)))
        data = src.read(window=Window(0, 0, 60, 50))
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data)
    return target


BAD_INPUTS = {
    "polygons_miss_the_raster": (lambda d, t: ["--image", d / "zion/landsat8_2015_b2345.tif", "--labels-vector",
                                               d / "rstoolbox/training_polygons.gpkg", "--class-field", "class"],
                                 "overlaps the raster"),
    "missing_class_field": (lambda d, t: ["--labels-vector", d / "rstoolbox/training_polygons.gpkg",
                                          "--class-field", "landcover"],
                            "no field 'landcover'"),
    "values_outside_schema": (lambda d, t: ["--labels-vector", d / "rstoolbox/training_polygons.gpkg",
                                            "--class-field", "class", "--schema",
                                            '[{"id": 1, "name": "forest"}, {"id": 2, "name": "water"}]'],
                              "'cleared', 'fallen_dry'"),
    "raster_values_outside_schema": (lambda d, t: ["--image", d / "zion/landsat8_2015_b2345.tif",
                                                   "--labels-raster", d / "zion/nlcd2011_8class.tif", "--schema",
                                                   json.dumps([{"id": i, "name": f"c{i}"} for i in range(1, 8)])],
                                     "values [8]"),
    "crs_cannot_be_transformed": (lambda d, t: ["--labels-vector",
                                                _mars_copy(d / "rstoolbox/training_polygons.gpkg", t / "mars.gpkg"),
                                                "--class-field", "class"],
                                  "cannot be transformed"),
    "raster_crs_cannot_be_transformed": (lambda d, t: ["--image", d / "zion/landsat8_2015_b2345.tif",
                                                       "--labels-raster",
                                                       _mars_raster(d / "zion/nlcd2011_8class.tif", t / "mars.tif")],
                                         "cannot be transformed"),
    "chip_larger_than_raster": (lambda d, t: ["--labels-vector", d / "rstoolbox/training_polygons.gpkg",
                                              "--class-field", "class", "--chip-size", 512],
                                "larger than the raster"),
    "chip_larger_than_small_raster": (lambda d, t: ["--image", _tiny_raster(d / "rstoolbox/landsat5_1988_7band.tif",
                                                                            t / "tiny.tif"),
                                                    "--labels-vector", d / "rstoolbox/training_polygons.gpkg",
                                                    "--class-field", "class", "--chip-size", 64],
                                      "at most 50"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_cleanly(case, engine_python, repo_root, shared_data, tmp_path):
    make_args, expected = BAD_INPUTS[case]
    args = make_args(shared_data, tmp_path)
    if "--image" not in args:
        args = ["--image", shared_data / "rstoolbox/landsat5_1988_7band.tif"] + args
    code, events, stderr = run_export(engine_python, repo_root, *args, "--output", tmp_path / "chips")
    assert code == 2, stderr
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "bad_input"
    assert expected in events[-1]["message"], events[-1]["message"]
    assert not [e for e in events if e["event"] == "result"]
    assert not (tmp_path / "chips").exists() and hidden_leftovers(tmp_path) == []


def test_existing_folder_with_other_files_is_refused(engine_python, repo_root, shared_data, tmp_path):
    out = tmp_path / "chips"
    out.mkdir()
    (out / "my_map.tif").write_bytes(b"precious")
    code, events, stderr = run_export(engine_python, repo_root, "--image",
                                      shared_data / "rstoolbox/landsat5_1988_7band.tif", "--labels-vector",
                                      shared_data / "rstoolbox/training_polygons.gpkg", "--class-field", "class",
                                      "--output", out)
    assert code == 2, stderr
    assert events[-1]["kind"] == "bad_input" and "already holds other files (my_map.tif)" in events[-1]["message"]
    assert [p.name for p in out.iterdir()] == ["my_map.tif"] and (out / "my_map.tif").read_bytes() == b"precious"
    assert hidden_leftovers(tmp_path) == []


def test_sigterm_cancels_cleanly(engine_python, repo_root, shared_data, tmp_path):
    """The QGIS side cancels by terminating the engine: exit code 4, a 'cancelled' error event, no output."""
    import signal

    zion = shared_data / "zion"
    proc = subprocess.Popen([engine_python, "-m", "landcover_plugin.core.engine", "export-chips", "--image",
                             str(zion / "landsat8_2015_b2345.tif"), "--labels-raster",
                             str(zion / "nlcd2011_8class.tif"), "--output", str(tmp_path / "chips"),
                             "--chip-size", "16", "--stride", "8"],
                            cwd=repo_root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    events = []
    for line in proc.stdout:
        events.append(json.loads(line))
        if events[-1]["event"] == "progress":
            proc.send_signal(signal.SIGTERM)
            break
    rest, stderr = proc.communicate(timeout=60)
    events += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert proc.returncode == 4, stderr
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "cancelled"
    assert not (tmp_path / "chips").exists() and hidden_leftovers(tmp_path) == []


def test_a_full_disk_is_a_clear_error_with_nothing_left(engine_python, repo_root, shared_data, tmp_path):
    """With a 4 kB file-size limit every 7-band chip write fails (EFBIG, as ENOSPC on a full disk): GDAL only
    printed that and the export went on, to die at reading back a broken label chip with an internal error."""
    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # stays ignored across exec: writes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (4_000, 4_000))

    rstoolbox = shared_data / "rstoolbox"
    output = tmp_path / "chips"
    proc = subprocess.run(
        [engine_python, "-m", "landcover_plugin.core.engine", "export-chips", "--image",
         str(rstoolbox / "landsat5_1988_7band.tif"), "--labels-vector", str(rstoolbox / "training_polygons.gpkg"),
         "--class-field", "class", "--output", str(output), "--chip-size", "32"],
        cwd=repo_root, capture_output=True, text=True, timeout=120, preexec_fn=limit_file_size)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "bad_input"
    message = events[-1]["message"]
    assert f"Cannot write the chip dataset into {tmp_path}" in message and "File too large" in message
    assert "nothing was written" in message and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []
