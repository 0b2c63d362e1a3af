"""Chip export from polygon labels on the real data, through the Python API.

Expected labels come from GDAL's own rasteriser (gdal.Rasterize, which also reprojects the polygons
itself), expected image chips from window reads of the source: both derived independently of the
export code.
"""
import numpy as np
import pytest
import rasterio
from osgeo import gdal, ogr
from rasterio.windows import Window

from landcover_plugin.core.chips.dataset import load_dataset
from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.schema import ClassSchema
from landcover_plugin.core.vectors import read_labelled_geometries, read_schema_table

gdal.UseExceptions()
ogr.UseExceptions()


def gdal_reference_labels(image_path, vector_path, field, ids: dict) -> np.ndarray:
    """Whole-raster labels burnt by gdal.Rasterize (one pass per class), on the image grid."""
    with rasterio.open(image_path) as src:
        memory = gdal.GetDriverByName("MEM").Create("", src.width, src.height, 1, gdal.GDT_Byte)
        memory.SetGeoTransform(src.transform.to_gdal())
        memory.SetProjection(src.crs.to_wkt())
    for value, class_id in ids.items():
        gdal.Rasterize(memory, str(vector_path), burnValues=[class_id], where=f"\"{field}\" = '{value}'")
    return memory.GetRasterBand(1).ReadAsArray()


def valid_mask(data, nodata):
    """Pixels valid in every band (not nodata, not NaN): plain numpy, independent of the engine's helper."""
    valid = np.isfinite(data).all(axis=0) if data.dtype.kind == "f" else np.ones(data.shape[1:], dtype=bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= (data != nodata).all(axis=0)
    return valid


def windows_of(chip):
    w = chip["window"]
    return Window(w["col_off"], w["row_off"], w["width"], w["height"])


def assert_no_train_val_overlap(dataset):
    size = dataset["chip_size"]
    train = [c["window"] for c in dataset["chips"] if c["split"] == "train"]
    val = [c["window"] for c in dataset["chips"] if c["split"] == "val"]
    for t in train:
        for v in val:
            assert abs(t["row_off"] - v["row_off"]) >= size or abs(t["col_off"] - v["col_off"]) >= size


def check_chips_against_source(dataset, image_path, reference_labels):
    """Every chip equals a window read of the source; every label chip equals the reference window
    with invalid image pixels set to 0; per-chip class counts match the label chip."""
    with rasterio.open(image_path) as src:
        for chip in dataset["chips"]:
            window = windows_of(chip)
            expected = src.read(window=window)
            with rasterio.open(chip["image_path"]) as image, rasterio.open(chip["label_path"]) as label:
                assert image.crs == src.crs and label.crs == src.crs
                assert image.transform == src.window_transform(window) == label.transform
                assert image.dtypes[0] == src.dtypes[0] and image.count == src.count
                assert image.nodata == src.nodata or (np.isnan(image.nodata) and np.isnan(src.nodata))
                np.testing.assert_array_equal(image.read(), expected)
                labels = label.read(1)
            reference = reference_labels[window.toslices()].copy()
            reference[~valid_mask(expected, src.nodata)] = 0
            np.testing.assert_array_equal(labels, reference)
            counts = np.bincount(labels.ravel(), minlength=256)
            assert chip["class_counts"] == {i: int(counts[i]) for i in np.flatnonzero(counts[1:]) + 1}
            assert chip["labelled_pixels"] == int(counts[1:].sum())


def test_rstoolbox_polygons_text_field(shared_data, tmp_path):
    image = shared_data / "rstoolbox/landsat5_1988_7band.tif"
    polygons = shared_data / "rstoolbox/training_polygons.gpkg"
    summary = export_chips(ChipExportOptions(image, tmp_path / "chips", labels_vector=polygons, class_field="class",
                                             chip_size=64, min_labelled=0.01, val_fraction=0.25, seed=0))
    dataset = load_dataset(tmp_path / "chips")

    names = ["cleared", "fallen_dry", "forest", "water"]  # text values, sorted, ids 1..4
    assert dataset["schema"].names == names and dataset["schema"].ids == [1, 2, 3, 4]
    assert dataset["bands"] == {"count": 7, "names": [f"band {i}" for i in range(1, 8)], "dtype": "uint8"}
    assert dataset["nodata"] == 255 and dataset["chip_size"] == 64 and dataset["stride"] == 64
    with rasterio.open(image) as src:
        assert dataset["resolution"] == [30.0, 30.0] and dataset["crs"] == src.crs.to_wkt()
        whole = src.read()  # small raster: the reference statistics over every valid pixel
    valid = valid_mask(whole, 255)
    np.testing.assert_allclose(dataset["mean"], whole[:, valid].mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(dataset["std"], whole[:, valid].std(axis=1), rtol=1e-9)

    reference = gdal_reference_labels(image, polygons, "class", {n: i + 1 for i, n in enumerate(names)})
    check_chips_against_source(dataset, image, reference)
    assert_no_train_val_overlap(dataset)
    splits = [c["split"] for c in dataset["chips"]]
    assert splits.count("train") == summary["train_chips"] > 0 and splits.count("val") == summary["val_chips"] > 0
    # per-class totals are the sums over chips, and every class is labelled somewhere
    for class_id in range(1, 5):
        assert dataset["class_pixels"][class_id] == sum(c["class_counts"].get(class_id, 0) for c in dataset["chips"])
        assert dataset["class_pixels"][class_id] > 0
    assert summary["class_pixels"] == {n: dataset["class_pixels"][i + 1] for i, n in enumerate(names)}


def test_zion_park_boundary_in_another_crs(shared_data, tmp_path):
    """The park outline (GRS80 UTM 12N, not the image's WGS 84 / UTM 12N) burns where GDAL burns it."""
    image = shared_data / "zion/landsat8_2015_b2345.tif"
    park = shared_data / "zion/park_boundary.gpkg"
    summary = export_chips(ChipExportOptions(image, tmp_path / "park", labels_vector=park, class_field="UNIT_CODE",
                                             chip_size=256, min_labelled=0.05, val_fraction=0.2))
    dataset = load_dataset(tmp_path / "park")
    assert dataset["schema"].names == ["ZION"] and dataset["bands"]["dtype"] == "uint16"
    reference = gdal_reference_labels(image, park, "UNIT_CODE", {"ZION": 1})
    assert reference.sum() > 100_000  # the park covers a good part of the scene
    check_chips_against_source(dataset, image, reference)
    assert_no_train_val_overlap(dataset)
    assert summary["chips"] == len(dataset["chips"]) >= 10


def test_selected_features_and_given_schema(shared_data, tmp_path):
    polygons = shared_data / "rstoolbox/training_polygons.gpkg"
    source = ogr.Open(str(polygons))
    water = [f.GetFID() for f in source.GetLayer(0) if f.GetField("class") == "water"]
    schema = ClassSchema.from_list([{"id": 3, "name": "forest"}, {"id": 7, "name": "water", "colour": "#0000ff"}])
    export_chips(ChipExportOptions(shared_data / "rstoolbox/landsat5_1988_7band.tif", tmp_path / "water",
                                   labels_vector=polygons, class_field="class", schema=schema, fids=water,
                                   chip_size=32, min_labelled=0.01))
    dataset = load_dataset(tmp_path / "water")
    assert dataset["schema"] == schema
    present = {k for c in dataset["chips"] for k in c["class_counts"]}
    assert present == {7}
    with rasterio.open(dataset["chips"][0]["label_path"]) as label:
        assert label.colormap(1)[7][:3] == (0, 0, 255)


def test_vectors_reproject_in_traditional_axis_order(shared_data, tmp_path):
    features = read_labelled_geometries(shared_data / "zion/park_boundary.gpkg", "UNIT_CODE", "EPSG:4326")
    assert len(features) == 1 and features[0][1] == "ZION"
    ring = np.array(features[0][0]["coordinates"][0] if features[0][0]["type"] == "Polygon"
                    else features[0][0]["coordinates"][0][0])
    assert -113.3 < ring[:, 0].min() < ring[:, 0].max() < -112.8  # x = longitude
    assert 37.1 < ring[:, 1].min() < ring[:, 1].max() < 37.6  # y = latitude

    # a schema stored in the GeoPackage's landcover_classes table is found again
    copy = tmp_path / "with_schema.gpkg"
    gdal.VectorTranslate(str(copy), str(shared_data / "rstoolbox/training_polygons.gpkg"))
    target = ogr.Open(str(copy), 1)
    table = target.CreateLayer("landcover_classes", geom_type=ogr.wkbNone)
    for name, kind in (("id", ogr.OFTInteger), ("name", ogr.OFTString), ("colour", ogr.OFTString)):
        table.CreateField(ogr.FieldDefn(name, kind))
    for class_id, name in ((2, "water"), (1, "forest")):
        feature = ogr.Feature(table.GetLayerDefn())
        feature.SetField("id", class_id), feature.SetField("name", name), feature.SetField("colour", "#123456")
        table.CreateFeature(feature)
    target = None
    assert read_schema_table(copy) == [{"id": 1, "name": "forest", "colour": "#123456"},
                                       {"id": 2, "name": "water", "colour": "#123456"}]
    with pytest.raises(Exception, match="not classes of the schema"):  # cleared, fallen_dry are not in it
        export_chips(ChipExportOptions(shared_data / "rstoolbox/landsat5_1988_7band.tif", tmp_path / "out",
                                       labels_vector=copy, labels_layer="trainingPolygons_lsat", class_field="class",
                                       chip_size=64))
    assert not (tmp_path / "out").exists()
