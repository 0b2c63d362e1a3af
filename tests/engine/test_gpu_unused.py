"""An NVIDIA GPU that the engine would leave unused is said, not silent (analysts' first complaint about other tools).

Where ``nvidia-smi`` names a GPU but torch is a CPU build, or onnxruntime has no CUDA provider, env-report (what
*Set up engine environment*'s check shows) and Classify (device auto) warn, naming the GPU and the fix. The GPU here
is a stand-in ``nvidia-smi`` on the PATH, printing what the real one printed on an H200; this machine's torch and
onnxruntime are CPU builds, as on a GPU machine whose engine was set up without the GPU builds."""
import json
import os
import subprocess

import pytest

H200 = "GPU 0: NVIDIA H200 (UUID: GPU-6f2d1c9e-0a51-4b7e-9c3a-1d2e3f4a5b6c)"


@pytest.fixture
def smi_path(tmp_path):
    """A PATH whose ``nvidia-smi -L`` lists an H200, or prints ``output`` and exits with ``code`` (a broken driver)."""
    def make(output=H200, code=0):
        folder = tmp_path / f"bin{code}"
        folder.mkdir(exist_ok=True)
        smi = folder / "nvidia-smi"
        smi.write_text(f'#!/bin/sh\n[ "$1" = "-L" ] && echo "{output}"\nexit {code}\n')
        smi.chmod(0o755)
        return f"{folder}{os.pathsep}{os.environ['PATH']}"
    return make


def engine(engine_python, repo_root, path, *args):
    done = subprocess.run([engine_python, "-m", "landcover_plugin.core.engine", *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, PATH=path))
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    warnings = [e["message"] for e in events if e.get("event") == "log" and e.get("level") == "warning"]
    return done, events, warnings


def test_env_report_says_which_part_would_leave_the_gpu_unused(engine_python, repo_root, smi_path):
    done, events, warnings = engine(engine_python, repo_root, smi_path(), "env-report")
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = events[-1]["outputs"]
    assert outputs["gpu_unused"] == warnings and len(warnings) == 2
    training, classifying = warnings
    assert "NVIDIA GPU (NVIDIA H200)" in training and "training runs on the CPU" in training
    assert "torch's CUDA build" in training and outputs["packages"]["torch"] in training
    assert "classification runs on the CPU" in classifying and "onnxruntime-gpu" in classifying


def test_no_gpu_or_a_failing_nvidia_smi_warns_of_nothing(engine_python, repo_root, smi_path):
    for path in (os.environ["PATH"], smi_path(output="NVIDIA-SMI has failed", code=9)):
        done, events, warnings = engine(engine_python, repo_root, path, "env-report")
        assert done.returncode == 0 and warnings == [] and events[-1]["outputs"]["gpu_unused"] == []


def test_classify_on_auto_says_the_gpu_goes_unused_and_on_cpu_does_not(engine_python, repo_root, smi_path, model,
                                                                      zion_image, tmp_path):
    base = ["classify", "--raster", zion_image, "--model", model, "--overwrite"]
    done, _, warnings = engine(engine_python, repo_root, smi_path(), *base, "--output", tmp_path / "auto.tif")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [w for w in warnings if "NVIDIA H200" in w and "classification runs on the CPU" in w]
    done, _, warnings = engine(engine_python, repo_root, smi_path(), *base, "--output", tmp_path / "cpu.tif",
                               "--device", "cpu")  # the analyst chose the CPU
    assert done.returncode == 0 and not [w for w in warnings if "NVIDIA" in w]


def test_training_on_auto_says_the_gpu_goes_unused(engine_python, repo_root, smi_path, chips, tmp_path):
    done, _, warnings = engine(engine_python, repo_root, smi_path(), "train", chips, "--output", tmp_path / "m.onnx",
                               "--epochs", "1", "--batch-size", "4", "--base-width", "8", "--no-refit")
    assert done.returncode == 0, done.stderr[-2000:]
    assert [w for w in warnings if "NVIDIA H200" in w and "training runs on the CPU" in w]
