"""Assemble the installable plugin folder: ``landcover_plugin/`` with ``training/`` inside it.

    python scripts/package_plugin.py --dest <plugins folder>   # install (e.g. into a QGIS profile)
    python scripts/package_plugin.py --zip dist/landcover_plugin.zip

The zip has one top folder, as QGIS's plugin installer expects; tests, data and caches stay out.
"""
import argparse
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = "landcover_plugin"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".pytest_cache")


def stage(plugins_dir: Path) -> Path:
    """Copy the plugin (symlinks resolved) and the trainer into ``plugins_dir/landcover_plugin``."""
    target = plugins_dir / PLUGIN
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(REPO / PLUGIN, target, symlinks=False, ignore=IGNORE)
    shutil.copytree(REPO / "training", target / "training", symlinks=False, ignore=IGNORE)
    for extra in ("LICENSE", "README.md"):
        if (REPO / extra).exists():
            shutil.copy2(REPO / extra, target / extra)
    return target


def make_zip(zip_path: Path) -> Path:
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = stage(Path(tmp))
        with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(tmp).as_posix())
    return zip_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--dest", type=Path, help="a QGIS profile's python/plugins folder")
    group.add_argument("--zip", type=Path, help="path of the plugin zip to write")
    args = parser.parse_args(argv)
    if args.zip:
        print(f"Wrote {make_zip(args.zip)}")
    else:
        args.dest.mkdir(parents=True, exist_ok=True)
        print(f"Installed into {stage(args.dest)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
