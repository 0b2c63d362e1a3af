"""make demo (``python -m scripts.demo``): the analyst's whole workflow, headless, through the real
``qgis_process.bin``.

Two scenes from ``../shared/data`` (copied first: the originals are never written to):
- rstoolbox: Landsat 5, 7 bands, hand-digitised polygons with a text class field. Three polygons in four
  train the model; every fourth polygon is held out for the accuracy assessment.
- zion: Landsat 8, 4 bands uint16 with nodata, NLCD land cover as raster labels. The western 70 % of the
  labels train the model; the eastern 30 % are held out for the accuracy assessment.

Each scene: export label chips -> train (a CPU budget of a few minutes) -> classify the whole scene -> assess
accuracy on the held-out data. The plugin is installed into a throw-away QGIS profile under demo_output/,
never into yours. ``--minutes`` sets the training budget per scene; ``--quick`` is the test suite's fast run.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from landcover_plugin.core.assess.report import format_table

REPO = Path(__file__).resolve().parents[1]
DATA = (REPO.parent / "shared" / "data").resolve()
QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=REPO / "demo_output", help="folder for everything made")
    parser.add_argument("--minutes", type=float, nargs=2, default=[1.0, 4.0], metavar=("RSTOOLBOX", "ZION"),
                        help="CPU training budget per scene in minutes (default 1 and 4)")
    parser.add_argument("--quick", action="store_true", help="tiny budgets and chips: checks the steps only")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        sys.exit(f"The sample data {DATA} is missing: clone the project beside 'shared/'.")
    started = time.monotonic()
    out = args.output.resolve()
    if out.exists():
        shutil.rmtree(out)
    data = out / "data"
    shutil.copytree(DATA, data, ignore=shutil.ignore_patterns("*.aux.xml"))
    qgis = QgisProcess(out / "qgis_home")
    qgis.install_plugin()
    env_report = qgis.run("landcover:setup_engine_environment", MODE=1)
    print(f"Engine: {env_report['PYTHON']} | GPU: {env_report['GPU']} | device: {env_report['TORCH_DEVICE']}\n")

    # quick: one epoch of a narrow net over non-overlapping chips (the trainer always finishes an epoch)
    budget = {"TIME_LIMIT": 0.05, "EPOCHS": 1, "BASE_WIDTH": 8} if args.quick else {"EPOCHS": 500}
    reports = {"rstoolbox": rstoolbox(qgis, data / "rstoolbox", out / "rstoolbox",
                                      dict(budget, TIME_LIMIT=budget.get("TIME_LIMIT", args.minutes[0]))),
               "zion": zion(qgis, data / "zion", out / "zion",
                            dict(budget, TIME_LIMIT=budget.get("TIME_LIMIT", args.minutes[1])))}

    print(f"\nDone in {(time.monotonic() - started) / 60:.1f} min. Styled outputs (open them in QGIS):")
    for scene, report in reports.items():
        print(f"  {scene}: map {report['map']}\n{'':>{len(scene) + 4}}report {report['html']}")
    for scene, report in reports.items():
        print(f"\nAccuracy on held-out data, {scene}: overall accuracy {report['OA']:.3f}, kappa "
              f"{report['KAPPA']:.3f}, mean IoU {report['MIOU']:.3f}")
        print(f"The trainer's held-out estimate, before any reference data: overall accuracy "
              f"{_number(report['HELDOUT_OA'])}, mean IoU {_number(report['HELDOUT_MIOU'])}; of this raster's light: "
              f"5 % more or less light in every band changes {_number(report['LIGHT_SENSITIVITY'])} of its labels")
        print(report["table"])
    return 0


def rstoolbox(qgis, data: Path, out: Path, training: dict) -> dict:
    print("== rstoolbox: Landsat 5 (7 bands), digitised polygons with a text class field")
    out.mkdir(parents=True)
    raster = data / "landsat5_1988_7band.tif"
    qgis.run("native:extractbyexpression", INPUT=data / "training_polygons.gpkg", EXPRESSION="$id % 4 <> 0",
             OUTPUT=out / "train_polygons.gpkg", FAIL_OUTPUT=out / "heldout_polygons.gpkg")
    return scene(qgis, out, raster, {"LABELS": out / "train_polygons.gpkg", "CLASS_FIELD": "class"},
                 {"REFERENCE_VECTOR": out / "heldout_polygons.gpkg", "CLASS_FIELD": "class"}, 32, training)


def zion(qgis, data: Path, out: Path, training: dict) -> dict:
    print("\n== zion: Landsat 8 (4 bands, uint16, nodata), NLCD raster labels")
    out.mkdir(parents=True)
    raster = data / "landsat8_2015_b2345.tif"
    labels = data / "nlcd2011_8class.tif"
    shutil.copy2(data / "classes.json", out / "classes.json")  # names and colours travel beside the labels
    xmin, ymin, xmax, ymax, crs = extent_of(labels)
    split = xmin + 0.7 * (xmax - xmin)
    qgis.run("gdal:cliprasterbyextent", INPUT=labels, PROJWIN=f"{xmin},{split},{ymin},{ymax} [{crs}]",
             OUTPUT=out / "nlcd_train.tif")
    qgis.run("gdal:cliprasterbyextent", INPUT=labels, PROJWIN=f"{split},{xmax},{ymin},{ymax} [{crs}]",
             OUTPUT=out / "nlcd_heldout.tif")
    return scene(qgis, out, raster, {"LABELS_RASTER": out / "nlcd_train.tif"},
                 {"REFERENCE_RASTER": out / "nlcd_heldout.tif", "CLASSES": out / "classes.json"}, 64, training)


def scene(qgis, out: Path, raster: Path, labels: dict, reference: dict, chip_size: int, training: dict) -> dict:
    stride = chip_size if training.get("EPOCHS") == 1 else chip_size // 2
    chips = qgis.run("landcover:export_label_chips", INPUT=raster, **labels, CHIP_SIZE=chip_size,
                     STRIDE=stride, MIN_LABELLED=0.05, VAL_FRACTION=0.2, OUTPUT=out / "chips")
    print(f"   chips: {chips['TRAIN_CHIPS']} train, {chips['VAL_CHIPS']} validation")
    model = qgis.run("landcover:train_segmentation_model", DATASET=out / "chips", **training,
                     OUTPUT=out / "model.onnx")
    print(f"   model: {model['OUTPUT']} (best validation mIoU {model['BEST_VAL_MIOU']:.3f}); training report: "
          f"{model.get('OUTPUT_REPORT')}")
    classified = qgis.run("landcover:classify_raster", INPUT=raster, MODEL=out / "model.onnx",
                          OUTPUT=out / "landcover.tif", CONFIDENCE=out / "confidence.tif")
    print(f"   map: {classified['OUTPUT']}")
    report = qgis.run("landcover:assess_accuracy", CLASSIFIED=out / "landcover.tif", **reference,
                      OUTPUT_HTML=out / "accuracy_report.html", OUTPUT_TABLE=out / "accuracy_table.csv")
    table = format_table(json.loads(Path(report["OUTPUT_JSON"]).read_text(encoding="utf-8")))
    return {"map": classified["OUTPUT"], "html": report["OUTPUT_HTML"], "table": table,
            "OA": report["OA"], "KAPPA": report["KAPPA"], "MIOU": report["MIOU"],
            "HELDOUT_OA": model.get("HELDOUT_OA"), "HELDOUT_MIOU": model.get("HELDOUT_MIOU"),
            "LIGHT_SENSITIVITY": model.get("LIGHT_SENSITIVITY")}


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def extent_of(path: Path) -> tuple:
    info = json.loads(subprocess.run(["gdalinfo", "-json", str(path)], capture_output=True, text=True,
                                     check=True).stdout)
    corners = info["cornerCoordinates"]
    (xmin, ymax), (xmax, ymin) = corners["upperLeft"], corners["lowerRight"]
    epsg = info["coordinateSystem"]["wkt"].rsplit('ID["EPSG",', 1)[-1].split("]")[0]
    return xmin, ymin, xmax, ymax, f"EPSG:{epsg}"


class QgisProcess:
    """Runs algorithms with the real qgis_process.bin against a throw-away profile."""

    def __init__(self, home: Path):
        self.home = home
        self.env = dict(os.environ, HOME=str(home), QT_QPA_PLATFORM="offscreen")
        for name in ("PYTHONPATH", "QGIS_CUSTOM_CONFIG_PATH", "QGIS_OPTIONS_PATH"):
            self.env.pop(name, None)
        self.env.setdefault("LANDCOVER_PYTHON", str(REPO / ".venv" / "bin" / "python"))

    def install_plugin(self) -> None:
        plugins = self.home / ".local/share/QGIS/QGIS3/profiles/default/python/plugins"
        subprocess.run([sys.executable, str(REPO / "scripts" / "package_plugin.py"), "--dest", str(plugins)],
                       check=True, stdout=subprocess.DEVNULL)
        self._call(["plugins"])  # the first run creates the profile
        self._call(["plugins", "enable", "landcover_plugin"])

    def run(self, algorithm: str, **params) -> dict:
        """Run an algorithm, showing its log (each epoch's metrics, progress) as it comes; return its results.

        qgis_process's ``--json`` stays silent until the end, so its text output is streamed and its
        ``Results`` section read instead."""
        args = [f"{key}={value}" for key, value in params.items()]
        started = time.monotonic()
        print(f"-> qgis_process.bin run {algorithm}", flush=True)
        # qgis_process block-buffers a piped stdout: line-buffered (stdbuf), each epoch shows when it ends.
        line_buffered = [shutil.which("stdbuf"), "-oL"] if shutil.which("stdbuf") else []
        with tempfile.TemporaryFile("w+", encoding="utf-8") as errors:  # a file: a full stderr pipe would block
            proc = subprocess.Popen([*line_buffered, QGIS_PROCESS, "run", algorithm, "--", *args], env=self.env,
                                    stdout=subprocess.PIPE, stderr=errors, text=True, bufsize=1)
            with proc.stdout:
                results = stream_run(proc.stdout, print)
            errors.seek(0)
            failed = proc.wait() != 0 and errors.read()[-4000:]
        if proc.returncode != 0:
            sys.stderr.write(failed)
            sys.exit(f"qgis_process.bin run {algorithm} failed (exit code {proc.returncode}).")
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
        return results

    def _call(self, args) -> subprocess.CompletedProcess:
        completed = subprocess.run([QGIS_PROCESS, *args], env=self.env, capture_output=True, text=True)
        if completed.returncode != 0:
            sys.stderr.write(completed.stdout[-4000:] + completed.stderr[-4000:])
            sys.exit(f"qgis_process.bin {' '.join(args[:2])} failed (exit code {completed.returncode}).")
        return completed


_PARAMETER = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):\t(.*)$")
_QUIET = ("Engine Python:", "Engine:")  # the command lines: noise in a demo
_PROGRESS = re.compile(r"^(?:\d*\.+|\d+(?=[A-Za-z]))*(?:100 - done\.)?")  # qgis_process's bar: 0...10...100 - done.


def stream_run(stream, show) -> dict:
    """Read qgis_process's text output line by line as it comes: ``show`` (``print``) each log line, indented
    (each epoch's metrics, the step in progress), without its progress dots (0...10...20, drawn on the same
    lines); return the ``Results`` section as a dict (numbers as numbers)."""
    section, results, last = "start", {}, None
    for raw in stream:
        line = raw.rstrip("\n")
        if line.strip() in ("Inputs", "Results"):
            section = line.strip().lower()
            continue
        if section == "results":
            match = _PARAMETER.match(line)
            if match:
                last, value = match.groups()
                results[last] = _typed(value)
            elif last and line:
                results[last] = f"{results[last]}\n{line}"  # a value over several lines
            continue
        if section == "inputs" and (_PARAMETER.match(line) or not line.strip() or line.startswith("---")):
            continue
        section = "log" if section == "inputs" else section
        text = _PROGRESS.sub("", line).strip()
        if section == "log" and text and not text.startswith(_QUIET) and not text.startswith("---"):
            show("   " + text, flush=True)
    return results


def _typed(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


if __name__ == "__main__":
    sys.exit(main())
