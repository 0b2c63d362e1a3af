"""The user guide's Zion example of the accuracy loop (``python -m scripts.zion_sample_example``): QGIS-free, a
few minutes of CPU.

1. Train on the 40 sparse polygons (``zion/training_polygons_sparse.gpkg``), classify the scene with its
   uncertainty raster.
2. Draw a reference sample from the map (S(O) = 0.02 with anticipated user's accuracies 0.8: 400 points,
   recommended allocation, 50 a class), label each point from NLCD 2011 (the stand-in for an interpreter),
   assess: error-adjusted areas with 95 % confidence intervals, next to NLCD's own pixel counts.
3. Suggest 20 places to digitise from the uncertainty; "digitise" each square as NLCD's majority class when
   at least 60 % of it agrees (else skip it, as an analyst skips mixed places); retrain on polygons +
   squares, classify, assess with a new sample of the new map. As a control, the same with 20 squares
   placed at random.

Prints a Markdown summary and writes ``summary.json`` in ``--output``.
"""
import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import rasterio
from osgeo import ogr

from landcover_plugin.core.assess.assess import assess_accuracy
from landcover_plugin.core.assess.options import AssessOptions
from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.sample.draw import create_sample
from landcover_plugin.core.sample.options import SampleOptions
from landcover_plugin.core.suggest.options import SuggestOptions
from landcover_plugin.core.suggest.suggest import suggest_areas
from landcover_plugin.core.train.options import TrainConfig
from training.loop import train

REPO = Path(__file__).resolve().parents[1]
ZION = (REPO.parent / "shared" / "data" / "zion").resolve()
IMAGE, NLCD = ZION / "landsat8_2015_b2345.tif", ZION / "nlcd2011_8class.tif"
POLYGONS = ZION / "training_polygons_sparse.gpkg"
CLASSES = json.loads((ZION / "classes.json").read_text())["classes"]
ogr.UseExceptions()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("/tmp/zion_sample_example"))
    parser.add_argument("--minutes", type=float, default=1.5, help="CPU training budget per model")
    parser.add_argument("--places", type=int, default=20)
    parser.add_argument("--report-only", action="store_true", help="print the summary.json of an earlier run")
    args = parser.parse_args(argv)
    out = args.output.resolve()
    if args.report_only:
        print(markdown(json.loads((out / "summary.json").read_text())))
        return 0
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    with rasterio.open(NLCD) as src:
        nlcd, transform = src.read(1), src.transform
    summary = {"minutes": args.minutes}
    started = time.perf_counter()
    base = run_model(out / "base", POLYGONS, args.minutes)
    summary["base"] = assess(out / "base", base, nlcd, seed=1)
    suggested = suggest_areas(SuggestOptions(out / "suggested.gpkg", uncertainty=base["UNCERTAINTY"],
                                             classified=base["OUTPUT"], confidence=base["CONFIDENCE"],
                                             count=args.places), RecordingEvents())
    squares = squares_of(out / "suggested.gpkg", "suggested_areas")
    random_squares = random_places(base["OUTPUT"], len(squares), transform, seed=7)
    for name, places in (("suggested", squares), ("random", random_squares)):
        labelled = digitise(places, nlcd, transform)
        merged = merge(POLYGONS, labelled, out / f"polygons_{name}.gpkg")
        result = run_model(out / name, merged, args.minutes)
        summary[name] = assess(out / name, result, nlcd, seed=2)
        summary[name]["squares_kept"] = len(labelled)
        summary[name]["squares_offered"] = len(places)
    summary["suggest_min_distance"] = suggested["MIN_DISTANCE"]
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(markdown(summary))
    return 0


def run_model(folder: Path, polygons: Path, minutes: float) -> dict:
    export_chips(ChipExportOptions(IMAGE, folder / "chips", labels_vector=polygons, class_field="class_id",
                                   schema=CLASSES, chip_size=64, stride=32))
    config = TrainConfig(dataset_dir=str(folder / "chips"), output=str(folder / "model.onnx"), threads=2,
                         time_limit_minutes=minutes)
    train(config, RecordingEvents())
    return classify_raster(ClassifyOptions(IMAGE, config.output, folder / "map.tif", confidence=folder / "conf.tif",
                                           uncertainty=folder / "uncertainty.tif"), RecordingEvents())


def assess(folder: Path, classified: dict, nlcd, seed: int) -> dict:
    """400 points from the map, labelled from NLCD; the estimates next to NLCD's own areas and the census OA."""
    sample = folder / "sample.gpkg"
    create_sample(SampleOptions(classified["OUTPUT"], sample, target_se=0.02, seed=seed), RecordingEvents())
    source = ogr.Open(str(sample), 1)
    layer = source.GetLayerByName("reference_sample")
    with rasterio.open(NLCD) as src:
        inverse = ~src.transform
    for feature in layer:
        point = feature.GetGeometryRef()
        col, row = (int(v) for v in inverse * (point.GetX(), point.GetY()))
        value = int(nlcd[row, col])
        if value != 255:  # NLCD has no class there: the interpreter leaves it unlabelled
            feature.SetField("reference_class", value)
            layer.SetFeature(feature)
    source = layer = None
    report_folder = folder / "report"
    assess_accuracy(AssessOptions(classified["OUTPUT"], reference_vector=str(sample), class_field="reference_class",
                                  output_folder=str(report_folder)), RecordingEvents())
    report = json.loads((report_folder / "accuracy.json").read_text())
    with rasterio.open(classified["OUTPUT"]) as src:
        mapped = src.read(1)
    both = (mapped > 0) & (nlcd != 255)
    nlcd_ha = np.bincount(nlcd[mapped > 0][nlcd[mapped > 0] != 255], minlength=9)[1:] * 0.09
    return {"oa_estimate": report["overall_accuracy_estimate"], "oa_ci95": report["overall_ci95"],
            "oa_census": float((mapped[both] == nlcd[both]).mean()), "points": report["summary"]["pixels_assessed"],
            "classes": [{**{k: e[k] for k in ("name", "mapped_area_ha", "estimated_area_ha", "area_ci95_ha",
                                               "users_accuracy", "users_ci95", "producers_accuracy",
                                               "producers_ci95")}, "nlcd_area_ha": float(nlcd_ha[e["id"] - 1])}
                        for e in report["area_estimates"]]}


def squares_of(path: Path, layer_name: str) -> list:
    source = ogr.Open(str(path))
    return [f.GetGeometryRef().ExportToWkt() for f in source.GetLayerByName(layer_name)]


def random_places(classified_path, count: int, transform, seed: int) -> list:
    """``count`` 5 x 5 px squares centred on random classified pixels."""
    with rasterio.open(classified_path) as src:
        rows, cols = np.nonzero(src.read(1) > 0)
    rng = np.random.default_rng(seed)
    squares = []
    for i in rng.choice(rows.size, count, replace=False):
        corners = [transform * (cols[i] + dc, rows[i] + dr) for dc, dr in ((-2, -2), (3, -2), (3, 3), (-2, 3))]
        squares.append("POLYGON((" + ",".join(f"{x} {y}" for x, y in corners + corners[:1]) + "))")
    return squares


def digitise(squares: list, nlcd, transform) -> list:
    """(wkt, class) for each square whose NLCD majority covers at least 60 % of it."""
    inverse = ~transform
    kept = []
    for wkt in squares:
        envelope = ogr.CreateGeometryFromWkt(wkt).GetEnvelope()
        c0, r0 = (int(round(v)) for v in inverse * (envelope[0], envelope[3]))
        c1, r1 = (int(round(v)) for v in inverse * (envelope[1], envelope[2]))
        values = nlcd[max(r0, 0):r1, max(c0, 0):c1].ravel()
        values = values[values != 255]
        if values.size == 0:
            continue
        counts = np.bincount(values)
        if counts.max() >= 0.6 * values.size:
            kept.append((wkt, int(counts.argmax())))
    return kept


def merge(polygons: Path, labelled: list, target: Path) -> Path:
    shutil.copy(polygons, target)
    source = ogr.Open(str(target), 1)
    layer = source.GetLayer(0)
    for wkt, class_id in labelled:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("class_id", class_id)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    source = None
    return target


def markdown(s: dict) -> str:
    lines = ["| map | squares added | OA estimate (400 points) ± 95 % CI | OA census (every pixel vs NLCD) |",
             "|---|---|---|---|"]
    for key, label in (("base", "40 sparse polygons"), ("suggested", "+ suggested squares"),
                       ("random", "+ random squares")):
        r = s[key]
        added = "-" if key == "base" else f"{r['squares_kept']} of {r['squares_offered']}"
        lines.append(f"| {label} | {added} | {100 * r['oa_estimate']:.1f} % ± {100 * r['oa_ci95']:.1f} | "
                     f"{100 * r['oa_census']:.1f} % |")
    lines += ["", "| class | mapped (ha) | estimated (ha) ± 95 % CI | NLCD (ha) | user's acc. | producer's acc. |",
              "|---|---|---|---|---|---|"]
    def pct(value, ci):
        return "n/a" if value is None else f"{100 * value:.0f} % ± {100 * ci:.0f}"

    for c in s["base"]["classes"]:
        lines.append(f"| {c['name']} | {c['mapped_area_ha']:,.0f} | {c['estimated_area_ha']:,.0f} ± "
                     f"{c['area_ci95_ha']:,.0f} | {c['nlcd_area_ha']:,.0f} | "
                     f"{pct(c['users_accuracy'], c['users_ci95'])} | "
                     f"{pct(c['producers_accuracy'], c['producers_ci95'])} |")
    lines.append(f"\n({s['seconds'] / 60:.1f} min, {s['minutes']} min of training per model.)")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
