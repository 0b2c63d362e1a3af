"""Engine command ``env-report``: what this engine environment will use (versions, GPU, providers)."""
import importlib
import platform
import sys
from dataclasses import dataclass

from .errors import BadInputError
from .gpu import classify_gpu_unused, training_gpu_unused
from .options import option

ENGINE_PACKAGES = ["numpy", "rasterio", "onnxruntime", "torch", "onnx"]


@dataclass
class EnvReportOptions:
    require: list = option(ENGINE_PACKAGES, nargs="*",
                           help="packages that must import (default: all the engine needs)")


def _version(name: str):
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - report any import failure, whatever its type
        return None, f"{type(exc).__name__}: {exc}"
    return getattr(module, "__version__", "unknown"), None


def collect(extra=()) -> dict:
    report = {"python": sys.executable, "python_version": platform.python_version(), "packages": {},
              "problems": []}
    for name in ("numpy", "rasterio", "onnx", "onnxruntime", "torch", "matplotlib", *extra):
        version, problem = _version(name)
        report["packages"][name] = version
        if problem:
            report["problems"].append(f"{name}: {problem}")
    report["gpu"] = "no GPU"
    report["torch_device"] = None
    if report["packages"]["torch"]:
        import torch

        if torch.cuda.is_available():
            report["gpu"] = torch.cuda.get_device_name(0)
            report["torch_device"] = "cuda"
        else:
            report["torch_device"] = "cpu"
    report["onnxruntime_providers"] = []
    if report["packages"]["onnxruntime"]:
        import onnxruntime

        available = onnxruntime.get_available_providers()
        report["onnxruntime_providers"] = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                                           if p in available]
    return report


def env_report(options: EnvReportOptions, events) -> dict:
    report = collect(extra=[n for n in options.require if n not in ENGINE_PACKAGES])
    events.info(f"Python {report['python_version']}; packages: "  # one line: the QGIS Log shows each once
                + ", ".join(f"{name} {version or 'MISSING'}" for name, version in report["packages"].items()))
    events.info(f"GPU: {report['gpu']}; torch device: {report['torch_device']}; "
                f"onnxruntime providers: {', '.join(report['onnxruntime_providers']) or 'none'}")
    unused = [training_gpu_unused(report["torch_device"], report["packages"]["torch"])]
    if report["packages"]["onnxruntime"]:
        unused.append(classify_gpu_unused(report["onnxruntime_providers"], report["packages"]["onnxruntime"]))
    report["gpu_unused"] = [note for note in unused if note]  # an NVIDIA GPU here that a part would not use
    for note in report["gpu_unused"]:
        events.warning(note)
    missing = [name for name in options.require if not report["packages"].get(name)]
    if missing:
        details = f" ({'; '.join(report['problems'])})" if report["problems"] else ""
        raise BadInputError(f"The engine environment ({sys.executable}) lacks {', '.join(missing)}{details}. "
                            f"Run 'Set up engine environment' to install it.")
    return report
