"""Which Python runs the engine: ``LANDCOVER_PYTHON``, else the plugin setting, else the managed venv.

The managed virtual environment lives in the QGIS profile folder and is created by the
"Set up engine environment" algorithm; nothing is ever installed into QGIS's own Python.
"""
import os
import sys
from pathlib import Path

from qgis.core import QgsApplication, QgsSettings

ENV_VAR = "LANDCOVER_PYTHON"
SETTING_KEY = "landcover/engine_python"


def managed_venv_dir() -> Path:
    return Path(QgsApplication.qgisSettingsDirPath()) / "landcover" / "engine-venv"


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def resolve_engine_python() -> tuple:
    """(python path, where it came from), in the documented order of precedence."""
    from_env = os.environ.get(ENV_VAR, "").strip()
    if from_env:
        return from_env, f"the {ENV_VAR} environment variable"
    from_setting = str(QgsSettings().value(SETTING_KEY, "") or "").strip()
    if from_setting:
        return from_setting, f"the plugin setting '{SETTING_KEY}'"
    return str(venv_python(managed_venv_dir())), "the managed engine environment"


def remember_engine_python(python: str) -> None:
    QgsSettings().setValue(SETTING_KEY, python)


def base_python() -> str:
    """The interpreter QGIS itself runs on (the one to base a --system-site-packages venv on).

    Inside QGIS ``sys.executable`` is often the qgis binary, so look beside the Python prefix.
    """
    if Path(sys.executable).name.lower().startswith("python"):
        return sys.executable
    prefix = Path(sys.base_exec_prefix)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = ([prefix / "python.exe", prefix / "python3.exe"] if sys.platform == "win32"
                  else [prefix / "bin" / f"python{version}", prefix / "bin" / "python3"])
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    return str(candidates[-1])
