"""The ``assess`` engine command, run as a subprocess on the real sample data.

Expected numbers are derived independently of the code under test: from a known share of changed
pixels, with scikit-learn, or from polygons burnt with GDAL's own ``gdal.Rasterize``.
"""
import json
import shutil
import subprocess

import numpy as np
import pytest
import rasterio
from osgeo import gdal, ogr
from rasterio.warp import transform as warp_transform

gdal.UseExceptions()
ogr.UseExceptions()

RSTOOLBOX_CLASSES = ["forest", "water", "cleared", "fallen_dry"]


def run_engine(engine_python, repo_root, *args):
    proc = subprocess.run([engine_python, "-m", "landcover_plugin.core.engine", "assess", *map(str, args)],
                          cwd=repo_root, capture_output=True, text=True, timeout=120)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, events, proc.stderr


def result_of(events):
    results = [e for e in events if e["event"] == "result"]
    assert len(results) == 1, events
    return results[0]["outputs"]


def test_zion_nlcd_with_a_known_share_changed(tmp_path, shared_data, engine_python, repo_root):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    reference_path = shared_data / "zion" / "nlcd2011_8class.tif"
    with rasterio.open(reference_path) as src:
        reference = src.read(1)
        profile = src.profile
    labelled = reference != 255
    rng = np.random.default_rng(42)
    changed = labelled & (rng.random(reference.shape) < 0.15)
    classified = reference.copy()
    classified[changed] = reference[changed] % 8 + 1            # always a different class
    classified[~labelled] = 0
    classified[:100, :200] = 0                                  # a no-data corner of the map
    profile.update(nodata=0)
    classified_path = tmp_path / "classified.tif"
    with rasterio.open(classified_path, "w", **profile) as dst:
        dst.write(classified, 1)

    code, events, stderr = run_engine(engine_python, repo_root, "--classified", classified_path,
                                      "--reference-raster", reference_path,
                                      "--classes", shared_data / "zion" / "classes.json",
                                      "--output-folder", tmp_path / "out", "--block-size", 500)
    assert code == 0, stderr
    outputs = result_of(events)
    report = json.loads(open(outputs["OUTPUT_JSON"], encoding="utf-8").read())
    assessed = labelled & (classified != 0)
    # Every assessed pixel is right unless it was changed.
    expected_oa = 1.0 - (changed & assessed).sum() / assessed.sum()
    assert outputs["OA"] == pytest.approx(expected_oa, abs=1e-12)
    assert outputs["PIXELS_ASSESSED"] == assessed.sum()
    assert outputs["KAPPA"] == pytest.approx(sklearn_metrics.cohen_kappa_score(reference[assessed],
                                                                               classified[assessed]))
    assert report["left_out"]["on_classified_nodata"] == (labelled & (classified == 0)).sum()
    assert report["left_out"]["outside_classified_raster"] == 0
    names = [c["name"] for c in json.loads((shared_data / "zion" / "classes.json").read_text())["classes"]]
    assert [c["name"] for c in report["classes"]] == names
    mapped = np.bincount(classified[classified > 0], minlength=9)[1:]
    assert [c["mapped_pixels"] for c in report["classes"]] == mapped.tolist()
    assert [c["mapped_area"] for c in report["classes"]] == pytest.approx((mapped * 900 / 10000).tolist())
    assert any("Overall accuracy" in e.get("message", "") for e in events if e["event"] == "log")


def burn_with_gdal(polygons, grid_path, out_path, field_values):
    """The polygons' classes burnt onto ``grid_path``'s grid by GDAL itself (not the code under test)."""
    with rasterio.open(grid_path) as src:
        profile = src.profile
    profile.update(count=1, dtype="uint8", nodata=0)
    with rasterio.open(out_path, "w", **profile) as dst:
        dst.write(np.zeros((profile["height"], profile["width"]), np.uint8), 1)
    source = ogr.Open(str(polygons))
    layer = source.GetLayer(0)
    target = gdal.Open(str(out_path), gdal.GA_Update)
    for name, value in field_values.items():
        layer.SetAttributeFilter(f"class = '{name}'")
        gdal.RasterizeLayer(target, [1], layer, burn_values=[value])
    target = None
    with rasterio.open(out_path) as src:
        return src.read(1), profile


def test_rstoolbox_text_polygons_against_gdal_rasterize(tmp_path, shared_data, engine_python, repo_root):
    polygons = shared_data / "rstoolbox" / "training_polygons.gpkg"
    image = shared_data / "rstoolbox" / "landsat5_1988_7band.tif"
    ids = {name: i + 1 for i, name in enumerate(RSTOOLBOX_CLASSES)}
    reference, profile = burn_with_gdal(polygons, image, tmp_path / "burnt.tif", ids)
    # A map that is right except in the western 100 columns, where each class is mapped as the next one.
    classified = np.where(reference > 0, reference, 1).astype(np.uint8)
    west = np.zeros_like(classified, dtype=bool)
    west[:, :100] = True
    classified[west & (reference > 0)] = reference[west & (reference > 0)] % 4 + 1
    classified_path = tmp_path / "classified.tif"
    with rasterio.open(classified_path, "w", **profile) as dst:
        dst.write(classified, 1)
    dataset = gdal.Open(str(classified_path), gdal.GA_Update)     # class names as raster categories
    dataset.GetRasterBand(1).SetCategoryNames(["no data"] + RSTOOLBOX_CLASSES)
    dataset = None

    code, events, stderr = run_engine(engine_python, repo_root, "--classified", classified_path,
                                      "--reference-vector", polygons, "--class-field", "class",
                                      "--html", tmp_path / "out" / "report.html")
    assert code == 0, stderr
    outputs = result_of(events)
    report = json.loads(open(outputs["OUTPUT_JSON"], encoding="utf-8").read())
    labelled = reference > 0
    expected = np.zeros((4, 4), dtype=int)
    np.add.at(expected, (reference[labelled] - 1, classified[labelled] - 1), 1)
    assert report["confusion_matrix"]["names"] == RSTOOLBOX_CLASSES
    assert report["confusion_matrix"]["counts"] == expected.tolist()
    assert outputs["OA"] == pytest.approx(np.trace(expected) / expected.sum())
    assert 0.0 < outputs["OA"] < 1.0
    assert report["left_out"]["outside_classified_raster"] == 0

    # The same polygons in another CRS (WGS 84) give nearly the same matrix.
    wgs84 = tmp_path / "polygons_wgs84.gpkg"
    gdal.VectorTranslate(str(wgs84), str(polygons), dstSRS="EPSG:4326")
    code, events, stderr = run_engine(engine_python, repo_root, "--classified", classified_path,
                                      "--reference-vector", wgs84, "--class-field", "class",
                                      "--output-folder", tmp_path / "wgs84")
    assert code == 0, stderr
    reprojected = result_of(events)
    assert reprojected["PIXELS_ASSESSED"] == pytest.approx(expected.sum(), rel=0.01)
    assert reprojected["OA"] == pytest.approx(outputs["OA"], abs=0.01)


def test_eolearn_polygons_reaching_beyond_the_raster(tmp_path, shared_data, engine_python, repo_root):
    lulc = shared_data / "eolearn" / "lulc.tif"
    polygons = shared_data / "eolearn" / "lulc_polygons.gpkg"
    code, events, stderr = run_engine(engine_python, repo_root, "--classified", lulc, "--reference-vector", polygons,
                                      "--class-field", "LULC_ID", "--output-folder", tmp_path / "ids")
    assert code == 0, stderr
    by_id = json.loads(open(result_of(events)["OUTPUT_JSON"], encoding="utf-8").read())

    # Labelled polygon pixels outside the raster, counted with GDAL on a grid enlarged by 150 pixels
    # each side (it covers every polygon) with the raster's resolution and alignment.
    with rasterio.open(lulc) as src:
        t = src.transform
        width, height = src.width, src.height
    pad = 150
    big = gdal.GetDriverByName("MEM").Create("", width + 2 * pad, height + 2 * pad, 1, gdal.GDT_Byte)
    big.SetGeoTransform((t.c - pad * t.a, t.a, 0.0, t.f - pad * t.e, 0.0, t.e))
    source = ogr.Open(str(polygons))
    layer = source.GetLayer(0)
    layer.SetAttributeFilter("LULC_ID > 0")
    gdal.RasterizeLayer(big, [1], layer, options=["ATTRIBUTE=LULC_ID"])
    burnt = big.GetRasterBand(1).ReadAsArray()
    assert burnt[0].max() == burnt[-1].max() == burnt[:, 0].max() == burnt[:, -1].max() == 0  # grid covers all
    inside = np.zeros_like(burnt, dtype=bool)
    inside[pad:pad + height, pad:pad + width] = True
    assert by_id["left_out"]["outside_classified_raster"] == int(((burnt > 0) & ~inside).sum())
    assert by_id["left_out"]["outside_classified_raster"] > 1000

    # Matching by the text field with a class list gives the very same matrix.
    classes = [{"id": 1, "name": "cultivated land"}, {"id": 2, "name": "forest"}, {"id": 3, "name": "grassland"},
               {"id": 4, "name": "schrubland"}, {"id": 8, "name": "artificial surface"}]
    code, events, stderr = run_engine(engine_python, repo_root, "--classified", lulc, "--reference-vector", polygons,
                                      "--class-field", "LULC_NAME", "--classes", json.dumps(classes),
                                      "--output-folder", tmp_path / "names")
    assert code == 0, stderr
    by_name = json.loads(open(result_of(events)["OUTPUT_JSON"], encoding="utf-8").read())
    assert by_name["confusion_matrix"]["counts"] == by_id["confusion_matrix"]["counts"]
    assert by_name["confusion_matrix"]["names"] == [c["name"] for c in classes]
    assert by_name["summary"] == by_id["summary"]


def test_bad_inputs_fail_with_a_fix_and_leave_no_output(tmp_path, shared_data, engine_python, repo_root):
    out = tmp_path / "out"
    # A float image is not a classified map.
    code, events, _ = run_engine(engine_python, repo_root,
                                 "--classified", shared_data / "eolearn" / "sentinel2_13band_composite.tif",
                                 "--reference-raster", shared_data / "eolearn" / "lulc.tif", "--output-folder", out)
    assert code == 2 and events[-1]["event"] == "error" and events[-1]["kind"] == "bad_input"
    assert "float32" in events[-1]["message"] and "class ids" in events[-1]["message"]
    # Polygons without their class field.
    code, events, _ = run_engine(engine_python, repo_root, "--classified", shared_data / "eolearn" / "lulc.tif",
                                 "--reference-vector", shared_data / "eolearn" / "lulc_polygons.gpkg",
                                 "--output-folder", out)
    assert code == 2 and "class field" in events[-1]["message"]
    # Text classes against a map without category names.
    copy = tmp_path / "lulc.tif"
    shutil.copy(shared_data / "eolearn" / "lulc.tif", copy)
    code, events, _ = run_engine(engine_python, repo_root, "--classified", copy,
                                 "--reference-vector", shared_data / "eolearn" / "lulc_polygons.gpkg",
                                 "--class-field", "LULC_NAME", "--output-folder", out)
    assert code == 2 and "grassland" in events[-1]["message"] and "class list" in events[-1]["message"]
    assert not out.exists() or not any(out.iterdir())


def test_reference_raster_in_another_crs_is_resampled_onto_the_map(tmp_path, shared_data, engine_python, repo_root):
    nlcd = shared_data / "zion" / "nlcd2011_8class.tif"
    with rasterio.open(nlcd) as src:
        classified = src.read(1)
        profile = src.profile
        width, height = src.width, src.height
    classified[classified == 255] = 0
    profile.update(nodata=0)
    classified_path = tmp_path / "classified.tif"
    with rasterio.open(classified_path, "w", **profile) as dst:
        dst.write(classified, 1)
    # The reference in the neighbouring UTM zone (its own grid), made with GDAL's warper.
    reference_path = tmp_path / "nlcd_utm13.tif"
    gdal.Warp(str(reference_path), str(nlcd), dstSRS="EPSG:32613", xRes=30, yRes=30, resampleAlg="near")
    # Expected, by nearest neighbour done by hand: the reference pixel under each map pixel's centre.
    with rasterio.open(reference_path) as ref:
        values, ref_transform, ref_crs, ref_shape = ref.read(1), ref.transform, ref.crs, ref.shape
    rows, cols = np.mgrid[0:height, 0:width]
    xs, ys = profile["transform"] * (cols.ravel() + 0.5, rows.ravel() + 0.5)
    ref_cols, ref_rows = ~ref_transform * np.array(warp_transform(profile["crs"], ref_crs, xs, ys))
    ref_cols, ref_rows = np.floor(ref_cols).astype(int), np.floor(ref_rows).astype(int)
    inside = (ref_cols >= 0) & (ref_cols < ref_shape[1]) & (ref_rows >= 0) & (ref_rows < ref_shape[0])
    back = np.full(width * height, 255, np.uint8)
    back[inside] = values[ref_rows[inside], ref_cols[inside]]
    back = back.reshape(height, width)
    pairs = (back != 255) & (classified != 0)
    expected_oa = (back[pairs] == classified[pairs]).mean()

    code, events, stderr = run_engine(engine_python, repo_root, "--classified", classified_path,
                                      "--reference-raster", reference_path, "--output-folder", tmp_path / "out",
                                      "--block-size", 400)
    assert code == 0, stderr
    outputs = result_of(events)
    # Up to a few pixels whose centres lie within 1/1000 pixel of a reference pixel's edge.
    assert outputs["PIXELS_ASSESSED"] == pytest.approx(pairs.sum(), abs=50)
    assert outputs["OA"] == pytest.approx(expected_oa, abs=2e-4)
    assert 0.95 < outputs["OA"] < 1.0
    assert not [e for e in events if e["event"] == "log" and e["level"] == "warning"]
    # The answer does not depend on the window size.
    code, events, stderr = run_engine(engine_python, repo_root, "--classified", classified_path,
                                      "--reference-raster", reference_path, "--output-folder", tmp_path / "out2")
    assert code == 0, stderr
    assert result_of(events)["OA"] == outputs["OA"]
    assert result_of(events)["PIXELS_ASSESSED"] == outputs["PIXELS_ASSESSED"]
