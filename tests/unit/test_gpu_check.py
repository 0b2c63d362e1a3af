"""The GPU check (``make gpu-check``) runs where no GPU machine has been: on the CPU with ``--quick``, in a Python
that cannot import rasterio, GDAL or QGIS (a bare GPU machine has none of them)."""
import json
import subprocess
import sys

import pytest
import torch

BLOCKED = "import sys; sys.modules.update(rasterio=None, osgeo=None, qgis=None); import runpy; "
NO_GDAL_BINDINGS = "import sys; sys.modules.update(osgeo=None, qgis=None); import runpy; "  # pip's rasterio only


def run_check(repo_root, *args, blocked=BLOCKED):
    code = blocked + (f"sys.argv = ['gpu_check', *{list(args)!r}]; "
                      "runpy.run_module('bench.gpu_check', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], cwd=repo_root, capture_output=True, text=True, timeout=300)


def test_the_check_prints_one_table_on_the_cpu_without_rasterio_gdal_or_qgis(repo_root, tmp_path):
    out = tmp_path / "gpu_check.json"
    done = run_check(repo_root, "--device", "cpu", "--quick", "--json", str(out), "--chips", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| What | Speed |") and len(table) == 1 + 5  # the header and five rows
    result = json.loads(out.read_text())
    rows = {row["what"]: row for row in result["rows"]}
    assert not [row for row in rows.values() if "failed" in row.get("note", "")], rows
    for name in ("training, trainer step, AMP", "training, trainer step, float32",
                 "training, bare torch loop (float32)"):
        assert rows[name]["chips_per_s"] > 0 and rows[name]["precision"] == "float32"  # no AMP on the CPU
    classify = rows["classify (onnxruntime, 128 px tiles, blending)"]
    assert classify["mpx_per_s"] > 0 and classify["provider"] == "CPUExecutionProvider"
    assert result["machine"]["gpu"].startswith("none used")
    engine = rows[f"engine train, {tmp_path.parent.name}/{tmp_path.name}"]
    assert engine["note"].startswith("rasterio is not installed") and "chips_per_s" not in engine


def test_the_engine_trains_on_real_chips_with_pip_rasterio_alone(repo_root, chips, tmp_path):
    """What --chips does on a GPU machine, here on the CPU: the engine's own train command on a real chip dataset,
    in a Python without GDAL's bindings, and its figures in the table."""
    out = tmp_path / "gpu_check.json"
    done = run_check(repo_root, "--device", "cpu", "--quick", "--json", str(out), "--chips", str(chips),
                     "--minutes", "0.05", blocked=NO_GDAL_BINDINGS)
    assert done.returncode == 0, done.stderr[-3000:]
    row = json.loads(out.read_text())["rows"][-1]
    assert row["what"] == f"engine train, {chips.parent.name}/chips" and row.get("engine"), row
    assert row["device"] == "cpu" and row["epochs"] >= 1 and row["chips_per_s"] > 0 and row["epoch_s"] > 0
    assert 0 <= row["heldout_oa"] <= 1 and row["precision"] == "float32" and row["peak_mib"] is None
    assert f"{row['chips_per_s']} chips/s" in done.stdout and "held-out estimate OA" in row["note"]


def test_the_last_gpu_check_is_printed_at_the_end_of_the_results():
    """bench/gpu_check.json (measured on a GPU machine) becomes the last section of bench/RESULTS.md."""
    from bench.report import GPU_CHECK, gpu_check_section

    check = json.loads(GPU_CHECK.read_text())
    section = "\n".join(gpu_check_section())
    assert section.startswith("## GPU check") and check["machine"]["gpu"] in section
    assert check["machine"]["commit"] in section and check["machine"]["date"] in section
    for row in check["rows"]:
        assert f"| {row['what']} |" in section
    assert all(f"- {note}" in section for note in check["notes"])
    assert gpu_check_section(GPU_CHECK.with_name("no_such_check.json")) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the check would run on it")
def test_asking_for_cuda_without_a_gpu_says_what_to_do(repo_root):
    done = run_check(repo_root, "--quick")
    assert done.returncode == 2 and "--device cpu" in done.stderr
