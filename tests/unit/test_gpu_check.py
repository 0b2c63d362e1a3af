"""The GPU check (``make gpu-check``) runs where no GPU machine has been: on the CPU with ``--quick``, in a Python
that cannot import rasterio, GDAL or QGIS (a bare GPU machine has none of them)."""
import json
import subprocess
import sys

import pytest
import torch

BLOCKED = "import sys; sys.modules.update(rasterio=None, osgeo=None, qgis=None); import runpy; "


def run_check(repo_root, *args):
    code = BLOCKED + (f"sys.argv = ['gpu_check', *{list(args)!r}]; "
                      "runpy.run_module('bench.gpu_check', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=300)


def test_the_check_prints_one_table_on_the_cpu_without_rasterio_gdal_or_qgis(repo_root, tmp_path):
    out = tmp_path / "gpu_check.json"
    done = run_check(repo_root, "--device", "cpu", "--quick", "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| What | Speed |") and len(table) == 1 + 4  # the header and four rows
    result = json.loads(out.read_text())
    rows = {row["what"]: row for row in result["rows"]}
    assert not [row for row in rows.values() if "failed" in row.get("note", "")], rows
    for name in ("training, trainer step, AMP", "training, trainer step, float32",
                 "training, bare torch loop (float32)"):
        assert rows[name]["chips_per_s"] > 0 and rows[name]["precision"] == "float32"  # no AMP on the CPU
    classify = rows["classify (onnxruntime, 128 px tiles, blending)"]
    assert classify["mpx_per_s"] > 0 and classify["provider"] == "CPUExecutionProvider"
    assert result["machine"]["gpu"].startswith("none used")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run on it")
def test_asking_for_cuda_without_a_gpu_says_what_to_do(repo_root):
    done = run_check(repo_root, "--quick")
    assert done.returncode == 2 and "--device cpu" in done.stderr
