"""The ``train`` engine command as the QGIS side runs it: a subprocess with JSON-line events on stdout.

Covers a finished run, a cancel (SIGTERM) mid-run that still delivers a usable model with exit code 0,
a broken chip folder (exit 2) and a real out-of-memory failure (exit 3, address space capped).
"""
import json
import resource
import subprocess

import numpy as np
import onnxruntime as ort
from engine_runs import cancelled_run, command, of_type

TINY = ["--epochs", "2", "--batch-size", "4", "--base-width", "8", "--learning-rate", "0.003", "--device", "cpu",
        "--no-refit"]


def run(engine_python, repo_root, *args, **kwargs):
    proc = subprocess.run(command(engine_python, *args), cwd=repo_root, capture_output=True, text=True,
                          timeout=300, **kwargs)
    return proc.returncode, [json.loads(line) for line in proc.stdout.splitlines() if line.strip()], proc.stderr


def test_a_finished_run(chips, tmp_path, engine_python, repo_root):
    out = tmp_path / "model.onnx"
    code, events, stderr = run(engine_python, repo_root, chips, "--output", out, *TINY)
    assert code == 0, stderr
    (result,) = of_type(events, "result")
    outputs = result["outputs"]
    assert outputs["OUTPUT"] == str(out) and out.is_file()
    assert [m["epoch"] for m in of_type(events, "metric")] == [1, 2]
    assert of_type(events, "progress") and not of_type(events, "error")
    assert outputs["cancelled"] is False and outputs["device"] == "cpu"
    for key in ("CURVES_CSV", "CURVES_PNG", "CHECKPOINT"):
        assert (tmp_path / outputs[key]).is_file()
    assert any("Training on CPU" in e["message"] for e in of_type(events, "log"))


def test_sigterm_mid_run_keeps_the_best_epoch_and_exports_a_usable_model(chips, tmp_path, engine_python,
                                                                        repo_root):
    out = tmp_path / "model.onnx"
    code, events, stderr = cancelled_run(engine_python, repo_root, chips, "--output", out, "--epochs", "500",
                                         "--batch-size", "4", "--base-width", "8", "--patience", "0", "--device",
                                         "cpu")
    assert code == 0, stderr
    (result,) = of_type(events, "result")
    outputs = result["outputs"]
    metrics = {m["epoch"]: m["values"] for m in of_type(events, "metric")}
    assert outputs["cancelled"] is True and 2 <= outputs["epochs_run"] < 500
    assert outputs["BEST_VAL_MIOU"] == max(m["val_miou"] for m in metrics.values())
    assert any("Cancelled" in e["message"] for e in of_type(events, "log") if e["level"] == "warning")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    probs = session.run(None, {"input": np.zeros((3, 7, 32, 32), np.float32)})[0]
    assert probs.shape == (3, 4, 32, 32) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_a_broken_chip_folder_is_a_bad_input_error(tmp_path, engine_python, repo_root):
    (tmp_path / "chips").mkdir()
    (tmp_path / "chips" / "dataset.json").write_text("{ not json")
    out = tmp_path / "model.onnx"
    code, events, _ = run(engine_python, repo_root, tmp_path / "chips", "--output", out, *TINY)
    assert code == 2
    (error,) = of_type(events, "error")
    assert error["kind"] == "bad_input" and "dataset.json" in error["message"]
    assert not of_type(events, "result") and not out.exists()


def test_an_output_folder_that_cannot_be_written_fails_before_training(chips, tmp_path, engine_python, repo_root):
    blocker = tmp_path / "a_file"  # a folder under a regular file can never be created, even by root
    blocker.write_text("")
    code, events, stderr = run(engine_python, repo_root, chips, "--output", blocker / "m.onnx", *TINY)
    assert code == 2
    (error,) = of_type(events, "error")
    assert error["kind"] == "bad_input" and "Choose an output folder you can write to" in error["message"]
    assert not of_type(events, "metric") and not of_type(events, "result") and "Traceback" not in stderr


def test_running_out_of_memory_is_reported_with_the_fix(chips, tmp_path, engine_python, repo_root):
    # The engine's own footprint once its modules are imported, then 1.5 GiB more address space: a U-Net of
    # base width 256 (about 2 GB of weights alone) cannot fit, whatever torch build is installed.
    probe = subprocess.run([engine_python, "-c", "import training.loop, landcover_plugin.core.engine; "
                            "print(open('/proc/self/status').read().split('VmPeak:')[1].split()[0])"],
                           cwd=repo_root, capture_output=True, text=True, timeout=120, check=True)
    limit = int(probe.stdout.split()[-1]) * 1024 + 1536 * 2 ** 20

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    out = tmp_path / "model.onnx"
    code, events, stderr = run(engine_python, repo_root, chips, "--output", out, "--epochs", "1", "--device", "cpu",
                               "--architecture", "unet", "--base-width", "256", "--batch-size", "8",
                               preexec_fn=cap_memory)
    assert code == 3, (events, stderr[-2000:])
    (error,) = of_type(events, "error")
    assert error["kind"] == "out_of_memory"
    assert "smaller batch size (e.g. 4)" in error["message"]
    assert not out.exists()


def test_a_model_of_nan_nodata_imagery_carries_a_strict_json_card(shared_data, tmp_path, engine_python, repo_root):
    """The eo-learn composite (float32, nodata NaN, 12 % NaN) with its lulc.tif labels: the model card said
    '"nodata": NaN', which json.dumps writes but is no JSON (RFC 8259): a strict reader (a browser, QGIS's
    QJsonDocument, serde) refused the whole card. It now says "nan", as dataset.json does."""
    from landcover_plugin.core.chips.export import export_chips  # noqa: PLC0415
    from landcover_plugin.core.chips.options import ChipExportOptions  # noqa: PLC0415

    folder = shared_data / "eolearn"
    export_chips(ChipExportOptions(folder / "sentinel2_13band_composite.tif", tmp_path / "chips",
                                   labels_raster=folder / "lulc.tif", chip_size=32, stride=32))
    out = tmp_path / "model.onnx"
    code, _, stderr = run(engine_python, repo_root, tmp_path / "chips", "--output", out, "--epochs", "1",
                          "--batch-size", "4", "--base-width", "8", "--device", "cpu")
    assert code == 0, stderr
    import onnx  # noqa: PLC0415

    text = {p.key: p.value for p in onnx.load(str(out)).metadata_props}["landcover_card"]

    def refuse(constant):
        raise ValueError(f"{constant} is no JSON")
    card = json.loads(text, parse_constant=refuse)
    assert card["nodata"] == "nan" and card["input_dtype"] == "float32"
