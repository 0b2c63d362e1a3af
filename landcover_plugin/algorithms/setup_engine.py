"""Set up engine environment: create and fill the managed venv, or only report what the engine will use."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterString,
)

from ..qgis_glue import engine_python
from ..qgis_glue.engine_runner import EngineCancelled, EngineError, stream_process
from .base import EngineAlgorithm

REQUIREMENTS = Path(__file__).resolve().parents[1] / "engine_requirements.txt"
MODES = ["Install or update the managed engine environment", "Check only: report what the engine will use"]


class SetupEngineAlgorithm(EngineAlgorithm):
    MODE = "MODE"
    BASE_PYTHON = "BASE_PYTHON"
    PIP_ARGS = "PIP_ARGS"
    PYTHON = "PYTHON"
    GPU = "GPU"
    TORCH_DEVICE = "TORCH_DEVICE"
    ORT_PROVIDERS = "ORT_PROVIDERS"
    VERSIONS = "VERSIONS"

    def name(self):
        return "setup_engine_environment"

    def displayName(self):  # noqa: N802 - QGIS's name
        return self.tr("Set up engine environment")

    def shortHelpString(self):  # noqa: N802 - QGIS's name
        return self.tr(
            "Creates the engine's own Python environment (a virtual environment in your QGIS profile folder) and "
            "installs torch, onnxruntime and the other engine packages into it with pip. QGIS's own Python is "
            "never changed. When nvidia-smi finds an NVIDIA GPU, the GPU builds are chosen "
            "(onnxruntime-gpu; torch's CUDA build).\n\n"
            "<b>Check only</b> installs nothing: it reports the engine's Python, package versions, the GPU's "
            "name (or 'no GPU'), the torch device and the onnxruntime execution providers that will be used.\n\n"
            "Which Python runs the engine: the LANDCOVER_PYTHON environment variable if set, else the plugin "
            "setting (written by this algorithm), else the managed environment.\n\n"
            "<b>Extra pip arguments</b>: e.g. '--find-links /path/to/wheels --no-index' on a closed network, "
            "or an '--index-url' of PyTorch's CUDA wheel index on Windows. Installation takes a few minutes "
            "and downloads about 1 GB (several GB with CUDA).")

    def initAlgorithm(self, config=None):  # noqa: N802 - QGIS's name
        self.addParameter(QgsProcessingParameterEnum(self.MODE, self.tr("Mode"), options=MODES, defaultValue=0))
        self.addParameter(QgsProcessingParameterString(
            self.BASE_PYTHON, self.tr("Python to base the environment on (default: QGIS's Python)"),
            optional=True))
        self.addParameter(QgsProcessingParameterString(self.PIP_ARGS, self.tr("Extra pip arguments"),
                                                       optional=True))
        for output, label in ((self.PYTHON, "Engine Python"), (self.GPU, "GPU"),
                              (self.TORCH_DEVICE, "Torch device"), (self.ORT_PROVIDERS, "onnxruntime providers"),
                              (self.VERSIONS, "Package versions")):
            self.addOutput(QgsProcessingOutputString(output, self.tr(label)))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 - QGIS's name
        check_only = self.parameterAsEnum(parameters, self.MODE, context) == 1
        if check_only:
            python, source = engine_python.resolve_engine_python()
            feedback.pushInfo(f"Engine Python: {python} (from {source})")
        else:
            base = self.parameterAsString(parameters, self.BASE_PYTHON, context) or engine_python.base_python()
            pip_args = self.parameterAsString(parameters, self.PIP_ARGS, context).split()
            python = self._install(base, pip_args, feedback)
        report = self.run_engine("env-report", [], feedback, python=python)
        feedback.setProgress(100)
        versions = ", ".join(f"{k} {v or 'MISSING'}" for k, v in report["packages"].items())
        providers = ", ".join(report["onnxruntime_providers"]) or "none"
        feedback.pushInfo(f"Engine ready: {python}\nGPU: {report['gpu']}\nTorch device: {report['torch_device']}\n"
                          f"onnxruntime providers: {providers}\nPackages: {versions}")
        return {self.PYTHON: python, self.GPU: report["gpu"], self.TORCH_DEVICE: report["torch_device"] or "",
                self.ORT_PROVIDERS: providers, self.VERSIONS: versions}

    # -- installation ---------------------------------------------------------------------------
    def _install(self, base: str, pip_args: list, feedback) -> str:
        venv_dir = engine_python.managed_venv_dir()
        python = engine_python.venv_python(venv_dir)
        try:
            if not python.exists():
                feedback.setProgressText("Creating the virtual environment")
                feedback.pushInfo(f"Creating {venv_dir} from {base} (with access to QGIS's packages)")
                venv_dir.parent.mkdir(parents=True, exist_ok=True)
                if stream_process([base, "-m", "venv", "--system-site-packages", str(venv_dir)], feedback) != 0:
                    raise QgsProcessingException(
                        f"Could not create a virtual environment with {base}. On Debian/Ubuntu install the "
                        f"'python3-venv' package; or give another Python in 'Python to base the environment on'.")
            feedback.setProgress(10)
            with tempfile.TemporaryDirectory() as tmp:
                requirements, constraints = self._requirement_files(str(python), Path(tmp), feedback)
                progress = _PipProgress(feedback)
                code = stream_process([str(python), "-m", "pip", "install", "--upgrade", "-r", requirements,
                                       "-c", constraints, *pip_args], feedback, on_line=progress,
                                      env=_pip_environment())
            if code != 0:
                raise QgsProcessingException(
                    f"pip could not install the engine's packages into {venv_dir} (exit code {code}); the log above "
                    f"shows why. On a closed network, pass '--no-index --find-links <folder of wheels>' as extra "
                    f"pip arguments.")
        except EngineCancelled as exc:
            raise QgsProcessingException("Cancelled: the engine environment may be incomplete; run again.") from exc
        except EngineError as exc:
            raise QgsProcessingException(exc.user_message()) from exc
        engine_python.remember_engine_python(str(python))
        return str(python)

    def _requirement_files(self, python: str, folder: Path, feedback) -> tuple:
        lines = REQUIREMENTS.read_text(encoding="utf-8").splitlines()
        gpu = _nvidia_gpu()
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


class _PipProgress:
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


def _nvidia_gpu() -> str:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return ""
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""


def _numpy_version(python: str) -> str:
    try:
        out = subprocess.run([python, "-c", "import numpy; print(numpy.__version__)"], capture_output=True,
                             text=True, timeout=60, check=False, env=_pip_environment())
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _pip_environment() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONHOME", None)
    env.pop("PYTHONPATH", None)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if sys.platform != "win32":
        env.setdefault("PIP_PROGRESS_BAR", "off")
    return env
