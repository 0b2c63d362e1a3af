"""The benchmark's machinery (not the benchmark): targets, the table writer, subprocess peak memory,
profiling across threads, VRT mosaics, and one real quick case through ``python -m bench.run``."""
import json
import subprocess
import sys
import threading

import numpy as np
import pytest
import rasterio

from bench.assets import mosaic_vrt
from bench.common import figure, profile_call, run_measured, target
from bench.report import markdown

MACHINE = {"date": "2026-01-01 00:00 UTC", "cpu": "Test CPU", "cores": 2, "usable_cores": 2, "ram_gb": 8.0,
           "os": "Test OS", "python": "3.11", "versions": {"numpy": "1.24"}, "gpu": {"summary": "no GPU"},
           "git_commit": "abc1234", "load_average": 0.5}


def test_target_met_and_missed_by_how_much():
    assert target(1.1, "<=", 1.2, "x") == {"text": "<= 1.2x", "met": True, "limit": 1.2, "op": "<="}
    missed = target(1.38, "<=", 1.2, "x")
    assert missed["met"] is False
    assert missed["miss"] == "missed by 0.18x (15 %)"  # 0.18 / 1.2 = 15 %
    assert target(1600.0, "<", 1500.0, " MB")["miss"] == "missed by 100 MB (7 %)"
    assert target(0.5, ">", 0.6)["met"] is False
    assert target(None, "<=", 1.0)["met"] is None


def test_markdown_table_lists_machine_medians_baselines_and_misses():
    rows = [figure("a.rate", "Export", 321.456, "chips/s", runs=[300.0, 321.456, 350.0],
                   baseline={"label": "bare loop", "value": 400.0, "unit": "chips/s", "runs": [400.0]},
                   ratio=400.0 / 321.456, target=target(400.0 / 321.456, "<=", 1.2, "x")),
            figure("a.gpu", "GPU", None, "", note="no GPU on this machine")]
    results = {"machine": MACHINE, "quick": False, "runs": 3, "seconds": 90.0,
               "cases": {"chips": {"status": "ok", "what": "Zion", "figures": rows},
                         "training": {"status": "failed", "error": "RuntimeError: boom", "figures": []}}}
    text = markdown(results)
    assert "Test CPU, 2 cores" in text and "no GPU" in text and "commit abc1234" in text
    assert "| Export | 321 chips/s | 300, 321, 350 | 400 chips/s (bare loop) | 1.24 | <= 1.2x |" in text
    assert "**missed by 0.0443x (4 %)**" in text  # 400/321.456 = 1.2443
    assert "Targets missed" in text and "GPU (no GPU on this machine) | n/a" in text
    assert "**failed**: RuntimeError: boom" in text


def test_peak_memory_is_the_subprocess_own_not_the_parents():
    ballast = np.ones(60_000_000)  # 480 MB in this process: must not leak into the child's figure
    measured = run_measured([sys.executable, "-c", "import numpy as np; a = np.ones(25_000_000); print(a.sum())"])
    assert measured["returncode"] == 0
    assert 200 <= measured["peak_rss_mb"] < 200 + 150  # 25e6 float64 = 200 MB, plus the interpreter
    assert ballast.sum() == 60_000_000


def test_profile_sees_work_done_in_threads():
    def spin_in_thread():
        def busy_thread_work():
            return sum(i * i for i in range(200_000))
        thread = threading.Thread(target=busy_thread_work)
        thread.start()
        thread.join()
        return 7

    result, rows = profile_call(spin_in_thread, top=50)
    assert result == 7
    assert any("busy_thread_work" in row["function"] for row in rows)


def test_mosaic_vrt_repeats_the_real_image(shared_data, tmp_path):
    source = shared_data / "rstoolbox" / "landsat5_1988_7band.tif"
    with rasterio.open(source) as src:
        original = src.read()
        width, height = src.width, src.height
    path = mosaic_vrt(tmp_path / "m.vrt", 2 * width - 10, height + 5, source=source)
    with rasterio.open(path) as vrt:
        assert (vrt.width, vrt.height, vrt.count) == (2 * width - 10, height + 5, original.shape[0])
        data = vrt.read()
    assert np.array_equal(data[:, :height, :width], original)
    assert np.array_equal(data[:, :height, width:], original[:, :, :width - 10])
    assert np.array_equal(data[:, height:, :width], original[:, :5, :])


def test_quick_chips_case_writes_results_and_table(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    (out).mkdir()
    earlier = {"machine": MACHINE, "cases": {"scaling": {"status": "ok", "figures": []}}}
    (out / "results.json").write_text(json.dumps(earlier))
    done = subprocess.run([sys.executable, "-m", "bench.run", "--quick", "--only", "chips", "--output", str(out),
                           "--work", str(work)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results["cases"]) == {"chips", "scaling"}  # --only keeps the other cases' last results
    chips = results["cases"]["chips"]
    assert chips["status"] == "ok"
    rate = next(f for f in chips["figures"] if f["key"] == "chips.rate")
    assert rate["value"] > 0 and len(rate["runs"]) == 3 and rate["baseline"]["value"] > 0
    # the ratio of times, round by round (ours and bare ran in turn), is the baseline's rate over ours
    rounds = sorted(bare / ours for ours, bare in zip(rate["runs"], rate["baseline"]["runs"]))
    assert rate["ratio"] == pytest.approx(rounds[1], rel=0.01)
    memory = next(f for f in chips["figures"] if f["key"] == "chips.peak_rss")
    assert memory["value"] > memory["baseline"]["value"] > 20
    text = (out / "RESULTS.md").read_text()
    assert "## Chip export" in text
    # the kept case says where and when it ran: the header's machine and commit are this run's
    assert results["cases"]["scaling"]["measured"] == {"date": MACHINE["date"], "git_commit": "abc1234",
                                                       "cpu": "Test CPU"}
    assert chips["measured"]["date"] == results["machine"]["date"]
    assert "measured on 2026-01-01 00:00 UTC at commit abc1234, Test CPU, not in this run" in text
    assert text.count("not in this run") == 1  # the chips case ran in this run
