"""The demo's steps, fast: both scenes through the real qgis_process.bin with a tiny training budget."""
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser

import pytest
import rasterio

from tests.qgis.test_qgis_process import QGIS_PROCESS

pytestmark = pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process.bin is not installed")


def test_quick_demo_runs_every_step_and_prints_the_accuracy_tables(tmp_path, repo_root, engine_python):
    out = tmp_path / "demo"
    env = dict(os.environ, LANDCOVER_PYTHON=engine_python)
    ran = subprocess.run([sys.executable, "-m", "scripts.demo", "--quick", "--output", str(out)], cwd=repo_root,
                         env=env, capture_output=True, text=True, timeout=900)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    for scene, bands_in in (("rstoolbox", 7), ("zion", 4)):
        folder = out / scene
        assert json.loads((folder / "chips" / "dataset.json").read_text())["bands"]["count"] == bands_in
        with rasterio.open(folder / "landcover.tif") as classified, \
                rasterio.open(next((out / "data" / scene).glob("landsat*.tif"))) as image:
            assert classified.transform == image.transform and classified.crs == image.crs
            assert classified.dtypes[0] == "uint8" and classified.nodata == 0
        assert (folder / "landcover.qml").exists() and (folder / "model_curves.png").exists()
        report = (folder / "accuracy_report.html").read_text(encoding="utf-8")
        HTMLParser().feed(report)
        assert f"Accuracy on held-out data, {scene}: overall accuracy" in ran.stdout
    assert ran.stdout.count("The trainer's held-out estimate, before any reference data: overall accuracy 0.") == 2
    assert len(re.findall(r"5 % more or less light in every band changes [01]\.\d{3} of its labels", ran.stdout)) == 2
    assert ran.stdout.count("precision") >= 2  # the per-class tables close the demo
    # each scene's training, shown as it went: rstoolbox's few held-out polygons by cross-validation folds
    assert re.search(r"   Fold \d+/\d+ epoch 1:", ran.stdout) and ran.stdout.count("   Epoch 1:") == 1
    assert "loss " in ran.stdout and "mIoU " in ran.stdout
    assert "Classified " in ran.stdout
