"""``assess`` with sample points: error-adjusted areas and accuracies with confidence intervals
(Olofsson et al. 2014) on the real Zion data, checked against the truth the sample stands for.

The map is NLCD with 15 % of its pixels changed to another class; the "interpreter" labels each sample
point from NLCD itself. So the true area of every class (NLCD's pixel counts) and the true overall
accuracy are known, and the estimates must land near them, within their confidence intervals.
"""
import json
import subprocess

import numpy as np
import pytest
import rasterio
from osgeo import ogr, osr

ogr.UseExceptions()
POINTS_PER_CLASS = 50


def run_assess(engine_python, repo_root, *args):
    proc = subprocess.run([engine_python, "-m", "landcover_plugin.core.engine", "assess", *map(str, args)],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert proc.returncode == 0, proc.stderr
    return [e for e in events if e["event"] == "result"][0]["outputs"], events


@pytest.fixture(scope="module")
def zion_map_and_sample(tmp_path_factory, shared_data):
    folder = tmp_path_factory.mktemp("zion_sample")
    with rasterio.open(shared_data / "zion" / "nlcd2011_8class.tif") as src:
        reference, profile, transform, crs = src.read(1), src.profile, src.transform, src.crs
    labelled = reference != 255
    rng = np.random.default_rng(1)
    changed = labelled & (rng.random(reference.shape) < 0.15)
    classified = reference.copy()
    classified[changed] = reference[changed] % 8 + 1
    classified[~labelled] = 0
    profile.update(nodata=0)
    classified_path = folder / "classified.tif"
    with rasterio.open(classified_path, "w", **profile) as dst:
        dst.write(classified, 1)
    # A stratified random sample: 50 pixels of each map class, one point at each pixel's centre (plus one
    # unlabelled point, as a sample still being labelled has).
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(folder / "sample.gpkg"))
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs.to_wkt())
    layer = source.CreateLayer("sample", srs, ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("reference_class", ogr.OFTInteger))
    for k in range(1, 9):
        rows, cols = np.nonzero(classified == k)
        for i in rng.choice(len(rows), POINTS_PER_CLASS, replace=False):
            feature = ogr.Feature(layer.GetLayerDefn())
            feature.SetField("reference_class", int(reference[rows[i], cols[i]]))
            point = ogr.Geometry(ogr.wkbPoint)
            point.AddPoint_2D(*(transform * (cols[i] + 0.5, rows[i] + 0.5)))
            feature.SetGeometry(point)
            layer.CreateFeature(feature)
    feature = ogr.Feature(layer.GetLayerDefn())
    point = ogr.Geometry(ogr.wkbPoint)
    point.AddPoint_2D(*(transform * (10.5, 10.5)))
    feature.SetGeometry(point)
    layer.CreateFeature(feature)
    source = None
    truth = {"area_ha": np.bincount(reference[labelled], minlength=9)[1:] * 0.09,
             "mapped_pixels": np.bincount(classified[classified > 0], minlength=9)[1:],
             "oa": 1.0 - changed.sum() / labelled.sum()}
    return classified_path, folder / "sample.gpkg", truth


def test_sample_points_give_area_estimates_that_cover_the_true_areas(zion_map_and_sample, tmp_path, shared_data,
                                                                     engine_python, repo_root):
    classified, sample, truth = zion_map_and_sample
    outputs, events = run_assess(engine_python, repo_root, "--classified", classified, "--reference-vector", sample,
                                 "--class-field", "reference_class", "--classes", shared_data / "zion" / "classes.json",
                                 "--output-folder", tmp_path / "report")
    report = json.loads(open(outputs["OUTPUT_JSON"], encoding="utf-8").read())
    assert report["inputs"]["reference_kind"] == "points"
    assert report["summary"]["pixels_assessed"] == 8 * POINTS_PER_CLASS  # every point once; unlabelled left out
    estimates = report["area_estimates"]
    assert [e["name"] for e in estimates][:2] == ["Water", "Developed"] and len(estimates) == 8
    assert [e["sample_points_mapped"] for e in estimates] == [POINTS_PER_CLASS] * 8
    assert [e["mapped_pixels"] for e in estimates] == truth["mapped_pixels"].tolist()
    np.testing.assert_allclose([e["mapped_area_ha"] for e in estimates], truth["mapped_pixels"] * 0.09)
    estimated = np.array([e["estimated_area_ha"] for e in estimates])
    ci = np.array([e["area_ci95_ha"] for e in estimates])
    assert estimated.sum() == pytest.approx(truth["mapped_pixels"].sum() * 0.09)  # shares of the whole map
    # Every class's true area lies within 3 standard errors of its estimate (1.53 x the 95 % half-width).
    assert (np.abs(estimated - truth["area_ha"]) < 1.53 * ci).all(), (estimated, ci, truth["area_ha"])
    # The map's biggest error: Herbaceous is mapped on 8,573 ha but covers 482 ha; the estimate knows.
    herbaceous = estimates[5]
    assert herbaceous["mapped_area_ha"] > 8000 and herbaceous["estimated_area_ha"] < 1500
    assert abs(report["overall_accuracy_estimate"] - truth["oa"]) < 1.53 * report["overall_ci95"]
    assert 0.01 < report["overall_ci95"] < 0.1
    assert outputs["OA_ESTIMATE"] == report["overall_accuracy_estimate"]
    for e in estimates:
        assert 0 <= e["users_accuracy"] <= 1 and e["users_ci95"] > 0
        assert 0 <= e["producers_accuracy"] <= 1 and e["producers_ci95"] >= 0
    html = open(outputs["OUTPUT_HTML"], encoding="utf-8").read()
    assert "Area estimates from the reference sample" in html and "estimated area (ha) ± 95 % CI" in html
    assert (tmp_path / "report" / "accuracy_report_areas.png").stat().st_size > 10_000
    assert any("Error-adjusted areas" in e.get("message", "") for e in events if e["event"] == "log")
    assert any("over 400 sample points" in e.get("message", "") for e in events if e["event"] == "log")


def test_polygons_give_no_area_estimate_and_the_report_says_why(tmp_path, shared_data, engine_python, repo_root):
    image = shared_data / "rstoolbox" / "landsat5_1988_7band.tif"
    with rasterio.open(image) as src:
        profile = src.profile
    profile.update(count=1, dtype="uint8", nodata=0)
    classified = tmp_path / "classified.tif"
    with rasterio.open(classified, "w", **profile) as dst:
        dst.write(np.full((profile["height"], profile["width"]), 1, np.uint8), 1)
    outputs, _ = run_assess(engine_python, repo_root, "--classified", classified, "--reference-vector",
                            shared_data / "rstoolbox" / "training_polygons.gpkg", "--class-field", "class",
                            "--classes", '[{"id": 1, "name": "forest"}, {"id": 2, "name": "water"}, '
                                         '{"id": 3, "name": "cleared"}, {"id": 4, "name": "fallen_dry"}]',
                            "--output-folder", tmp_path / "report")
    report = json.loads(open(outputs["OUTPUT_JSON"], encoding="utf-8").read())
    assert report["area_estimates"] is None and report["overall_accuracy_estimate"] is None
    assert "not a probability sample" in report["area_estimate_note"]
    assert "the accuracy above is of the places they cover, not of the whole map" in report["area_estimate_note"]
    assert report["summary"]["overall_accuracy"] == outputs["OA"] > 0  # today's figures are still there
    assert "not a probability sample" in open(outputs["OUTPUT_HTML"], encoding="utf-8").read()
    assert outputs["OA_ESTIMATE"] is None
    assert not (tmp_path / "report" / "accuracy_report_areas.png").exists()


def test_a_map_class_with_too_few_labelled_points_gets_a_note_naming_it(zion_map_and_sample, tmp_path,
                                                                       shared_data, engine_python, repo_root):
    classified, sample, _ = zion_map_and_sample
    thinned = tmp_path / "thinned.gpkg"
    source = ogr.GetDriverByName("GPKG").CopyDataSource(ogr.Open(str(sample)), str(thinned))
    layer = source.GetLayer(0)
    for fid in [f.GetFID() for f in layer if f.GetField("reference_class") is not None][:POINTS_PER_CLASS - 1]:
        layer.DeleteFeature(fid)  # the first 49 Water-mapped points: one left
    source = None
    outputs, _ = run_assess(engine_python, repo_root, "--classified", classified, "--reference-vector", thinned,
                            "--class-field", "reference_class", "--classes", shared_data / "zion" / "classes.json",
                            "--output-folder", tmp_path / "report")
    report = json.loads(open(outputs["OUTPUT_JSON"], encoding="utf-8").read())
    assert report["area_estimates"] is None
    assert "at least 2" in report["area_estimate_note"] and "Water (1)" in report["area_estimate_note"]


def test_the_samples_own_map_class_is_refused_as_the_reference(zion_map_and_sample, tmp_path, shared_data):
    """map_class is the map's own class at each point: scored against it, any map gets 100 % ± 0."""
    from landcover_plugin.core.assess.assess import assess_accuracy
    from landcover_plugin.core.assess.options import AssessOptions
    from landcover_plugin.core.errors import BadInputError
    from landcover_plugin.core.events import RecordingEvents
    from landcover_plugin.core.sample.draw import create_sample
    from landcover_plugin.core.sample.options import SampleOptions

    classified, _, _ = zion_map_and_sample
    create_sample(SampleOptions(classified, tmp_path / "sample.gpkg", size=200, seed=2), RecordingEvents())
    options = AssessOptions(classified, reference_vector=str(tmp_path / "sample.gpkg"), class_field="map_class",
                            classes=str(shared_data / "zion" / "classes.json"), output_folder=str(tmp_path / "out"))
    with pytest.raises(BadInputError, match=r"always scores 100 %.*\(reference_class\)"):
        assess_accuracy(options, RecordingEvents())
    assert not (tmp_path / "out").exists()  # no report to mistake for a result


def test_a_stratified_sample_gives_area_weighted_headline_accuracies(zion_map_and_sample, tmp_path, shared_data):
    """50 points in every map class over-represent the small, badly mapped classes: counted raw they say
    the map is far worse than it is; weighted by the classes' mapped areas they find the true accuracy."""
    import csv

    from landcover_plugin.core.assess.assess import assess_accuracy
    from landcover_plugin.core.assess.options import AssessOptions
    from landcover_plugin.core.events import RecordingEvents

    classified, sample, truth = zion_map_and_sample
    outputs = assess_accuracy(AssessOptions(classified, reference_vector=str(sample), class_field="reference_class",
                                            classes=str(shared_data / "zion" / "classes.json"),
                                            output_folder=str(tmp_path / "out")), RecordingEvents())
    report = json.loads(open(outputs["OUTPUT_JSON"], encoding="utf-8").read())
    summary = report["summary"]  # DESIGN.md's contract: the count metrics, the weighted ones beside them
    weighted = summary["area_weighted"]
    assert summary["weighting"] == "area-weighted"
    assert outputs["OA"] == weighted["overall_accuracy"] == pytest.approx(outputs["OA_ESTIMATE"])
    assert abs(outputs["OA"] - truth["oa"]) < 1.53 * outputs["OA_CI95"]
    raw = summary["overall_accuracy"]
    counts = np.array(report["confusion_matrix"]["counts"])
    assert raw == pytest.approx(np.trace(counts) / counts.sum())
    assert truth["oa"] - raw > 1.5 * outputs["OA_CI95"]  # the raw count is no estimate of the map's accuracy
    assert outputs["KAPPA"] == weighted["kappa"] != summary["kappa"]
    assert all(set(row["area_weighted"]) == {"precision", "recall", "f1", "iou"} for row in report["classes"])
    # Per class, the table's precision and recall are the estimated user's and producer's accuracies.
    estimates = {e["id"]: e for e in report["area_estimates"]}
    with open(outputs["OUTPUT_TABLE"], encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and all(r["accuracy_from"] == "area-weighted" for r in rows)
    for r in rows:
        estimate = estimates[int(r["class_id"])]
        assert float(r["precision_users_accuracy"]) == pytest.approx(estimate["users_accuracy"])
        assert float(r["recall_producers_accuracy"]) == pytest.approx(estimate["producers_accuracy"])
        assert int(r["reference_pixels"]) == estimate["sample_points_reference"]  # points, as counted
    html = open(outputs["OUTPUT_HTML"], encoding="utf-8").read()
    assert f"{100 * outputs['OA']:.1f} % ± {100 * outputs['OA_CI95']:.1f}" in html
    assert "Area-weighted estimates from the stratified reference sample" in html
    assert f"raw sample counts (not an estimate of the map's accuracy)</th><td>{100 * raw:.1f} %" in html
    assert "Sample counts (points, not area-weighted)" in html


def test_area_intervals_stop_at_zero_and_figures_from_few_points_are_flagged(zion_map_and_sample, tmp_path,
                                                                            shared_data):
    """A small sample (3 points in the rare classes) labelled from NLCD: intervals that would run below 0 ha
    are given clipped, and accuracies or areas resting on fewer than 10 points are marked unreliable."""
    from landcover_plugin.core.assess.assess import _area_log, assess_accuracy
    from landcover_plugin.core.assess.options import AssessOptions
    from landcover_plugin.core.events import RecordingEvents
    from landcover_plugin.core.sample.draw import create_sample
    from landcover_plugin.core.sample.options import SampleOptions

    classified, _, _ = zion_map_and_sample
    path = tmp_path / "small.gpkg"
    create_sample(SampleOptions(classified, path, size=100, min_per_class=3, seed=4), RecordingEvents())
    with rasterio.open(shared_data / "zion" / "nlcd2011_8class.tif") as src:
        source = ogr.Open(str(path), 1)
        layer = source.GetLayerByName("reference_sample")
        for feature in layer:
            xy = (feature.GetGeometryRef().GetX(), feature.GetGeometryRef().GetY())
            feature.SetField("reference_class", int(next(src.sample([xy]))[0]))
            layer.SetFeature(feature)
        source = layer = None
    events = RecordingEvents()
    outputs = assess_accuracy(AssessOptions(classified, reference_vector=str(path), class_field="reference_class",
                                            classes=str(shared_data / "zion" / "classes.json"),
                                            output_folder=str(tmp_path / "out")), events)
    report = json.loads(open(outputs["OUTPUT_JSON"], encoding="utf-8").read())
    html = open(outputs["OUTPUT_HTML"], encoding="utf-8").read()
    clipped = flagged = 0
    for e in report["area_estimates"]:
        assert e["area_ci95_low_ha"] == pytest.approx(max(0.0, e["estimated_area_ha"] - e["area_ci95_ha"]))
        assert e["area_ci95_high_ha"] == pytest.approx(e["estimated_area_ha"] + e["area_ci95_ha"])
        if e["estimated_area_ha"] - e["area_ci95_ha"] < 0:
            clipped += 1
            assert (f"{e['estimated_area_ha']:,.1f} (95 % CI 0.0 to {e['area_ci95_high_ha']:,.1f}, clipped at 0)"
                    in html)
            assert f"{e['estimated_area_ha']:,.1f} ± " not in html
        assert ("users_accuracy" in e["unreliable"]) == (e["sample_points_mapped"] < 10)
        assert ("producers_accuracy" in e["unreliable"]) == (e["sample_points_reference"] < 10)
        if e["sample_points_mapped"] < 10:
            flagged += 1
            assert f"{100 * e['users_accuracy']:.1f} % ± {100 * e['users_ci95']:.1f} (few points)" in html
    assert clipped >= 1 and flagged >= 1
    assert "clipped at 0 where it would run below" in html and "fewer than 10 sample points" in html
    log = "\n".join(e["message"] for e in events.of_type("log"))
    assert "clipped at 0" in log and "(few points): from fewer than 10 sample points" in log
    marked = [line for line in log.splitlines() if "(few points)" in line and not line.startswith("(few points)")]
    assert marked and len(marked) == sum("estimated_area" in e["unreliable"] for e in report["area_estimates"])
    # only user's accuracies unreliable (a class mapped at few points): no area line is marked, nor footnoted
    users_only = dict(report, area_estimates=[dict(e, unreliable=[u for u in e["unreliable"] if u == "users_accuracy"])
                                              for e in report["area_estimates"]])
    text = _area_log(users_only)
    assert "(few points)" not in text.replace("marked (few points) in the report", ""), text
    assert text.endswith("Some classes' accuracies rest on fewer than 10 sample points: unreliable, marked (few "
                         "points) in the report."), text


def test_a_sample_not_labelled_yet_says_to_label_reference_class(zion_map_and_sample, tmp_path, shared_data):
    from landcover_plugin.core.assess.assess import assess_accuracy
    from landcover_plugin.core.assess.options import AssessOptions
    from landcover_plugin.core.errors import BadInputError
    from landcover_plugin.core.events import RecordingEvents
    from landcover_plugin.core.sample.draw import create_sample
    from landcover_plugin.core.sample.options import SampleOptions

    classified, _, _ = zion_map_and_sample
    create_sample(SampleOptions(classified, tmp_path / "sample.gpkg", size=50, seed=3), RecordingEvents())
    with pytest.raises(BadInputError, match=r"None of the reference points has a value in the field "
                                            r"'reference_class'.*Label the points first.*\(reference_class") as e:
        assess_accuracy(AssessOptions(classified, reference_vector=str(tmp_path / "sample.gpkg"),
                                      class_field="reference_class", output_folder=str(tmp_path / "out")),
                        RecordingEvents())
    assert "polygons" not in str(e.value)
