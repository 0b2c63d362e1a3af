"""The ``assess`` command on tiny rasters and polygons whose confusion matrices are counted by hand."""
import csv
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import ogr, osr
from rasterio.transform import from_origin

from landcover_plugin.core.assess.assess import assess_accuracy
from landcover_plugin.core.assess.options import AssessOptions
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents

X0, Y0, PIXEL = 500000.0, 5000000.0, 10.0
CRS = "EPSG:32633"
CLASSES = [{"id": 1, "name": "Water", "colour": "#1f78b4"}, {"id": 2, "name": "Forest", "colour": "#1b7837"},
           {"id": 3, "name": "Urban", "colour": "#d73027"}]
# Classified map (0 = no data), 4 rows x 5 columns of 10 m pixels.
CLASSIFIED = np.array([[1, 1, 2, 2, 3],
                       [1, 1, 2, 3, 3],
                       [1, 2, 2, 3, 3],
                       [0, 1, 2, 3, 0]], dtype=np.uint8)
# Reference on the same grid (0 = no reference).
REFERENCE = np.array([[1, 1, 2, 2, 2],
                      [1, 2, 2, 3, 3],
                      [1, 1, 2, 3, 3],
                      [1, 1, 0, 3, 3]], dtype=np.uint8)


def write_raster(path, data, transform=None, nodata=0, names=None):
    profile = {"driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1, "dtype": data.dtype.name,
               "crs": CRS, "transform": transform or from_origin(X0, Y0, PIXEL, PIXEL), "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        if data.dtype == np.uint8:
            dst.write_colormap(1, {1: (31, 120, 180, 255), 2: (27, 120, 55, 255), 3: (215, 48, 39, 255)})
    if names:
        from osgeo import gdal
        dataset = gdal.Open(str(path), gdal.GA_Update)
        dataset.GetRasterBand(1).SetCategoryNames(names)
        dataset = None
    return str(path)


def assess(tmp_path, **options):
    options.setdefault("output_folder", str(tmp_path / "out"))
    events = RecordingEvents()
    outputs = assess_accuracy(AssessOptions(**options), events)
    report = json.loads(Path(outputs["OUTPUT_JSON"]).read_text(encoding="utf-8"))
    return outputs, report, events


def test_same_grid_reference_raster_gives_the_hand_counted_matrix(tmp_path):
    classified = write_raster(tmp_path / "classified.tif", CLASSIFIED,
                              names=["no data", "Water", "Forest", "Urban"])
    reference = write_raster(tmp_path / "reference.tif", REFERENCE)
    outputs, report, _ = assess(tmp_path, classified=classified, reference_raster=reference)
    # Pairs (reference, classified) counted by hand, row by row:
    #   row 0: (1,1) (1,1) (2,2) (2,2) (2,3)
    #   row 1: (1,1) (2,1) (2,2) (3,3) (3,3)
    #   row 2: (1,1) (1,2) (2,2) (3,3) (3,3)
    #   row 3: (1,no data) (1,1) (no ref,2) (3,3) (3,no data)
    assert report["confusion_matrix"]["counts"] == [[5, 1, 0], [1, 4, 1], [0, 0, 5]]
    assert report["confusion_matrix"]["names"] == ["Water", "Forest", "Urban"]  # from the category names
    s = report["summary"]
    assert s["pixels_assessed"] == 17
    assert s["overall_accuracy"] == pytest.approx(14 / 17) == outputs["OA"]
    assert s["kappa"] == pytest.approx(142 / 193) == outputs["KAPPA"]
    assert s["mean_iou"] == pytest.approx((5 / 7 + 4 / 7 + 5 / 6) / 3) == outputs["MIOU"]
    rows = {r["name"]: r for r in report["classes"]}
    assert rows["Forest"]["precision"] == pytest.approx(4 / 5) and rows["Forest"]["recall"] == pytest.approx(4 / 6)
    assert rows["Urban"]["iou"] == pytest.approx(5 / 6) and rows["Water"]["f1"] == pytest.approx(5 / 6)
    assert rows["Water"]["colour"] == "#1f78b4"  # from the colour table
    # Each class covers 6 pixels of the whole map; a 10 m pixel is 0.01 ha.
    for row in rows.values():
        assert row["mapped_pixels"] == 6 and row["mapped_area"] == pytest.approx(0.06)
    assert report["area"]["unit"] == "ha"
    assert report["left_out"] == {"outside_classified_raster": 0, "on_classified_nodata": 2,
                                  "overlapping_polygons_disagree": 0, "classified_pixels_without_reference": 1}
    with open(outputs["OUTPUT_TABLE"], newline="", encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["class_name"] for r in table] == ["Water", "Forest", "Urban"]
    assert float(table[1]["recall_producers_accuracy"]) == pytest.approx(4 / 6, abs=1e-6)
    with open(outputs["OUTPUT_CONFUSION"], newline="", encoding="utf-8") as f:
        confusion = list(csv.reader(f))
    assert confusion[2][:4] == ["Forest", "1", "4", "1"] and confusion[4][:5] == ["total", "6", "5", "6", "17"]


@pytest.mark.parametrize("dtype,nodata", [("uint16", 999), ("float32", -1.0), ("float32", float("nan"))])
def test_reference_raster_nodata_of_any_type_is_no_reference(tmp_path, dtype, nodata):
    classified = write_raster(tmp_path / "classified.tif", CLASSIFIED)
    values = REFERENCE.astype(dtype)
    values[REFERENCE == 0] = nodata  # the one pixel without reference (row 3, column 2)
    reference = write_raster(tmp_path / "reference.tif", values, nodata=nodata)
    _, report, events = assess(tmp_path, classified=classified, reference_raster=reference)
    assert report["confusion_matrix"]["counts"] == [[5, 1, 0], [1, 4, 1], [0, 0, 5]]
    assert report["left_out"]["classified_pixels_without_reference"] == 1
    assert not events.of_type("log") or all("255" not in e["message"] for e in events.of_type("log"))


def test_shifted_reference_raster_counts_pixels_outside_the_classified_raster(tmp_path):
    classified = write_raster(tmp_path / "classified.tif", CLASSIFIED)
    # The same reference values, two pixels further east: its columns 0..4 lie on classified columns
    # 2..6, so its columns 3 and 4 (8 labelled pixels) fall outside the classified raster.
    reference = write_raster(tmp_path / "shifted.tif", REFERENCE, transform=from_origin(X0 + 20, Y0, PIXEL, PIXEL))
    _, report, _ = assess(tmp_path, classified=classified, reference_raster=reference,
                          classes=json.dumps(CLASSES))
    # Classified columns 2..4 against reference columns 0..2:
    #   row 0: C 2 2 3 / R 1 1 2 -> (1,2) (1,2) (2,3)
    #   row 1: C 2 3 3 / R 1 2 2 -> (1,2) (2,3) (2,3)
    #   row 2: C 2 3 3 / R 1 1 2 -> (1,2) (1,3) (2,3)
    #   row 3: C 2 3 0 / R 1 1 0 -> (1,2) (1,3) (no data, no reference)
    # Class 3 (Urban) only occurs in the classified map: its reference row is empty.
    assert report["confusion_matrix"]["counts"] == [[0, 5, 2], [0, 0, 4], [0, 0, 0]]
    assert report["left_out"]["outside_classified_raster"] == 8
    assert report["left_out"]["on_classified_nodata"] == 0
    s = report["summary"]
    assert s["pixels_assessed"] == 11 and s["overall_accuracy"] == 0.0
    # chance agreement: rows 7, 4, 0 x columns 0, 5, 6 -> 20/121; kappa = -20/121 / (101/121)
    assert s["kappa"] == pytest.approx(-20 / 101)


def write_polygons(path, polygons, epsg=32633):
    """Rectangles given as (col0, row0, col1, row1, class) in pixels of the test grid, written in ``epsg``."""
    source, target = osr.SpatialReference(), osr.SpatialReference()
    source.ImportFromEPSG(32633)
    target.ImportFromEPSG(epsg)
    for srs in (source, target):
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = osr.CoordinateTransformation(source, target)
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = dataset.CreateLayer("reference", target, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTString))
    for col0, row0, col1, row1, value in polygons:
        x0, x1, y0, y1 = X0 + col0 * PIXEL, X0 + col1 * PIXEL, Y0 - row0 * PIXEL, Y0 - row1 * PIXEL
        ring = ogr.Geometry(ogr.wkbLinearRing)
        for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)):
            ring.AddPoint_2D(x, y)
        polygon = ogr.Geometry(ogr.wkbPolygon)
        polygon.AddGeometry(ring)
        polygon.Transform(transform)
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(polygon)
        feature.SetField("class", value)
        layer.CreateFeature(feature)
    dataset = None
    return str(path)


# (col0, row0, col1, row1, class): class names in any case; the last one overlaps "URBAN" at row 2, col 2.
POLYGONS = [(0, 0, 2, 2, "Water"), (3, 0, 7, 1, "forest"), (2, 2, 5, 4, "URBAN"), (1, 2, 3, 3, "water")]


@pytest.mark.parametrize("epsg", [32633, 4326], ids=["same-crs", "wgs84"])
def test_reference_polygons_give_the_hand_counted_matrix(tmp_path, epsg):
    classified = write_raster(tmp_path / "classified.tif", CLASSIFIED)
    polygons = write_polygons(tmp_path / "reference.gpkg", POLYGONS, epsg)
    _, report, _ = assess(tmp_path, classified=classified, reference_vector=polygons, class_field="class",
                          classes=json.dumps(CLASSES))
    # Water  (rows 0-1, cols 0-1): 4 x (W, W)
    # forest (row 0, cols 3-6):   (F, F) at col 3, (F, U) at col 4; cols 5 and 6 lie outside -> 2 outside
    # URBAN  (rows 2-3, cols 2-4): (U, U) at r2c3, r2c4, r3c3; (U, F) at r3c2; r3c4 is no data -> 1 on no data;
    #                             r2c2 is also covered by "water": overlapping classes disagree -> left out
    # water  (row 2, cols 1-2):   (W, F) at r2c1
    assert report["confusion_matrix"]["counts"] == [[4, 1, 0], [0, 1, 1], [0, 1, 3]]
    assert report["left_out"]["outside_classified_raster"] == 2
    assert report["left_out"]["on_classified_nodata"] == 1
    assert report["left_out"]["overlapping_polygons_disagree"] == 1
    assert report["summary"]["overall_accuracy"] == pytest.approx(8 / 11)
    assert report["inputs"]["reference_kind"] == "polygons"


def test_report_is_valid_html_whose_images_exist(tmp_path):
    classified = write_raster(tmp_path / "classified.tif", CLASSIFIED)
    reference = write_raster(tmp_path / "reference.tif", REFERENCE)
    html_path = tmp_path / "reports" / "zone <1>.html"
    outputs, _, _ = assess(tmp_path, classified=classified, reference_raster=reference, html=html_path,
                           table=tmp_path / "tables" / "t.csv", json=tmp_path / "r.json")
    assert outputs["OUTPUT_HTML"] == str(html_path) and Path(outputs["OUTPUT_TABLE"]).is_file()
    text = html_path.read_text(encoding="utf-8")
    checker = StrictHtml()
    checker.feed(text)
    checker.close()
    assert text.startswith("<!DOCTYPE html>") and not checker.stack, checker.stack
    assert checker.problems == []
    assert len(checker.images) == 2
    for src in checker.images:
        image = html_path.parent / src
        assert "/" not in src and image.is_file() and image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Overall accuracy" in text and "82.4 %" in text  # 14/17
    assert not list(tmp_path.rglob("*.part*")), "temporary files were left behind"


def test_unknown_reference_names_are_a_clear_error_and_write_nothing(tmp_path):
    classified = write_raster(tmp_path / "classified.tif", CLASSIFIED)
    polygons = write_polygons(tmp_path / "reference.gpkg", [(0, 0, 2, 2, "Water"), (2, 2, 4, 4, "cloud")])
    with pytest.raises(BadInputError, match="cloud.*match no class"):
        assess(tmp_path, classified=classified, reference_vector=polygons, class_field="class",
               classes=json.dumps(CLASSES))
    with pytest.raises(BadInputError, match="no field 'klass'"):
        assess(tmp_path, classified=classified, reference_vector=polygons, class_field="klass")
    far = write_raster(tmp_path / "far.tif", REFERENCE, transform=from_origin(X0 + 1000, Y0, PIXEL, PIXEL))
    with pytest.raises(BadInputError, match="does not overlap the classified raster at all"):
        assess(tmp_path, classified=classified, reference_raster=far)
    with pytest.raises(BadInputError, match="is one of the inputs"):
        assess(tmp_path, classified=classified, reference_raster=far, table=classified)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "embed", "source", "track", "wbr"}


class StrictHtml(HTMLParser):
    """Checks that every non-void element is closed in order, and collects <img src>."""

    def __init__(self):
        super().__init__()
        self.stack, self.problems, self.images = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            attrs = dict(attrs)
            self.images.append(attrs.get("src"))
            if not attrs.get("alt"):
                self.problems.append("img without alt")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def test_classes_from_the_classifier_tag_and_areas_in_a_geographic_crs(tmp_path):
    # A map in WGS 84 at 0.001 degree pixels around 45 degrees north, with the classifier's class tag.
    transform = from_origin(14.0, 45.004, 0.001, 0.001)
    classified = tmp_path / "classified.tif"
    profile = {"driver": "GTiff", "width": 5, "height": 4, "count": 1, "dtype": "uint8", "crs": "EPSG:4326",
               "transform": transform, "nodata": 0}
    with rasterio.open(classified, "w", **profile) as dst:
        dst.write(CLASSIFIED, 1)
        dst.update_tags(landcover_classes=json.dumps(CLASSES))
    reference = tmp_path / "reference.tif"
    with rasterio.open(reference, "w", **profile) as dst:
        dst.write(REFERENCE, 1)
    _, report, _ = assess(tmp_path, classified=classified, reference_raster=reference)
    assert [c["name"] for c in report["classes"]] == ["Water", "Forest", "Urban"]
    assert report["confusion_matrix"]["counts"] == [[5, 1, 0], [1, 4, 1], [0, 0, 5]]
    # A 0.001 x 0.001 degree pixel at 45 degrees north: about 111.2 m x 78.7 m = 0.875 ha (spherical Earth).
    water = report["classes"][0]
    assert water["mapped_pixels"] == 6
    assert water["mapped_area"] == pytest.approx(6 * 111.195 * 111.195 * np.cos(np.radians(45.002)) / 1e4,
                                                 rel=1e-3)
    assert report["area"]["unit"] == "ha" and "geographic" in report["area"]["note"]


def test_reference_points_are_samples_of_one_pixel(tmp_path):
    classified = write_raster(tmp_path / "classified.tif", CLASSIFIED)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    path = tmp_path / "points.gpkg"
    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = dataset.CreateLayer("samples", srs, ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTInteger))
    # (row, col, class id): r0c0 W on W; r1c1 F on W; r2c3 U on U; r3c0 on no data; r0c7 outside the map.
    for row, col, value in [(0, 0, 1), (1, 1, 2), (2, 3, 3), (3, 0, 1), (0, 7, 2)]:
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({X0 + (col + 0.5) * PIXEL} {Y0 - (row + 0.5) * PIXEL})"))
        feature.SetField("class", value)
        layer.CreateFeature(feature)
    dataset = None
    _, report, _ = assess(tmp_path, classified=classified, reference_vector=path, class_field="class",
                          classes=json.dumps(CLASSES))
    assert report["confusion_matrix"]["counts"] == [[1, 0, 0], [1, 0, 0], [0, 0, 1]]
    assert report["left_out"]["outside_classified_raster"] == 1
    assert report["left_out"]["on_classified_nodata"] == 1
    assert report["summary"]["overall_accuracy"] == pytest.approx(2 / 3)


def test_cancel_stops_before_writing_anything(tmp_path):
    from landcover_plugin.core.errors import Cancelled

    classified = write_raster(tmp_path / "classified.tif", CLASSIFIED)
    reference = write_raster(tmp_path / "reference.tif", REFERENCE)
    events = RecordingEvents()
    events.cancel_requested = True  # as after SIGTERM from the QGIS side
    with pytest.raises(Cancelled):
        assess_accuracy(AssessOptions(classified, reference_raster=reference, output_folder=str(tmp_path / "out")),
                        events)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_reference_data_elsewhere_is_refused_as_not_overlapping(tmp_path, shared_data):
    """Reference data of another area, or with a wrong CRS assigned, lies elsewhere: the message says there is
    no overlap and to check the CRSs (it spoke of more than 17,179,869,184 pixels and clipping)."""
    from osgeo import gdal

    nlcd = shared_data / "zion" / "nlcd2011_8class.tif"
    wrong_crs = tmp_path / "nlcd_wrong_crs.tif"
    gdal.Translate(str(wrong_crs), str(nlcd), outputSRS="EPSG:32633")  # UTM 33 N instead of 12 N: the same numbers
    for reference in (shared_data / "eolearn" / "lulc.tif", wrong_crs):
        with pytest.raises(BadInputError, match=r"does not overlap the classified raster at all.*Check the CRSs") as e:
            assess_accuracy(AssessOptions(str(nlcd), reference_raster=str(reference),
                                          output_folder=str(tmp_path / "out")), RecordingEvents())
        assert "Clip" not in str(e.value) and "pixels" not in str(e.value)
        assert "classified raster 301905, 4111245 to 335745, 4154085" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_a_class_list_file_is_never_replaced_by_the_results_named_after_the_table(tmp_path, shared_data):
    """Processing names the JSON results after the table (classes.csv -> classes.json): that replaced the class
    list the analyst gave as input, Zion's classes.json, with the results."""
    classes = tmp_path / "classes.json"
    original = (shared_data / "zion" / "classes.json").read_bytes()
    classes.write_bytes(original)
    nlcd = str(shared_data / "zion" / "nlcd2011_8class.tif")
    with pytest.raises(BadInputError, match=f"The output {classes} is one of the inputs.*named after the table"):
        assess_accuracy(AssessOptions(nlcd, reference_raster=nlcd, classes=str(classes), json=str(classes),
                                      table=str(tmp_path / "classes.csv"), html=str(tmp_path / "report.html")),
                        RecordingEvents())
    assert classes.read_bytes() == original and [p.name for p in tmp_path.iterdir()] == ["classes.json"]


def test_an_output_folder_under_a_file_is_named_as_a_file(tmp_path):
    classified = write_raster(tmp_path / "classified.tif", CLASSIFIED)
    reference = write_raster(tmp_path / "reference.tif", REFERENCE)
    with pytest.raises(BadInputError, match=r"classified.tif is a file, not a folder"):
        assess(tmp_path, classified=classified, reference_raster=reference,
               output_folder=str(tmp_path / "classified.tif" / "report"))
    assert rasterio.open(classified).read(1).tolist() == CLASSIFIED.tolist()
