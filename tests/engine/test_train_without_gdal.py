"""Training on a GPU server: the chips are exported where QGIS is, the project folder (chips and raster) is copied
to a machine with torch and pip's rasterio but none of GDAL's own Python bindings (``osgeo``), and trained there.

Nothing on the training path may import ``osgeo`` (the export, the classifier's writer and the assessment may), and
the raster, no longer at the absolute path the export recorded, is found beside the chips as it was: the steps after
training that read it (the held-out estimate weighed by the map's class shares, light sensitivity) still run."""
import json
import shutil
import subprocess

import pytest
import rasterio
from engine_runs import of_type

from landcover_plugin.core.assess.training_pixels import TrainingPixels
from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.map_record import read_record
from landcover_plugin.core.train.report import read_card

HIDE_GDAL_BINDINGS = ("import sys; sys.modules['osgeo'] = None; "  # 'import osgeo' now fails as if it were absent
                      "from landcover_plugin.core.engine import main; sys.exit(main())")
TINY = ["--epochs", "2", "--batch-size", "4", "--base-width", "8", "--device", "cpu", "--no-refit"]


def engine_without_gdal(engine_python, repo_root, *args):
    done = subprocess.run([engine_python, "-c", HIDE_GDAL_BINDINGS, *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=300)
    return done, [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def moved_run(tmp_path_factory, shared_data, engine_python, repo_root):
    """Export in 'project/', move the whole folder to 'server/project/', train there without GDAL's bindings."""
    base = tmp_path_factory.mktemp("gpu_server")
    project = base / "project"
    (project / "imagery").mkdir(parents=True)
    shutil.copy2(shared_data / "rstoolbox" / "landsat5_1988_7band.tif", project / "imagery" / "scene.tif")
    export_chips(ChipExportOptions(project / "imagery" / "scene.tif", project / "chips",
                                   labels_vector=shared_data / "rstoolbox" / "training_polygons.gpkg",
                                   class_field="class", chip_size=32))
    (base / "server").mkdir()
    moved = shutil.move(project, base / "server" / "project")
    out = base / "server" / "model.onnx"
    done, events = engine_without_gdal(engine_python, repo_root, "train", moved / "chips", "--output", out, *TINY)
    return {"done": done, "events": events, "out": out, "moved": moved, "recorded": project / "imagery" / "scene.tif"}


def test_training_runs_to_the_end_without_gdal_bindings(moved_run):
    done, events = moved_run["done"], moved_run["events"]
    assert done.returncode == 0 and not of_type(events, "error"), done.stdout[-2000:] + done.stderr[-2000:]
    assert moved_run["out"].is_file() and of_type(events, "result")[0]["outputs"]["epochs_run"] == 2
    assert not [e for e in of_type(events, "log") if "osgeo" in e["message"]]


def test_the_raster_is_found_where_it_moved_with_the_chips(moved_run):
    events, moved = moved_run["events"], moved_run["moved"]
    outputs = of_type(events, "result")[0]["outputs"]
    assert outputs["LIGHT_SENSITIVITY"] is not None  # measured over tiles of the training raster: it was read
    said = [e["message"] for e in of_type(events, "log") if "where the export recorded it" in e["message"]]
    assert len(said) == 1 and str(moved_run["recorded"]) in said[0]
    assert str((moved / "imagery" / "scene.tif").resolve()) in said[0]
    light = [e["message"] for e in of_type(events, "log") if e["message"].startswith("Light sensitivity")]
    assert light and "scene.tif" in light[0]


def test_the_model_brought_home_knows_its_training_raster_there(moved_run, tmp_path):
    """Home again (the server's copy gone, the project where it was exported), the model's map of the training raster
    is the map of its training raster: the card keeps the path the export recorded beside the one training read."""
    moved, home = moved_run["moved"], moved_run["recorded"].parents[1]
    card = read_card(moved_run["out"])
    assert card["source"]["image"] == str((moved / "imagery" / "scene.tif").resolve())
    assert card["source"]["image_recorded"] == str(moved_run["recorded"])
    assert card["source"]["chips"] == str(moved / "chips") and card["source"]["chips_recorded"] == str(home / "chips")
    shutil.copytree(moved, home)
    shutil.rmtree(moved)  # the server's copy is gone
    try:
        events = RecordingEvents()
        done = classify_raster(ClassifyOptions(home / "imagery" / "scene.tif", moved_run["out"], tmp_path / "map.tif",
                                               match_training_raster=True), events)
        entry = read_record(done["OUTPUT"])
        assert entry["same_raster"] is True and entry["training_raster"] == "scene.tif"
        with rasterio.open(done["OUTPUT"]) as out:  # Assess finds the chips the model was taught, at home
            taught = TrainingPixels.from_record(entry, out.crs)
        assert entry["chips"] == str(home / "chips") and taught is not None and taught.folder == str(home / "chips")
        logs = [e["message"] for e in events.of_type("log")]
        assert "Match to the training raster: this is the training raster; its values are read as they are." in logs
        assert not [m for m in logs if "not on this one" in m]  # the class shares' raster is this one too
    finally:
        shutil.move(home, moved)  # as the other tests of the module expect it


def test_the_gdal_bindings_are_really_hidden(tmp_path, engine_python, repo_root):
    """The tests above mean something only if hiding works: the chip export does need the bindings."""
    done, events = engine_without_gdal(engine_python, repo_root, "export-chips", "--image", "x.tif",
                                       "--labels-raster", "y.tif", "--output", tmp_path / "chips")
    errors = of_type(events, "error")
    assert done.returncode != 0 and errors and "osgeo" in errors[-1]["message"]
