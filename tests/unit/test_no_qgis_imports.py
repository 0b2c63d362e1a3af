"""The engine side must run without QGIS; the QGIS side must run without the engine's packages."""
import ast
import json
import subprocess
import sys
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


# Imports every QGIS-side module with the engine's packages made unimportable, so an import reached through
# any chain of modules (not only the file's own import lines) fails the test.
_BLOCKED_IMPORT = """
import importlib, json, sys
blocked = set(json.loads(sys.argv[1]))
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ImportError(f"blocked engine package {name}")
        return None
sys.meta_path.insert(0, Block())
failures = {}
for module in json.loads(sys.argv[2]):
    try:
        importlib.import_module(module)
    except Exception as exc:
        failures[module] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"failures": failures, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in blocked)}))
"""


def qgis_side_modules() -> list:
    modules = []
    for path in python_files(QGIS_SIDE):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_qgis_side_imports_no_engine_package_even_indirectly():
    modules = qgis_side_modules()
    assert "landcover_plugin.algorithms.classify_raster" in modules and len(modules) > 10
    done = subprocess.run([sys.executable, "-c", _BLOCKED_IMPORT, json.dumps(sorted(ENGINE_ONLY)),
                           json.dumps(modules)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failures"] == {}, "QGIS-side modules that reach an engine package: " + json.dumps(
        result["failures"], indent=1)
    assert result["loaded"] == []


def test_the_transitive_check_catches_an_indirect_import(tmp_path):
    (tmp_path / "leaf.py").write_text("import numpy\nimport rasterio\n")
    (tmp_path / "top.py").write_text("from leaf import numpy\n")
    done = subprocess.run([sys.executable, "-c", _BLOCKED_IMPORT, json.dumps(sorted(ENGINE_ONLY)),
                           json.dumps(["top"])], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "blocked engine package rasterio" in result["failures"]["top"]
