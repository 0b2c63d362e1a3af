"""Probe findings on leftovers and races (issue 12): what a killed run leaves is cleaned by the next run, and of
two runs that both found an output path free, only one publishes there without overwrite."""
import signal
import subprocess
import sys
import time

import pytest
import rasterio

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents


def dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def piece(image):
    with rasterio.open(image) as src:
        x0, y0 = src.xy(260, 100)
        x1, y1 = src.xy(100, 300)
    return (x0, y0, x1, y1)


def test_a_sigkilled_classify_leaves_nothing_after_the_next_run(model, zion_image, tmp_path):
    output = tmp_path / "map.tif"
    proc = subprocess.Popen([sys.executable, "-m", "landcover_plugin.core.engine", "classify", "--raster",
                             str(zion_image), "--model", model, "--output", str(output), "--batch-size", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".map.tif.partial-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left and all(name.startswith(".map.tif.partial-") for name in left), left
    classify_raster(ClassifyOptions(zion_image, model, output, extent=piece(zion_image)), RecordingEvents())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.qml", "map.tif", "map.tif.aux.xml"]


def test_partial_files_of_live_runs_are_kept(model, zion_image, tmp_path):
    stale = tmp_path / f".map.tif.partial-{dead_pid()}.tif"
    live = tmp_path / ".map.tif.partial-1.tif"  # PID 1 is always alive
    stale.write_bytes(b"killed run")
    (tmp_path / (stale.name + ".aux.xml")).write_bytes(b"killed run")
    live.write_bytes(b"a run in progress")
    classify_raster(ClassifyOptions(zion_image, model, tmp_path / "map.tif", extent=piece(zion_image)),
                    RecordingEvents())
    assert live.exists() and not stale.exists() and not (tmp_path / (stale.name + ".aux.xml")).exists()


def test_a_stale_chip_staging_folder_is_removed(shared_data, tmp_path):
    stale = tmp_path / f".chips.partial-{dead_pid()}"
    (stale / "images").mkdir(parents=True)
    (stale / "images" / "r0_c0.tif").write_bytes(b"half a chip")
    export_chips(ChipExportOptions(shared_data / "rstoolbox" / "landsat5_1988_7band.tif", tmp_path / "chips",
                                   labels_vector=shared_data / "rstoolbox" / "training_polygons.gpkg",
                                   class_field="class", chip_size=32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chips"]


def test_of_two_runs_without_overwrite_only_the_first_to_finish_publishes(model, zion_image, tmp_path):
    output = tmp_path / "map.tif"

    class OtherRunFinishesFirst(RecordingEvents):
        def progress(self, fraction, message=""):
            super().progress(fraction, message)
            if not output.exists():
                output.write_bytes(b"the other run's map")

    with pytest.raises(BadInputError, match="created by another run while this one was working"):
        classify_raster(ClassifyOptions(zion_image, model, output, extent=piece(zion_image)), OtherRunFinishesFirst())
    assert output.read_bytes() == b"the other run's map"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif"]


def test_an_output_that_cannot_be_created_is_named_as_the_analyst_gave_it(model, zion_image, tmp_path, capfd):
    """The run's hidden partial file cannot be made (here its name, the map's with ``.partial-<pid>`` added, is
    longer than a file name may be): the message names the map the analyst asked for and GDAL's reason, and GDAL's
    own "ERROR 4" line stays out of the log."""
    output = tmp_path / ("m" * 240 + ".tif")
    with pytest.raises(BadInputError) as raised:
        classify_raster(ClassifyOptions(zion_image, model, output, extent=piece(zion_image)), RecordingEvents())
    message = str(raised.value)
    assert message.startswith(f"Cannot write {output}: File name too long (in {tmp_path})"), message
    assert "Choose a folder you can write to" in message and ".partial-" not in message
    assert "ERROR 4" not in capfd.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_rerun_removes_the_old_maps_mask_and_overviews(model, zion_image, tmp_path):
    """A '.msk' or '.ovr' left beside an earlier map (GDAL writes them when a map is opened read-only and given a
    mask or overviews) would be read with the new map: its mask hid the new map's pixels as no data."""
    from osgeo import gdal

    output = tmp_path / "map.tif"
    options = ClassifyOptions(zion_image, model, output, extent=piece(zion_image), overwrite=True)
    classify_raster(options, RecordingEvents())
    old = gdal.Open(str(output))  # read-only: the mask and overviews go to files beside it
    old.CreateMaskBand(gdal.GMF_PER_DATASET)
    old.GetRasterBand(1).GetMaskBand().Fill(0)
    old.BuildOverviews("NEAREST", [2])
    old = None
    assert (tmp_path / "map.tif.msk").exists() and (tmp_path / "map.tif.ovr").exists()
    classify_raster(options, RecordingEvents())
    assert not (tmp_path / "map.tif.msk").exists() and not (tmp_path / "map.tif.ovr").exists()
    with rasterio.open(output) as src:
        assert (src.read_masks(1) > 0).mean() > 0.99
