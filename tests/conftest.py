"""Shared fixtures: the real sample data, the repository root, and the engine's Python."""
import os
import shutil
import sys
from pathlib import Path

import pytest

from landcover_plugin.core.chips.options import ChipExportOptions

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO_ROOT.parent / "shared" / "data").resolve()

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# The engine runs in this same interpreter's environment unless told otherwise.
os.environ.setdefault("LANDCOVER_PYTHON", sys.executable)


@pytest.fixture(scope="session", autouse=True)
def optimised_graph_cache(tmp_path_factory):
    """onnxruntime's optimised graphs go to a folder of this test session (engines started by tests inherit it),
    never to the user's cache."""
    os.environ["LANDCOVER_CACHE_DIR"] = str(tmp_path_factory.mktemp("optimised_graphs"))
    yield os.environ["LANDCOVER_CACHE_DIR"]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data(tmp_path_factory) -> Path:
    """A private copy of the real sample data (``../shared/data``) for this test session.

    The originals are read-only for everyone: QGIS and GDAL write beside what they open (statistics
    ``.aux.xml`` files, GeoPackage bookkeeping), so tests only ever see this copy.
    """
    if not SHARED_DATA.is_dir():
        pytest.fail(f"The sample data folder {SHARED_DATA} is missing: clone the project beside 'shared/'.")
    copy = tmp_path_factory.mktemp("shared") / "data"
    shutil.copytree(SHARED_DATA, copy, ignore=shutil.ignore_patterns("*.aux.xml"))
    for path in copy.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return copy


@pytest.fixture(scope="session")
def engine_python() -> str:
    return os.environ["LANDCOVER_PYTHON"]


@pytest.fixture(scope="module")
def chips(tmp_path_factory, shared_data):
    """A chip dataset cut from rstoolbox (7-band Landsat 5, text class field), 32 px chips; one per module."""
    from landcover_plugin.core.chips.export import export_chips

    folder = tmp_path_factory.mktemp("rstoolbox") / "chips"
    export_chips(ChipExportOptions(shared_data / "rstoolbox" / "landsat5_1988_7band.tif", folder,
                                   labels_vector=shared_data / "rstoolbox" / "training_polygons.gpkg",
                                   class_field="class", chip_size=32))
    return folder
