"""Probe findings on rasters and folders (issue 12): damaged or unusable inputs give a clear message instead of a
traceback, and a map that comes out blank says why, loudly."""
import sqlite3

import numpy as np
import pytest
import rasterio
from classify_models import untrained_model
from osgeo import gdal, ogr, osr

from landcover_plugin.core.assess.assess import assess_accuracy
from landcover_plugin.core.assess.options import AssessOptions
from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents


@pytest.fixture(scope="module")
def zion(shared_data, tmp_path_factory):
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    model = untrained_model(image, tmp_path_factory.mktemp("model") / "m.onnx", ["water", "forest", "shrubland"],
                            tile=64, input_dtype="uint16", resolution=[30.0, 30.0])
    return {"image": image, "model": model, "nlcd": shared_data / "zion" / "nlcd2011_8class.tif",
            "polygons": shared_data / "zion" / "training_polygons_sparse.gpkg"}


@pytest.fixture(scope="module")
def truncated(zion, tmp_path_factory):
    path = tmp_path_factory.mktemp("truncated") / "cut.tif"
    data = zion["image"].read_bytes()
    path.write_bytes(data[:len(data) * 2 // 5])
    return path


def test_a_truncated_geotiff_is_named_as_damaged_in_classify(zion, truncated, tmp_path):
    with pytest.raises(BadInputError, match="cut.tif: the file is damaged or incomplete"):
        classify_raster(ClassifyOptions(truncated, zion["model"], tmp_path / "out.tif"))
    assert list(tmp_path.iterdir()) == []


def test_a_truncated_geotiff_is_named_as_damaged_in_export_chips(zion, truncated, tmp_path):
    with pytest.raises(BadInputError, match="cut.tif: the file is damaged or incomplete"):
        export_chips(ChipExportOptions(truncated, tmp_path / "chips", labels_raster=zion["nlcd"], chip_size=64))
    assert list(tmp_path.iterdir()) == []


def test_a_complex_raster_is_refused(zion, tmp_path):
    path = tmp_path / "slc.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 96, 96, 2, gdal.GDT_CFloat32)
    dataset.SetGeoTransform((0, 1, 0, 0, 0, -1))
    dataset = None
    with pytest.raises(BadInputError, match="complex numbers"):
        export_chips(ChipExportOptions(path, tmp_path / "chips", labels_raster=path, chip_size=32))


@pytest.mark.parametrize("srs_id", [0, -1])
def test_a_mask_with_an_undefined_crs_is_refused(zion, tmp_path, srs_id):
    path = tmp_path / "mask.gpkg"
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    reference = osr.SpatialReference()
    reference.ImportFromEPSG(32612)
    layer = source.CreateLayer("mask", reference, ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt("POLYGON((320000 4120000,330000 4120000,330000 4130000,"
                                                  "320000 4130000,320000 4120000))"))
    layer.CreateFeature(feature)
    source = layer = None
    with sqlite3.connect(path) as db:  # as a GeoPackage written without a CRS records it
        db.execute(f"UPDATE gpkg_geometry_columns SET srs_id = {srs_id}")
        db.execute(f"UPDATE gpkg_contents SET srs_id = {srs_id}")
    with pytest.raises(BadInputError, match="mask layer .* CRS that cannot be used.*Assign the mask its real CRS"):
        classify_raster(ClassifyOptions(zion["image"], zion["model"], tmp_path / "out.tif", mask=path))


def test_assess_into_a_folder_it_cannot_write_says_so(zion, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(BadInputError, match="Cannot write the accuracy report.*Choose an output folder"):
        assess_accuracy(AssessOptions(zion["nlcd"], output_folder=str(blocker / "report"),
                                      reference_raster=str(zion["nlcd"])), RecordingEvents())


def test_assess_onto_a_folder_names_that_report_file_and_leaves_no_temporary(zion, tmp_path):
    """The report's files were staged visibly ('accuracy.json.part<pid>') and a failed rename named that staging
    file. Now the staging files are hidden and the message names the file that could not be written."""
    (tmp_path / "accuracy.json").mkdir()  # a folder where the JSON goes: its rename fails
    (tmp_path / "accuracy.json" / "keep").write_text("not ours")
    with pytest.raises(BadInputError, match="Cannot write the accuracy report") as raised:
        assess_accuracy(AssessOptions(zion["nlcd"], output_folder=str(tmp_path),
                                      reference_raster=str(zion["nlcd"])), RecordingEvents())
    assert f"({tmp_path / 'accuracy.json'})" in str(raised.value) and ".part" not in str(raised.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accuracy.json"]


def blank_copy(image, path, value=None):
    """A 200x160 px crop of ``image`` where every pixel is nodata (``value`` None: float32 NaN)."""
    with rasterio.open(image) as src:
        profile = dict(src.profile, width=200, height=160, tiled=False)
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        data = src.read(window=((100, 260), (100, 300)))
        transform = src.window_transform(((100, 260), (100, 300)))
    if value is None:
        profile.update(dtype="float32", nodata=None)
        data = np.full(data.shape, np.nan, np.float32)
    else:
        data[:] = value
    with rasterio.open(path, "w", **dict(profile, transform=transform)) as dst:
        dst.write(data)
    return path


@pytest.mark.parametrize("value", [65535, None], ids=["nodata", "nan"])
def test_classifying_a_raster_without_valid_pixels_warns_loudly(zion, tmp_path, value):
    image = blank_copy(zion["image"], tmp_path / "blank.tif", value)
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(image, zion["model"], tmp_path / "out.tif"), events)
    warnings = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert any("empty (all no data): every pixel" in m and "nodata value" in m for m in warnings), warnings
    assert "empty (all no data)" in result["BLANK"] and result["tiles_run"] == 0


def test_a_mask_outside_the_raster_is_named(zion, tmp_path):
    path = tmp_path / "far.gpkg"
    source = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    reference = osr.SpatialReference()
    reference.ImportFromEPSG(32612)
    layer = source.CreateLayer("far", reference, ogr.wkbPolygon)
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetGeometry(ogr.CreateGeometryFromWkt("POLYGON((500000 4000000,501000 4000000,501000 4001000,"
                                                  "500000 4001000,500000 4000000))"))
    layer.CreateFeature(feature)
    source = layer = None
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(zion["image"], zion["model"], tmp_path / "out.tif", mask=path), events)
    assert "mask polygons" in result["BLANK"] and "do not overlap the raster" in result["BLANK"]
    assert any(e["message"] == result["BLANK"] and e["level"] == "warning" for e in events.of_type("log"))


def test_a_normal_run_is_not_called_blank(zion, tmp_path):
    with rasterio.open(zion["image"]) as src:
        x0, y0 = src.xy(260, 100)
        x1, y1 = src.xy(100, 300)
    result = classify_raster(ClassifyOptions(zion["image"], zion["model"], tmp_path / "out.tif",
                                             extent=(x0, y0, x1, y1)), RecordingEvents())
    assert "BLANK" not in result


def test_export_chips_of_a_raster_without_valid_pixels_names_the_cause(zion, tmp_path):
    image = blank_copy(zion["image"], tmp_path / "blank.tif", 65535)
    with pytest.raises(BadInputError, match="has no valid pixels.*nodata value \\(65535\\)") as info:
        export_chips(ChipExportOptions(image, tmp_path / "chips", labels_vector=zion["polygons"],
                                       class_field="class", chip_size=32))
    assert "Lower the labelled share" not in info.value.message


def gcp_copy(image, path, rpcs: dict = None):
    """``image`` without its geotransform: placed by ground control points at its four corners (as Sentinel-1
    GRD scenes and georeferencer outputs are), or, with ``rpcs``, by rational polynomial coefficients only."""
    source = gdal.Open(str(image))
    width, height, (x0, dx, _, y0, _, dy) = source.RasterXSize, source.RasterYSize, source.GetGeoTransform()
    copy = gdal.GetDriverByName("GTiff").CreateCopy(str(path), source)
    copy.SetGeoTransform((0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    copy.SetProjection("")
    if rpcs:
        copy.SetMetadata(rpcs, "RPC")
    else:
        copy.SetGCPs([gdal.GCP(x0 + c * dx, y0 + r * dy, 0.0, c, r) for c in (0, width) for r in (0, height)],
                     source.GetProjection())
    copy = None
    with rasterio.open(path) as check:
        assert check.transform.is_identity and check.crs is None
    return path


RPCS = {"LINE_OFF": "714", "SAMP_OFF": "564", "LAT_OFF": "37.3", "LONG_OFF": "-113.1", "HEIGHT_OFF": "0",
        "LINE_SCALE": "714", "SAMP_SCALE": "564", "LAT_SCALE": "0.2", "LONG_SCALE": "0.2", "HEIGHT_SCALE": "1000",
        "LINE_NUM_COEFF": " ".join(["0", "0", "-1"] + ["0"] * 17), "LINE_DEN_COEFF": " ".join(["1"] + ["0"] * 19),
        "SAMP_NUM_COEFF": " ".join(["0", "1"] + ["0"] * 18), "SAMP_DEN_COEFF": " ".join(["1"] + ["0"] * 19)}


def test_a_raster_placed_by_control_points_only_is_refused_with_the_warp_that_fixes_it(zion, tmp_path):
    """It read as a raster with no CRS at 0..1128, 0..1428: classify warned only of the CRS and mapped it there,
    and the chip export said no polygon overlapped it or that it had no CRS, whose fix (assign one) is wrong."""
    gcps = gcp_copy(zion["image"], tmp_path / "gcps.tif")
    with pytest.raises(BadInputError, match=r"gcps.tif is georeferenced by 4 ground control points, not on a map grid"
                                            r".*Raster > Projections > Warp \(Reproject\); or gdalwarp -r bilinear"):
        classify_raster(ClassifyOptions(gcps, zion["model"], tmp_path / "out.tif"))
    for labels in ({"labels_vector": zion["polygons"], "class_field": "class_id"}, {"labels_raster": zion["nlcd"]}):
        with pytest.raises(BadInputError, match="ground control points"):
            export_chips(ChipExportOptions(gcps, tmp_path / "chips", chip_size=64, **labels))
    with pytest.raises(BadInputError, match="labels raster .* is georeferenced by 4 ground control points"):
        export_chips(ChipExportOptions(zion["image"], tmp_path / "chips2", labels_raster=gcps, chip_size=64))
    assert not (tmp_path / "out.tif").exists()
    warped = tmp_path / "warped.tif"  # the fix the message gives
    gdal.Warp(str(warped), str(gcps), resampleAlg="bilinear")
    result = classify_raster(ClassifyOptions(warped, zion["model"], tmp_path / "out.tif"))
    with rasterio.open(result["OUTPUT"]) as out, rasterio.open(zion["image"]) as src:
        assert out.crs == src.crs and out.bounds == pytest.approx(src.bounds, abs=60)


def test_a_raster_with_rpcs_only_is_refused_with_the_rpc_warp(zion, tmp_path):
    rpcs = gcp_copy(zion["image"], tmp_path / "rpcs.tif", RPCS)
    with pytest.raises(BadInputError, match=r"rational polynomial coefficients \(RPCs\).*with its RPCs.*gdalwarp -rpc"):
        classify_raster(ClassifyOptions(rpcs, zion["model"], tmp_path / "out.tif"))
