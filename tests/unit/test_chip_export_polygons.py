"""Chip export from polygon labels on the real data, through the Python API.

Expected labels come from GDAL's own rasteriser (gdal.Rasterize, which also reprojects the polygons
itself), expected image chips from window reads of the source: both derived independently of the
export code.
"""
import json

import numpy as np
import pytest
import rasterio
from osgeo import gdal, ogr
from rasterio.windows import Window

from landcover_plugin.core.chips.dataset import load_dataset
from landcover_plugin.core.chips.export import export_chips, export_command
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.schema import ClassSchema
from landcover_plugin.core.vectors import read_labelled_geometries, read_schema_table

gdal.UseExceptions()
ogr.UseExceptions()


def gdal_reference_labels(image_path, vector_path, field, ids: dict, fids=None) -> np.ndarray:
    """Whole-raster labels burnt by gdal.Rasterize (one pass per class), on the image grid; only the
    features ``fids`` when given."""
    with rasterio.open(image_path) as src:
        memory = gdal.GetDriverByName("MEM").Create("", src.width, src.height, 1, gdal.GDT_Byte)
        memory.SetGeoTransform(src.transform.to_gdal())
        memory.SetProjection(src.crs.to_wkt())
    only = "" if fids is None else f" AND fid IN ({','.join(str(int(f)) for f in fids) or '-1'})"
    for value, class_id in ids.items():
        gdal.Rasterize(memory, str(vector_path), burnValues=[class_id], where=f"\"{field}\" = '{value}'{only}")
    return memory.GetRasterBand(1).ReadAsArray()


def check_polygon_split(dataset, image_path, vector_path, field, ids):
    """Training chips hold exactly the training polygons' labels of their window; validation chips hold the
    held-out polygons' labels, each held-out pixel in exactly one validation chip; no labelled pixel is on
    both sides; every class with two or more polygons is held out somewhere."""
    split = dataset["split"]
    assert split["method"] == "polygons" and split["val_fids"]
    val_reference = gdal_reference_labels(image_path, vector_path, field, ids, split["val_fids"])
    train_reference = gdal_reference_labels(image_path, vector_path, field, ids)
    train_reference[val_reference > 0] = 0
    with rasterio.open(image_path) as src:
        valid = valid_mask(src.read(), src.nodata)
        seen_val = np.zeros((src.height, src.width), dtype=np.int32)
        for chip in dataset["chips"]:
            window = windows_of(chip)
            with rasterio.open(chip["label_path"]) as label:
                labels = label.read(1)
            if chip["split"] == "train":
                expected = train_reference[window.toslices()] * valid[window.toslices()]
                np.testing.assert_array_equal(labels, expected)
            else:
                assert not (labels * (val_reference[window.toslices()] != labels)).any()
                seen_val[window.toslices()] += labels > 0
    np.testing.assert_array_equal(seen_val, (val_reference > 0) & valid)  # each held-out pixel once
    polygons_per_class = {}
    source = ogr.Open(str(vector_path))  # keep the data source alive while its layer is read
    for feature in source.GetLayer(0):
        polygons_per_class.setdefault(ids[feature.GetField(field)], []).append(feature.GetFID())
    held_out = set(split["val_fids"])
    for class_id, fids in polygons_per_class.items():
        if len(fids) >= 2:
            assert held_out & set(fids) and set(fids) - held_out, class_id


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


def distinct_pixels(dataset, split, reference, valid) -> dict:
    """``{class name: pixels}`` labelled in ``reference`` (whole-raster labels) and valid, under the union of
    the ``split`` chips' windows: each pixel once, however many chips hold it."""
    covered = np.zeros(reference.shape, dtype=bool)
    for chip in dataset["chips"]:
        if chip["split"] == split:
            covered[windows_of(chip).toslices()] = True
    counts = np.bincount(reference[covered & valid], minlength=256)
    return {c.name: int(counts[c.id]) for c in dataset["schema"]}


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
    assert dataset["bands"] == {"count": 7, "names": [f"band {i}" for i in range(1, 8)], "dtype": "uint8",
                                "source_bands": list(range(1, 8)), "source_count": 7}
    assert dataset["nodata"] == 255 and dataset["chip_size"] == 64 and dataset["stride"] == 64
    with rasterio.open(image) as src:
        assert dataset["resolution"] == [30.0, 30.0] and dataset["crs"] == src.crs.to_wkt()
        whole = src.read()  # small raster: the reference statistics over every valid pixel
    valid = valid_mask(whole, 255)
    np.testing.assert_allclose(dataset["mean"], whole[:, valid].mean(axis=1), rtol=1e-9)
    np.testing.assert_allclose(dataset["std"], whole[:, valid].std(axis=1), rtol=1e-9)

    ids = {n: i + 1 for i, n in enumerate(names)}
    train_only = dict(dataset, chips=[c for c in dataset["chips"] if c["split"] == "train"])
    reference = gdal_reference_labels(image, polygons, "class", ids)
    reference[gdal_reference_labels(image, polygons, "class", ids, dataset["split"]["val_fids"]) > 0] = 0
    check_chips_against_source(train_only, image, reference)
    check_polygon_split(dataset, image, polygons, "class", ids)
    splits = [c["split"] for c in dataset["chips"]]
    assert splits.count("train") == summary["train_chips"] > 0 and splits.count("val") == summary["val_chips"] > 0
    # per-class totals are the sums over chips, and every class is labelled somewhere
    for class_id in range(1, 5):
        assert dataset["class_pixels"][class_id] == sum(c["class_counts"].get(class_id, 0) for c in dataset["chips"])
        assert dataset["class_pixels"][class_id] > 0
    # what the analyst is told counts each pixel once (the last row and column of windows overlap the others)
    assert summary["class_pixels"] == {n: dataset["distinct_class_pixels"][i + 1] for i, n in enumerate(names)}


def test_pixels_per_class_count_each_pixel_once_when_chips_overlap(shared_data, tmp_path):
    """The probe's export (32 px chips, stride 16): forest was reported as 6046 pixels, each counted once per
    chip holding it, where the polygons label 2271. The analyst is told distinct labelled pixels (the
    CLASS_PIXELS output, the log, RARE_CLASSES); dataset.json keeps the per-chip sums training weights use."""
    image = shared_data / "rstoolbox/landsat5_1988_7band.tif"
    polygons = shared_data / "rstoolbox/training_polygons.gpkg"
    events = RecordingEvents()
    outputs = export_command(ChipExportOptions(image, tmp_path / "chips", labels_vector=polygons, class_field="class",
                                               chip_size=32, stride=16), events)
    summary, dataset = outputs["SUMMARY"], load_dataset(tmp_path / "chips")
    ids = {n: i + 1 for i, n in enumerate(dataset["schema"].names)}
    with rasterio.open(image) as src:
        valid = valid_mask(src.read(), src.nodata)
    val_reference = gdal_reference_labels(image, polygons, "class", ids, dataset["split"]["val_fids"])
    train_reference = gdal_reference_labels(image, polygons, "class", ids)
    train_reference[val_reference > 0] = 0
    train = distinct_pixels(dataset, "train", train_reference, valid)
    val = distinct_pixels(dataset, "val", val_reference, valid)
    assert summary["train_class_pixels"] == train and summary["val_class_pixels"] == val
    assert json.loads(outputs["CLASS_PIXELS"]) == summary["class_pixels"] == {n: train[n] + val[n] for n in train}
    whole = np.bincount(gdal_reference_labels(image, polygons, "class", ids)[valid], minlength=5)
    assert summary["class_pixels"]["forest"] == whole[ids["forest"]] == 2271  # every forest pixel, once
    assert dataset["distinct_class_pixels"] == {ids[n]: v for n, v in summary["class_pixels"].items()}
    assert dataset["distinct_train_class_pixels"] == {ids[n]: v for n, v in train.items()}
    per_chip = {i: sum(c["class_counts"].get(i, 0) for c in dataset["chips"]) for i in ids.values()}
    assert dataset["class_pixels"] == per_chip and per_chip[ids["forest"]] > 2 * 2271  # as training sees them
    log = " ".join(e["message"] for e in events.of_type("log"))
    assert f"forest {train['forest']} / {val['forest']}" in log


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


def test_sparse_polygons_every_one_trains_or_validates_and_rare_ones_are_kept(shared_data, tmp_path):
    """The development case of small polygons (5-11 px) in 64 px chips: with the default labelled share of
    5 % (205 px) most polygons alone would not make a chip; each is kept all the same, in training or
    (held out whole) in validation, and each class with two polygons or more is validated."""
    image = shared_data / "zion/landsat8_2015_b2345.tif"
    polygons = shared_data / "zion/training_polygons_sparse.gpkg"
    events = RecordingEvents()
    summary = export_chips(ChipExportOptions(image, tmp_path / "chips", labels_vector=polygons, class_field="class_id",
                                             chip_size=64, stride=32), events=events)
    dataset = load_dataset(tmp_path / "chips")
    source = ogr.Open(str(polygons))
    by_fid = {f.GetFID(): int(f.GetField("class_id")) for f in source.GetLayer(0)}
    ids = {class_id: class_id for class_id in set(by_fid.values())}
    check_polygon_split(dataset, image, polygons, "class_id", ids)
    held_out = set(dataset["split"]["val_fids"])
    train_reference = gdal_reference_labels(image, polygons, "class_id", ids, sorted(set(by_fid) - held_out))
    in_train_chips = np.zeros_like(train_reference, dtype=bool)
    for chip in dataset["chips"]:
        if chip["split"] == "train":
            in_train_chips[windows_of(chip).toslices()] = True
    assert in_train_chips[train_reference > 0].all()  # no training polygon lost to the labelled share
    per_class = {}
    for fid, class_id in by_fid.items():
        per_class.setdefault(class_id, []).append(fid)
    unsplit = {dataset["schema"].by_id(c).name for c, fids in per_class.items() if len(fids) < 2}
    assert set(summary["split"]["unsplit_classes"]) == unsplit
    warnings = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    if unsplit:
        assert any("cannot be validated" in m for m in warnings)
    few = {dataset["schema"].by_id(c).name: len(fids) for c, fids in per_class.items() if len(fids) < 5}
    advice = [m for m in warnings if m.startswith("Few training polygons")]
    assert few and len(advice) == 1 and all(f"{name} ({n})" in advice[0] for name, n in few.items())


def test_a_polygon_smaller_than_a_pixel_labels_the_pixel_it_touches(shared_data, tmp_path):
    """The probe's 7 x 7 m 'urban' square on the 30 m grid covered no pixel centre: it labelled nothing and the
    export said "Classes with no training pixels: urban", though a small polygon is never dropped. It now labels
    the one pixel it lies in; a polygon over a pixel centre still labels only the pixels whose centre it covers."""
    image = shared_data / "rstoolbox/landsat5_1988_7band.tif"
    copy = tmp_path / "tiny.gpkg"
    gdal.VectorTranslate(str(copy), str(shared_data / "rstoolbox/training_polygons.gpkg"))
    with rasterio.open(image) as src:
        x0, y0 = src.transform * (100, 150)  # the top-left corner of pixel row 150, column 100
    source = ogr.Open(str(copy), 1)
    layer = source.GetLayer(0)
    for name, (left, top, side) in {"urban": (x0 + 1, y0 - 1, 7), "road": (x0 + 10 + 30, y0 - 10, 10)}.items():
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("class", name)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(
            f"POLYGON(({left} {top},{left + side} {top},{left + side} {top - side},{left} {top - side},"
            f"{left} {top}))"))
        layer.CreateFeature(feature)
    source = layer = None
    events = RecordingEvents()
    summary = export_chips(ChipExportOptions(image, tmp_path / "chips", labels_vector=copy, class_field="class",
                                             chip_size=32, stride=16), events=events)
    dataset = load_dataset(tmp_path / "chips")
    ids = {c.name: c.id for c in dataset["schema"]}
    assert summary["class_pixels"]["urban"] == summary["class_pixels"]["road"] == 1
    assert summary["missing_classes"] == []
    found = {}
    for chip in dataset["chips"]:
        window = windows_of(chip)
        with rasterio.open(chip["label_path"]) as label:
            labels = label.read(1)
        for name in ("urban", "road"):
            for row, col in zip(*np.nonzero(labels == ids[name])):
                found.setdefault(name, set()).add((int(window.row_off + row), int(window.col_off + col)))
    assert found == {"urban": {(150, 100)}, "road": {(150, 101)}}
    messages = [e["message"] for e in events.of_type("log")]
    assert any(m.startswith("1 polygon(s) cover no pixel centre (smaller than a pixel") for m in messages)
    assert not any("no training pixels" in m for m in messages)


def test_polygons_off_the_raster_are_left_out_of_classes_split_and_advice(shared_data, tmp_path):
    """The probe's case: the eo-learn composite's western 40 columns with all 84 lulc_polygons. Polygons off the
    raster counted: 'Validation: 10 of 84 polygons held out', none of them on the raster (0 validation chips, not
    a word), and 'Classes with no training pixels: cultivated land, artificial surface. Label some of each' for
    classes labelled only elsewhere."""
    import rasterio  # noqa: PLC0415

    folder = shared_data / "eolearn"
    with rasterio.open(folder / "sentinel2_13band_composite.tif") as src:
        window = rasterio.windows.Window(0, 20, 40, 81)
        profile = dict(src.profile, width=40, height=81, transform=src.window_transform(window))
        with rasterio.open(tmp_path / "west.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
    events = RecordingEvents()
    summary = export_chips(ChipExportOptions(tmp_path / "west.tif", tmp_path / "chips",
                                             labels_vector=folder / "lulc_polygons.gpkg", class_field="LULC_ID",
                                             chip_size=32, stride=16), events)
    messages = [e["message"] for e in events.of_type("log")]
    assert any(m.startswith("74 of 84 label polygons lie off the raster: left out") for m in messages), messages
    meta = json.loads((tmp_path / "chips" / "dataset.json").read_text())
    assert "cultivated land" not in [c["name"] for c in meta["classes"]]
    assert meta["split"]["val_polygons"] + meta["split"]["train_polygons"] == 10
    assert summary["val_chips"] > 0
