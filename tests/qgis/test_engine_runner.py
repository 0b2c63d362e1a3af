"""The engine runner against real subprocesses: events into a real QgsProcessingFeedback, cancel,
and every way the engine can fail turned into a clear message."""
import stat
import subprocess
import sys
import threading
import time

import pytest
from qgis.core import QgsProcessingFeedback

from landcover_plugin.qgis_glue.engine_runner import EngineCancelled, EngineError, engine_environment, run_engine

SYSTEM_PYTHON = "/usr/bin/python3"


def fake_python(tmp_path, body: str) -> str:
    """An executable standing in for the engine's Python: a real process that behaves as ``body`` says."""
    path = tmp_path / "python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


class LabelFeedback(QgsProcessingFeedback):
    """Keeps every progress label: QGIS's dialog writes each one into the Log too."""

    def __init__(self):
        super().__init__()
        self.labels = []

    def setProgressText(self, text):
        self.labels.append(text)
        super().setProgressText(text)


def test_events_reach_the_feedback_and_outputs_come_back(engine_python):
    feedback = LabelFeedback()
    outputs = run_engine(engine_python, "selftest", ["--seconds", "0.3"], feedback)
    assert outputs["steps"] == 6
    assert feedback.progress() == pytest.approx(100.0)
    log = feedback.textLog()
    assert "Engine self-test started." in log
    assert "This is what a warning looks like." in log
    assert "Epoch 1: steps 6" in log
    assert feedback.labels == ["Running"]  # one label per kind of step; counters stay in the progress bar
    assert outputs["_metrics"][0]["values"]["steps"] == 6


def test_bad_input_error_event_becomes_the_message(engine_python):
    with pytest.raises(EngineError) as caught:
        run_engine(engine_python, "env-report", ["--require", "no_such_package_xyz"], QgsProcessingFeedback())
    assert caught.value.kind == "bad_input"
    assert "lacks no_such_package_xyz" in caught.value.message and "Set up engine environment" in caught.value.message


def test_missing_python_says_how_to_fix_it(tmp_path):
    with pytest.raises(EngineError, match="not found .*Set up engine environment.*LANDCOVER_PYTHON"):
        run_engine(str(tmp_path / "nowhere" / "python"), "selftest", [], QgsProcessingFeedback())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses a shell script as the Python")
def test_engine_environment_without_packages_reports_the_missing_one(tmp_path):
    # -S: the system Python without its site packages, i.e. without numpy, rasterio, torch.
    python = fake_python(tmp_path, f'exec {SYSTEM_PYTHON} -S "$@"')
    with pytest.raises(EngineError) as caught:
        run_engine(python, "export-chips", ["--image", tmp_path / "in.tif", "--output", tmp_path / "chips"],
                   QgsProcessingFeedback())
    assert "cannot import 'numpy'" in caught.value.message or "cannot import 'rasterio'" in caught.value.message
    assert "Set up engine environment" in caught.value.message


def test_engine_help_needs_none_of_the_engine_packages(tmp_path):
    python = fake_python(tmp_path, f'exec {SYSTEM_PYTHON} -S "$@"')
    done = subprocess.run([python, "-m", "landcover_plugin.core.engine", "classify", "--help"], capture_output=True,
                          text=True, env=engine_environment(), timeout=60)
    assert done.returncode == 0 and "--overlap" in done.stderr, done.stderr[-1000:]  # events own stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses a shell script as the Python")
def test_import_error_crash_names_the_package(tmp_path):
    python = fake_python(tmp_path, f'exec {SYSTEM_PYTHON} -S -c "import numpy"')
    with pytest.raises(EngineError) as caught:
        run_engine(python, "selftest", [], QgsProcessingFeedback())
    assert "lacks the Python package 'numpy'" in caught.value.message
    assert "ModuleNotFoundError" in caught.value.user_message()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses a shell script as the Python")
def test_nonzero_exit_without_error_event_is_a_crash_with_stderr_tail(tmp_path):
    python = fake_python(tmp_path, 'echo \'{"event": "progress", "fraction": 0.5}\'; '
                                   'echo "free(): invalid pointer" >&2; exit 3')
    feedback = QgsProcessingFeedback()
    with pytest.raises(EngineError) as caught:
        run_engine(python, "selftest", [], feedback)
    assert "exit code 3 without reporting an error" in caught.value.message
    assert "free(): invalid pointer" in caught.value.user_message()
    assert feedback.progress() == pytest.approx(50.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses a shell script as the Python")
def test_killed_by_sigkill_is_reported_as_out_of_memory(tmp_path):
    python = fake_python(tmp_path, 'echo "allocating" >&2; kill -9 $$')
    with pytest.raises(EngineError) as caught:
        run_engine(python, "selftest", [], QgsProcessingFeedback())
    assert caught.value.kind == "out_of_memory"
    assert "out-of-memory killer" in caught.value.message and "smaller batch" in caught.value.message


def test_cancel_terminates_the_engine_promptly(engine_python):
    feedback = QgsProcessingFeedback()
    threading.Timer(1.0, feedback.cancel).start()
    started = time.monotonic()
    with pytest.raises(EngineCancelled):
        run_engine(engine_python, "selftest", ["--seconds", "60"], feedback)
    assert time.monotonic() - started < 15
    assert 0 < feedback.progress() < 100


def test_python_files_in_the_start_folder_are_never_imported(engine_python, tmp_path, monkeypatch):
    """``python -m`` puts its start folder first on sys.path: a planted module there must not run."""
    marker = tmp_path / "planted_module_ran"
    for name in ("onnxruntime", "numpy", "json"):
        (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write('{name} ')\n")
    monkeypatch.chdir(tmp_path)
    outputs = run_engine(engine_python, "env-report", ["--require", "onnxruntime", "numpy"], QgsProcessingFeedback())
    assert not marker.exists(), marker.read_text()
    assert outputs


def test_no_file_is_left_unclosed(engine_python):
    import gc  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        run_engine(engine_python, "selftest", ["--seconds", "0.1"], QgsProcessingFeedback())
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [str(w.message) for w in caught]
