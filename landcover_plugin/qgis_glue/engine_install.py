"""Create and fill the engine's managed virtual environment with pip (QGIS's own Python is never changed).

The packages are those of ``engine_requirements.txt``; when ``nvidia-smi`` sees an NVIDIA GPU, the GPU builds
are chosen (onnxruntime-gpu; torch's CUDA build). numpy stays at the version the base Python has, so QGIS's
GDAL and rasterio keep working. Every failure is an :class:`EngineError` whose message says how to fix it.
"""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..core.gpu import nvidia_gpu
from . import engine_python
from .engine_runner import EngineError, stream_process

REQUIREMENTS = Path(__file__).resolve().parents[1] / "engine_requirements.txt"


def install_engine_environment(base: str, pip_args: list, feedback) -> str:
    """Create (when missing) and update the managed venv from ``base``; remember it; return its Python.

    Raises :class:`EngineError` (a clear message), or ``EngineCancelled`` when the user cancels.
    """
    venv_dir = engine_python.managed_venv_dir()
    python = engine_python.venv_python(venv_dir)
    if not python.exists():
        feedback.setProgressText("Creating the virtual environment")
        feedback.pushInfo(f"Creating {venv_dir} from {base} (with access to QGIS's packages)")
        venv_dir.parent.mkdir(parents=True, exist_ok=True)
        if stream_process([base, "-m", "venv", "--system-site-packages", str(venv_dir)], feedback) != 0:
            raise EngineError(
                f"Could not create a virtual environment with {base}. On Debian/Ubuntu install the "
                f"'python3-venv' package; or give another Python in 'Python to base the environment on'.",
                "bad_input")
    feedback.setProgress(10)
    with tempfile.TemporaryDirectory() as tmp:
        requirements, constraints = requirement_files(str(python), Path(tmp), feedback)
        code = stream_process([str(python), "-m", "pip", "install", "--upgrade", "-r", requirements,
                               "-c", constraints, *pip_args], feedback, on_line=PipProgress(feedback),
                              env=pip_environment())
    if code != 0:
        raise EngineError(
            f"pip could not install the engine's packages into {venv_dir} (exit code {code}); the log above "
            f"shows why. On a closed network, pass '--no-index --find-links <folder of wheels>' as extra "
            f"pip arguments.", "bad_input")
    engine_python.remember_engine_python(str(python))
    return str(python)


def requirement_files(python: str, folder: Path, feedback) -> tuple:
    """(requirements.txt, constraints.txt) written into ``folder`` for this machine (GPU builds or not)."""
    lines = REQUIREMENTS.read_text(encoding="utf-8").splitlines()
    gpu = nvidia_gpu()
    if gpu:
        feedback.pushInfo(f"NVIDIA GPU found ({gpu}): installing onnxruntime-gpu and torch's CUDA build.")
        lines = [line.replace("onnxruntime", "onnxruntime-gpu", 1) if line.startswith("onnxruntime") else line
                 for line in lines]
    else:
        feedback.pushInfo("No NVIDIA GPU found (nvidia-smi): installing CPU builds.")
    requirements = folder / "requirements.txt"
    requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
    numpy_version = _numpy_version(python)
    pin = f"numpy=={numpy_version}" if numpy_version else "numpy<2"
    feedback.pushInfo(f"Keeping {pin} so QGIS's GDAL and rasterio keep working.")
    constraints = folder / "constraints.txt"
    constraints.write_text(pin + "\n", encoding="utf-8")
    return str(requirements), str(constraints)


class PipProgress:
    """Moves the progress bar from 10 % to 95 % as pip collects, downloads and installs."""

    def __init__(self, feedback):
        self.feedback = feedback
        self.collected = 0

    def __call__(self, line: str):
        if line.startswith("Collecting") or line.startswith("Requirement already satisfied"):
            self.collected += 1
            self.feedback.setProgress(min(60.0, 10.0 + 2.0 * self.collected))
            self.feedback.setProgressText(line[:80])
        elif line.startswith("Installing collected packages"):
            self.feedback.setProgress(70.0)
            self.feedback.setProgressText("Installing packages")
        elif line.startswith("Successfully installed"):
            self.feedback.setProgress(95.0)


def _numpy_version(python: str) -> str:
    try:
        out = subprocess.run([python, "-c", "import numpy; print(numpy.__version__)"], capture_output=True,
                             text=True, timeout=60, check=False, env=pip_environment())
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def pip_environment() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPATH", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if sys.platform != "win32":
        env.setdefault("PIP_PROGRESS_BAR", "off")
    return env
