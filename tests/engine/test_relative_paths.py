"""Every path an engine command returns is absolute, also when it was given relative paths.

``qgis_process run ... -- OUTPUT=model.onnx`` in a data folder (or ``engine train --output model.onnx`` there)
returned 'model.onnx', 'model_checkpoints/best.pt' ...: valid only from that folder, so QGIS, a graphical model or
a script chaining Classify or Quantise from another folder got a wrong path. The whole chain runs here as the QGIS
side starts it: in the plugin's folder, with the caller's folder in LANDCOVER_CALLER_DIR and relative paths."""
import json
import os
import shutil
import subprocess

import pytest

PIPELINE = {  # run in this order: each step reads what the ones before wrote
    "export-chips": ["--image", "scene.tif", "--output", "chips", "--labels-vector", "polygons.gpkg",
                     "--class-field", "class", "--chip-size", "32"],
    "train": ["chips", "--output", "model.onnx", "--epochs", "1", "--batch-size", "4", "--base-width", "8",
              "--device", "cpu", "--no-refit", "--cv-folds", "1"],
    "classify": ["--raster", "scene.tif", "--model", "model.onnx", "--output", "map.tif", "--confidence",
                 "confidence.tif", "--uncertainty", "uncertainty.tif", "--device", "cpu"],
    "assess": ["--classified", "map.tif", "--reference-vector", "polygons.gpkg", "--class-field", "class",
               "--output-folder", "accuracy"],
    "create-sample": ["--classified", "map.tif", "--output", "sample.gpkg", "--size", "30", "--seed", "1"],
    "suggest-areas": ["--output", "suggested.gpkg", "--uncertainty", "uncertainty.tif", "--classified", "map.tif"],
    "quantise": ["--model", "model.onnx", "--dataset", "chips", "--output", "model_int8.onnx"],
}


@pytest.fixture(scope="module")
def results(tmp_path_factory, shared_data, engine_python, repo_root):
    """Each command's result outputs and the data folder it ran in."""
    folder = tmp_path_factory.mktemp("data_folder")
    shutil.copy(shared_data / "rstoolbox" / "landsat5_1988_7band.tif", folder / "scene.tif")
    shutil.copy(shared_data / "rstoolbox" / "training_polygons.gpkg", folder / "polygons.gpkg")
    env = dict(os.environ, LANDCOVER_CALLER_DIR=str(folder))
    outputs = {}
    for command, args in PIPELINE.items():
        proc = subprocess.run([engine_python, "-m", "landcover_plugin.core.engine", command, *args], cwd=repo_root,
                              env=env, capture_output=True, text=True, timeout=300)
        events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
        assert proc.returncode == 0, (command, events[-1:], proc.stderr[-2000:])
        outputs[command] = next(e["outputs"] for e in events if e["event"] == "result")
    return folder, outputs


def paths_in(value):
    """The texts in a result (nested too) that name a file or folder, with a layer's '|layername=...' cut off."""
    if isinstance(value, dict):
        return [p for v in value.values() for p in paths_in(v)]
    if isinstance(value, list):
        return [p for v in value for p in paths_in(v)]
    return [value.split("|", 1)[0]] if isinstance(value, str) and value else []


@pytest.mark.parametrize("command", list(PIPELINE))
def test_every_path_a_command_returns_is_absolute(results, command):
    folder, outputs = results
    named = [p for p in paths_in(outputs[command]) if os.path.exists(folder / p)]  # relative ones: in the folder
    assert named, f"{command} returned no path: {outputs[command]}"
    assert [p for p in named if not os.path.isabs(p)] == [], f"{command} returned relative paths"
    assert all(os.path.commonpath([p, str(folder)]) == str(folder) for p in named)  # and they are the caller's
