"""Chip export from polygons whose class field holds numbers: names from a text field beside it, 0 as unlabelled,
and ids beyond 254, on the real data (Zion's and eo-learn's polygons)."""
import numpy as np
import pytest
from osgeo import gdal, ogr
from test_chip_export_polygons import gdal_reference_labels

from landcover_plugin.core.chips.dataset import load_dataset
from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents


def test_numeric_classes_take_their_names_from_a_text_field_that_names_each_class_once(shared_data, tmp_path):
    """Zion's polygons carry ``class_id`` and a ``class`` name: the ids are kept and the names come with them
    (what the legend, the log's advice and the model show); a text field that names one class two ways is not
    taken for names."""
    image = shared_data / "zion/landsat8_2015_b2345.tif"
    polygons = shared_data / "zion/training_polygons_sparse.gpkg"
    source = ogr.Open(str(polygons))
    pairs = {int(f.GetField("class_id")): f.GetField("class") for f in source.GetLayer(0)}
    events = RecordingEvents()
    export_chips(ChipExportOptions(image, tmp_path / "named", labels_vector=polygons, class_field="class_id",
                                   chip_size=64, stride=32), events=events)
    schema = load_dataset(tmp_path / "named")["schema"]
    assert {c.id: c.name for c in schema} == pairs and "Forest" in pairs.values()
    assert any("named by the field 'class'" in e["message"] for e in events.of_type("log"))

    mixed = tmp_path / "mixed.gpkg"
    gdal.VectorTranslate(str(mixed), str(polygons))
    copy = ogr.Open(str(mixed), 1)
    layer = copy.GetLayer(0)
    feature = layer.GetNextFeature()
    feature.SetField("class", feature.GetField("class") + " (other spelling)")
    layer.SetFeature(feature)
    layer = None
    copy = None  # closed: written
    export_chips(ChipExportOptions(image, tmp_path / "unnamed", labels_vector=mixed, class_field="class_id",
                                   chip_size=64, stride=32))
    assert [c.name for c in load_dataset(tmp_path / "unnamed")["schema"]] == [f"class {i}" for i in sorted(pairs)]


def test_class_zero_is_skipped_like_an_empty_class_value(shared_data, tmp_path):
    """eo-learn's land-cover polygons: 4 of 88 have LULC_ID 0 and an empty LULC_NAME ("none"). By name they were
    skipped with a warning; by id the export stopped ("class ids must be 1..254 ... give a class schema that names
    them", which no schema can). Both now skip the 4 and label the same pixels."""
    image = shared_data / "eolearn/sentinel2_13band_composite.tif"
    polygons = shared_data / "eolearn/lulc_polygons.gpkg"
    results = {}
    for field in ("LULC_ID", "LULC_NAME"):
        events = RecordingEvents()
        summary = export_chips(ChipExportOptions(image, tmp_path / field, labels_vector=polygons, class_field=field,
                                                 chip_size=32), events=events)
        warnings = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
        results[field] = (summary["class_pixels"], [m for m in warnings if m.startswith("Skipped")])
    by_id, by_name = results["LULC_ID"], results["LULC_NAME"]
    assert by_id[1] == ["Skipped 4 feature(s) whose 'LULC_ID' is 0: 0 means unlabelled, so they label nothing. Give "
                        "them a class id of 1 to 254 if they are a class."]
    assert len(by_name[1]) == 1 and "4 without a value in 'LULC_NAME'" in by_name[1][0]
    assert by_id[0] == by_name[0] and "forest" in by_id[0]  # named by LULC_NAME, the same pixels
    ids = {name: i for i, name in enumerate(sorted(by_id[0]), start=1)}
    reference = gdal_reference_labels(image, polygons, "LULC_NAME", ids)
    assert sum(by_id[0].values()) <= np.count_nonzero(reference)


def test_a_class_id_beyond_254_names_a_fix_that_works(shared_data, tmp_path):
    copy = tmp_path / "lulc.gpkg"
    gdal.VectorTranslate(str(copy), str(shared_data / "eolearn/lulc_polygons.gpkg"))
    source = ogr.Open(str(copy), 1)
    source.ExecuteSQL("UPDATE LULC SET LULC_ID = 300 WHERE LULC_ID = 8")
    source = None
    with pytest.raises(BadInputError) as info:
        export_chips(ChipExportOptions(shared_data / "eolearn/sentinel2_13band_composite.tif", tmp_path / "out",
                                       labels_vector=copy, class_field="LULC_ID", chip_size=32))
    assert "holds class values [300]; class ids must be 1..254 (0 = unlabelled)" in info.value.message
    assert "Recode those features' classes into 1..254" in info.value.message
    assert "schema" not in info.value.message and not (tmp_path / "out").exists()
