"""The engine side must run without QGIS; the QGIS side must run without the engine's packages."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QGIS_FREE = [REPO / "landcover_plugin" / "core", REPO / "training"]
ENGINE_ONLY = {"torch", "onnxruntime", "onnx", "rasterio", "sklearn", "matplotlib"}
QGIS_SIDE = [REPO / "landcover_plugin" / "algorithms", REPO / "landcover_plugin" / "qgis_glue",
             REPO / "landcover_plugin" / "plugin.py", REPO / "landcover_plugin" / "provider.py",
             REPO / "landcover_plugin" / "__init__.py"]


def imported_roots(path: Path) -> set:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def python_files(paths) -> list:
    files = []
    for path in paths:
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return files


@pytest.mark.parametrize("path", python_files(QGIS_FREE), ids=lambda p: str(p.relative_to(REPO)))
def test_engine_code_never_imports_qgis_or_qt(path):
    forbidden = imported_roots(path) & {"qgis", "PyQt5", "PyQt6", "PySide2", "PySide6", "processing"}
    assert not forbidden, f"{path.relative_to(REPO)} imports {forbidden}: move that code to the QGIS side"


@pytest.mark.parametrize("path", python_files(QGIS_SIDE), ids=lambda p: str(p.relative_to(REPO)))
def test_qgis_side_never_imports_engine_packages(path):
    forbidden = imported_roots(path) & ENGINE_ONLY
    assert not forbidden, f"{path.relative_to(REPO)} imports {forbidden}: QGIS's Python need not have them"


def test_the_check_finds_a_qgis_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from qgis.core import QgsRasterLayer\nimport numpy as np\n")
    assert imported_roots(sample) == {"qgis", "numpy"}
