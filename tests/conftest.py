"""Shared fixtures: the real sample data, the repository root, and the engine's Python."""
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT.parent / "shared" / "data").resolve()

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The engine runs in this same interpreter's environment unless told otherwise.
os.environ.setdefault("LANDCOVER_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"The sample data folder {SHARED_DATA} is missing: clone the project beside 'shared/'.")
    return SHARED_DATA


@pytest.fixture(scope="session")
def engine_python() -> str:
    return os.environ["LANDCOVER_PYTHON"]
