"""The machine's NVIDIA GPU, as ``nvidia-smi`` names it, and what of the engine would leave it unused.

QGIS-free and without torch or onnxruntime: *Set up engine environment* asks it which builds to install, and the
engine's env-report and classifier ask it whether a GPU is going unused (analysts' first complaint about other
tools: "the GPU is silently not used")."""
import functools
import re
import shutil
import subprocess

SET_UP = "'Set up engine environment' installs it when nvidia-smi finds the GPU"


@functools.lru_cache(maxsize=1)
def nvidia_gpu() -> str:
    """The first GPU's name (``NVIDIA H200``), or "" when ``nvidia-smi`` is missing or finds none."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return ""
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
    if not lines:
        return ""
    named = re.match(r"GPU \d+: (.+?) \(UUID", lines[0])
    return named.group(1) if named else lines[0].strip()


def classify_gpu_unused(providers: list, onnxruntime_version: str) -> str:
    """Why classification will not run on the NVIDIA GPU that is here ("" when it will, or there is none)."""
    gpu = nvidia_gpu()
    if not gpu or "CUDAExecutionProvider" in providers:
        return ""
    return (f"This machine has an NVIDIA GPU ({gpu}), but this onnxruntime ({onnxruntime_version}) has no CUDA "
            f"execution provider: classification runs on the CPU. Install onnxruntime-gpu in place of "
            f"onnxruntime to classify on the GPU ({SET_UP}).")


def training_gpu_unused(torch_device: str, torch_version: str) -> str:
    """Why training will not run on the NVIDIA GPU that is here ("" when it will, or there is none)."""
    gpu = nvidia_gpu()
    if not gpu or torch_device != "cpu":
        return ""
    return (f"This machine has an NVIDIA GPU ({gpu}), but torch {torch_version} does not see it (a CPU build, or "
            f"one for another CUDA version than the driver's): training runs on the CPU. Install torch's CUDA "
            f"build ({SET_UP}).")
