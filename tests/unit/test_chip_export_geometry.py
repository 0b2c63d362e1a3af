"""Chip export from polygons on other grids and geometries, on the Zion data: a bottom-up and a rotated grid, a
grid in degrees, multi-part polygons, lines and points.

What every export must hold, checked against GDAL's own rasteriser over the whole raster (independent of the
export code): each labelled pixel of every polygon is in some chip, and the distinct labelled pixels per class that
dataset.json reports are those of a plain rasterisation.
"""
import json

import numpy as np
import pytest
import rasterio
from affine import Affine
from osgeo import gdal, ogr

from landcover_plugin.core.chips.dataset import load_dataset
from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents

gdal.UseExceptions()
ogr.UseExceptions()


@pytest.fixture(scope="module")
def zion(shared_data):
    return shared_data / "zion/landsat8_2015_b2345.tif", shared_data / "zion/training_polygons_sparse.gpkg"


def plain_labels(image_path, vector_path, field="class") -> tuple:
    """``(labels, names)``: the whole raster burnt by gdal.Rasterize (one pass per class, ids by sorted name),
    0 where the image is nodata."""
    source = ogr.Open(str(vector_path))
    names = sorted({f.GetField(field) for f in source.GetLayer(0)})
    with rasterio.open(image_path) as src:
        memory = gdal.GetDriverByName("MEM").Create("", src.width, src.height, 1, gdal.GDT_Byte)
        memory.SetGeoTransform(src.transform.to_gdal())
        memory.SetProjection(src.crs.to_wkt())
        valid = (src.read() != src.nodata).all(axis=0)
    for class_id, name in enumerate(names, start=1):
        gdal.Rasterize(memory, str(vector_path), burnValues=[class_id], where=f"\"{field}\" = '{name}'")
    labels = memory.GetRasterBand(1).ReadAsArray()
    labels[~valid] = 0
    return labels, names


def chip_mosaic(folder, shape) -> np.ndarray:
    """Every label chip (train and val) put back on the source grid; asserts overlapping chips agree."""
    dataset = json.loads((folder / "dataset.json").read_text())
    mosaic = np.zeros(shape, dtype=np.uint8)
    for chip in dataset["chips"]:
        w = chip["window"]
        with rasterio.open(folder / chip["label"]) as label:
            labels = label.read(1)
        part = mosaic[w["row_off"]:w["row_off"] + w["height"], w["col_off"]:w["col_off"] + w["width"]]
        assert not ((part > 0) & (labels > 0) & (part != labels)).any()
        np.copyto(part, labels, where=labels > 0)
    return mosaic


def check_every_pixel_once(folder, image_path, vector_path, field="class"):
    """The chips hold exactly the plain rasterisation's labelled pixels, and dataset.json counts each once."""
    reference, names = plain_labels(image_path, vector_path, field)
    np.testing.assert_array_equal(chip_mosaic(folder, reference.shape), reference)
    dataset = json.loads((folder / "dataset.json").read_text())
    counts = np.bincount(reference.ravel(), minlength=len(names) + 1)
    ids = {c["name"]: str(c["id"]) for c in dataset["classes"]}
    assert {name: dataset["distinct_class_pixels"][ids[name]] for name in names} == \
           {name: int(counts[i]) for i, name in enumerate(names, start=1)}
    assert dataset["summary"]["left_out_pixels"] == {"under_share": {}, "dropped_overlapping": {}}
    return dataset


def write_grid(image_path, target, transform, flip=False):
    """A copy of the image on another grid (same pixels; rows reversed with ``flip``)."""
    with rasterio.open(image_path) as src:
        data, profile = src.read(), dict(src.profile, transform=transform)
    with rasterio.open(target, "w", **profile) as dst:
        dst.write(data[:, ::-1] if flip else data)
    return target


def test_a_bottom_up_raster_is_exported_like_the_north_up_one(zion, tmp_path):
    """A raster whose first row is its southern edge (positive y pixel size) ended in rasterio's WindowError
    'Bounds and transform are inconsistent'; its chips now hold the polygons' pixels, as on the north-up one."""
    image, polygons = zion
    with rasterio.open(image) as src:
        t = src.transform
        bottom_up = Affine(t.a, 0, t.c, 0, -t.e, t.f + t.e * src.height)
    flipped = write_grid(image, tmp_path / "bottom_up.tif", bottom_up, flip=True)
    export_chips(ChipExportOptions(flipped, tmp_path / "up", labels_vector=polygons, class_field="class",
                                   chip_size=64))
    export_chips(ChipExportOptions(image, tmp_path / "down", labels_vector=polygons, class_field="class",
                                   chip_size=64))
    up = check_every_pixel_once(tmp_path / "up", flipped, polygons)
    down = check_every_pixel_once(tmp_path / "down", image, polygons)
    assert up["distinct_class_pixels"] == down["distinct_class_pixels"]
    assert sum(up["distinct_class_pixels"].values()) > 2000


def test_a_rotated_raster_labels_the_pixels_gdal_burns(zion, tmp_path):
    """On a rotated grid each window's own transform rounded a pixel centre on a polygon's edge differently from
    the whole grid's: a pixel of Water fell out of every chip. Shapes are burnt in the grid's pixel coordinates."""
    image, polygons = zion
    with rasterio.open(image) as src:
        rotated = src.transform * Affine.rotation(10)
    rotated_image = write_grid(image, tmp_path / "rotated.tif", rotated)
    export_chips(ChipExportOptions(rotated_image, tmp_path / "chips", labels_vector=polygons, class_field="class",
                                   chip_size=64, stride=48))
    check_every_pixel_once(tmp_path / "chips", rotated_image, polygons)


def test_a_polygon_cut_by_the_last_chip_row_keeps_all_its_pixels(zion, tmp_path):
    """On a raster whose height is no multiple of the chip size the last row of chips is shifted up, overlapping
    the row before. A polygon partly in a kept last-row chip counted as held, so its other pixels were in no chip
    (Barren 184 of 233 px on Zion warped to EPSG:4326, silently). Windows are now added until every labelled pixel
    of every training polygon is in a chip."""
    image, polygons = zion
    warped = tmp_path / "z4326.tif"
    gdal.Warp(str(warped), str(image), dstSRS="EPSG:4326", resampleAlg="near")
    with rasterio.open(warped) as src:
        height = src.height
        by_feature = gdal.GetDriverByName("MEM").Create("", src.width, src.height, 1, gdal.GDT_Int32)
        by_feature.SetGeoTransform(src.transform.to_gdal())
        by_feature.SetProjection(src.crs.to_wkt())
    gdal.Rasterize(by_feature, str(polygons), attribute="f", SQLStatement="SELECT fid + 1 AS f, geom FROM "
                   "training_areas")
    fids = by_feature.GetRasterBand(1).ReadAsArray()
    last = height - 256  # the last chip row starts here, overlapping the row before
    across = set(np.unique(fids[:last])) & set(np.unique(fids[last:])) - {0}
    assert height % 256 and across  # a polygon lies across that line
    events = RecordingEvents()
    export_chips(ChipExportOptions(warped, tmp_path / "chips", labels_vector=polygons, class_field="class",
                                   chip_size=256), events)
    check_every_pixel_once(tmp_path / "chips", warped, polygons)
    assert not any("in no chip" in e["message"] for e in events.of_type("log"))


def test_multipolygons_label_every_part(zion, tmp_path):
    """The sparse polygons dissolved into one multipolygon per class: chips were placed per feature, so each
    class was 'held' by the first chip with any part (4 chips; Cultivated 38 of 374 px, Herbaceous none). Each
    part now counts as a polygon: the same pixels as the separate polygons, and parts far apart are held out
    for validation apart, so the dissolved classes are still validated."""
    image, polygons = zion
    dissolved = tmp_path / "dissolved.gpkg"
    gdal.VectorTranslate(str(dissolved), str(polygons), SQLStatement="SELECT ST_Union(geom) AS geom, class FROM "
                         "training_areas GROUP BY class", SQLDialect="SQLite", layerName="classes")
    source = ogr.Open(str(dissolved))  # kept alive while its layer is read
    assert source.GetLayer(0).GetFeatureCount() == 8
    assert {f.GetGeometryRef().GetGeometryCount() > 1 for f in source.GetLayer(0)} == {True}
    source = None
    events = RecordingEvents()
    export_chips(ChipExportOptions(image, tmp_path / "parts", labels_vector=dissolved, class_field="class",
                                   chip_size=64, val_fraction=0.2), events)
    export_chips(ChipExportOptions(image, tmp_path / "separate", labels_vector=polygons, class_field="class",
                                   chip_size=64, val_fraction=0.2))
    parts = check_every_pixel_once(tmp_path / "parts", image, dissolved)
    separate = check_every_pixel_once(tmp_path / "separate", image, polygons)
    assert parts["distinct_class_pixels"] == separate["distinct_class_pixels"]
    split = parts["split"]
    assert split["method"] == "polygons" and split["val_polygons"] + split["train_polygons"] > 30
    assert split["val_parts"] and set(split["val_fids"]) == {int(fid) for fid in split["val_parts"]}
    assert sum(parts["distinct_val_class_pixels"].values()) > 0 and sum(parts["distinct_train_class_pixels"].values())
    assert any("each part of a multi-part feature counts as a polygon" in e["message"] for e in events.of_type("log"))


def _lines_and_points(polygons, target, kinds=("lines",), keep_polygons=False):
    """A copy of the polygons' outlines (lines) and/or centroids (points), with the polygons too if asked."""
    source = ogr.Open(str(polygons))
    layer = source.GetLayer(0)
    out = ogr.GetDriverByName("GPKG").CreateDataSource(str(target))
    new = out.CreateLayer("labels", layer.GetSpatialRef(), ogr.wkbUnknown)
    new.CreateField(ogr.FieldDefn("class", ogr.OFTString))
    for feature in layer:
        geometry = feature.GetGeometryRef()
        made = ([geometry.Clone()] if keep_polygons else []) + \
               ([geometry.GetBoundary()] if "lines" in kinds else []) + \
               ([geometry.Centroid()] if "points" in kinds else [])
        for shape in made:
            item = ogr.Feature(new.GetLayerDefn())
            item.SetField("class", feature.GetField("class"))
            item.SetGeometry(shape)
            new.CreateFeature(item)
    out = None
    return target


def test_lines_are_refused_and_beside_polygons_skipped_with_a_warning(zion, tmp_path):
    """Outlines given as training 'polygons' labelled only the pixels along them, silently."""
    image, polygons = zion
    lines = _lines_and_points(polygons, tmp_path / "lines.gpkg")
    with pytest.raises(BadInputError) as info:
        export_chips(ChipExportOptions(image, tmp_path / "out", labels_vector=lines, class_field="class",
                                       chip_size=64))
    assert "holds lines (40 feature(s)" in info.value.message and "'Lines to polygons'" in info.value.message
    assert not (tmp_path / "out").exists()

    mixed = _lines_and_points(polygons, tmp_path / "mixed.gpkg", keep_polygons=True)
    events = RecordingEvents()
    export_chips(ChipExportOptions(image, tmp_path / "mixed", labels_vector=mixed, class_field="class",
                                   chip_size=64), events)
    warnings = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert any(m.startswith("Skipped the lines of 40 feature(s)") for m in warnings)
    check_every_pixel_once(tmp_path / "mixed", image, polygons)  # the polygons' pixels, nothing along the lines


def test_points_label_the_pixel_they_fall_in_and_the_log_says_so(zion, tmp_path):
    image, polygons = zion
    points = _lines_and_points(polygons, tmp_path / "points.gpkg", kinds=("points",))
    events = RecordingEvents()
    export_chips(ChipExportOptions(image, tmp_path / "chips", labels_vector=points, class_field="class",
                                   chip_size=64), events)
    dataset = load_dataset(tmp_path / "chips")
    assert sum(dataset["distinct_class_pixels"].values()) == 40  # one pixel each (the centroids are far apart)
    check_every_pixel_once(tmp_path / "chips", image, points)
    assert any(e["message"].startswith("40 feature(s) are points: each labels only the one pixel it falls in")
               for e in events.of_type("log"))
