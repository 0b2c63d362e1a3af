"""The plugin installed as an analyst would (scripts/package_plugin.py) into a throw-away QGIS profile,
then found and run headless by the real qgis_process."""
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from landcover_plugin.provider import ALGORITHMS

QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/lib/qgis/bin/qgis_process.bin"
pytestmark = pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process.bin is not installed")


@pytest.fixture(scope="module")
def qgis_home(tmp_path_factory, repo_root):
    """A HOME whose default QGIS profile has the plugin installed and enabled."""
    home = tmp_path_factory.mktemp("home")
    plugins = home / ".local/share/QGIS/QGIS3/profiles/default/python/plugins"
    subprocess.run([sys.executable, str(repo_root / "scripts/package_plugin.py"), "--dest", str(plugins)],
                   check=True, capture_output=True)
    # A first run creates the profile; only then does qgis_process 3.22 see the profile's plugins.
    assert qgis_process(home, "plugins", timeout=120).returncode == 0
    enabled = qgis_process(home, "plugins", "enable", "landcover_plugin", timeout=120)
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    return home


def qgis_env(home) -> dict:
    env = dict(os.environ, HOME=str(home), QT_QPA_PLATFORM="offscreen")
    # qgis_process must find the plugin in the throw-away profile, not in this checkout or pytest-qgis' settings
    for name in ("PYTHONPATH", "QGIS_CUSTOM_CONFIG_PATH", "QGIS_OPTIONS_PATH"):
        env.pop(name, None)
    return env


def qgis_process(home, *args, timeout=300):
    return subprocess.run([QGIS_PROCESS, *args], env=qgis_env(home), capture_output=True, text=True,
                          timeout=timeout)


def test_installed_plugin_folder_holds_metadata_and_the_trainer(qgis_home):
    folder = qgis_home / ".local/share/QGIS/QGIS3/profiles/default/python/plugins/landcover_plugin"
    metadata = (folder / "metadata.txt").read_text()
    assert "hasProcessingProvider=yes" in metadata and "qgisMinimumVersion=3.22" in metadata
    assert (folder / "training" / "__init__.py").is_file() and not (folder / "metadata.txt").is_symlink()


def test_qgis_process_lists_the_providers_algorithms(qgis_home):
    listed = qgis_process(qgis_home, "list")
    assert listed.returncode == 0, listed.stderr
    for algorithm_class in ALGORITHMS:
        assert f"landcover:{algorithm_class().name()}" in listed.stdout, listed.stdout[-3000:]


def test_qgis_process_runs_an_engine_algorithm_headless(qgis_home, engine_python):
    ran = qgis_process(qgis_home, "run", "landcover:setup_engine_environment", "--json", "--", "MODE=1")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    results = json.loads(ran.stdout)["results"]
    assert "CPUExecutionProvider" in results["ORT_PROVIDERS"]
    assert results["PYTHON"] == engine_python


def test_zip_has_one_top_folder_and_no_tests_or_data(tmp_path, repo_root):
    zip_path = tmp_path / "landcover_plugin.zip"
    subprocess.run([sys.executable, str(repo_root / "scripts/package_plugin.py"), "--zip", str(zip_path)],
                   check=True, capture_output=True)
    names = zipfile.ZipFile(zip_path).namelist()
    assert {n.split("/")[0] for n in names} == {"landcover_plugin"}
    assert "landcover_plugin/metadata.txt" in names and "landcover_plugin/training/__init__.py" in names
    assert not any("/tests/" in n or n.endswith(".tif") or "__pycache__" in n for n in names)


def test_qgis_process_creates_a_reference_sample(qgis_home, shared_data, tmp_path):
    output = tmp_path / "sample.gpkg"
    ran = qgis_process(qgis_home, "run", "landcover:create_reference_sample", "--json", "--",
                       f"INPUT={shared_data / 'zion' / 'nlcd2011_8class.tif'}", "SIZE=40", "ALLOCATION=2",
                       "SEED=3", f"CLASSES={shared_data / 'zion' / 'classes.json'}", f"OUTPUT={output}")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    results = json.loads(ran.stdout)["results"]
    assert results["SAMPLE_SIZE"] == 40 and results["SEED_USED"] == 3 and output.is_file()


def test_qgis_process_refuses_an_out_of_range_number_naming_it(qgis_home, shared_data, tmp_path):
    """A seed over 2**31 - 1 reached the engine as --seed=0 (Processing reads integers as C ints): the sample
    was drawn with another seed than the one asked for, without a word."""
    output = tmp_path / "sample.gpkg"
    ran = qgis_process(qgis_home, "run", "landcover:create_reference_sample", "--",
                       f"INPUT={shared_data / 'zion' / 'nlcd2011_8class.tif'}", "SIZE=40", "SEED=5000000000",
                       f"OUTPUT={output}")
    assert ran.returncode != 0 and not output.exists()
    assert "(SEED) must be from 0 to 2147483647, got 5000000000" in ran.stdout + ran.stderr, ran.stdout + ran.stderr
    assert "--seed=0" not in ran.stdout + ran.stderr


def test_qgis_process_assesses_with_one_output_or_none_named(qgis_home, shared_data, tmp_path):
    """Headless, as in the dialog, the report and the table are not both required: one named, the other goes
    beside it; none named, both go beside the classified raster, not into the temporary folder that qgis_process
    deletes (3.22 refused the run: 'mandatory parameters ... OUTPUT_TABLE')."""
    inputs = [f"CLASSIFIED={shared_data / 'eolearn' / 'lulc.tif'}",
              f"REFERENCE_VECTOR={shared_data / 'eolearn' / 'lulc_polygons.gpkg'}", "CLASS_FIELD=LULC_ID"]
    html = tmp_path / "report.html"
    ran = qgis_process(qgis_home, "run", "landcover:assess_accuracy", "--json", "--", *inputs, f"OUTPUT_HTML={html}")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    results = json.loads(ran.stdout)["results"]
    assert results["OUTPUT_HTML"] == str(html) and html.is_file() and 0.5 < results["OA"] <= 1.0
    table = tmp_path / "report_table.csv"
    assert results["OUTPUT_TABLE"] == str(table) and "class 8" in table.read_text(encoding="utf-8")

    ran = qgis_process(qgis_home, "run", "landcover:assess_accuracy", "--json", "--", *inputs)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    results = json.loads(ran.stdout)["results"]
    folder = shared_data / "eolearn"
    assert results["OUTPUT_HTML"] == str(folder / "lulc_accuracy.html")
    assert results["OUTPUT_TABLE"] == str(folder / "lulc_accuracy_table.csv")
    for name in ("OUTPUT_HTML", "OUTPUT_TABLE", "OUTPUT_JSON"):
        assert os.path.isfile(results[name]), results


def test_qgis_process_exports_chips_keeping_the_earlier_iterations_class_values(qgis_home, shared_data, tmp_path):
    """Iteration 1 without fallen_dry (cleared 1, forest 2, water 3); iteration 2 with every rstoolbox polygon and
    the first's dataset.json as the class list to keep: the earlier classes keep their values, fallen_dry comes
    after them (without the list, names in sorted order made it 2 and moved forest and water)."""
    from landcover_plugin.core.chips.export import export_chips
    from landcover_plugin.core.chips.options import ChipExportOptions

    rstoolbox = shared_data / "rstoolbox"
    first = tmp_path / "first"
    export_chips(ChipExportOptions(rstoolbox / "landsat5_1988_7band.tif", first, chip_size=32, fids=list(range(1, 29)),
                                   labels_vector=rstoolbox / "training_polygons.gpkg", class_field="class"))
    second = tmp_path / "second"
    ran = qgis_process(qgis_home, "run", "landcover:export_label_chips", "--json", "--",
                       f"INPUT={rstoolbox / 'landsat5_1988_7band.tif'}", "CLASS_FIELD=class", "CHIP_SIZE=32",
                       f"LABELS={rstoolbox / 'training_polygons.gpkg'}", f"KEEP_CLASSES={first / 'dataset.json'}",
                       f"OUTPUT={second}")
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    classes = json.loads((second / "dataset.json").read_text())["classes"]
    assert [(c["id"], c["name"]) for c in classes] == [(1, "cleared"), (2, "forest"), (3, "water"), (4, "fallen_dry")]
    assert "new classes (numbered after them, by name): 4=fallen_dry" in ran.stdout + ran.stderr
