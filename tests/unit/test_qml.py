"""The paletted-renderer .qml written without QGIS (QGIS itself reads it in tests/qgis)."""
import xml.etree.ElementTree as ET

import pytest

from landcover_plugin.core.qml import paletted_qml, write_paletted_qml
from landcover_plugin.core.schema import ClassSchema


def test_palette_lists_every_class_with_its_colour_and_label(tmp_path):
    schema = ClassSchema.from_list([{"id": 4, "name": "Forest & woods", "colour": "#1B7837"},
                                    {"id": 1, "name": "Water <open>", "colour": "#1f78b4"}])
    path = write_paletted_qml(str(tmp_path / "map.qml"), schema.to_list())
    text = (tmp_path / "map.qml").read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE qgis")
    root = ET.fromstring(text.split("\n", 1)[1])
    assert path == str(tmp_path / "map.qml")
    assert root.tag == "qgis" and root.get("version").startswith("3.22")
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = [(e.get("value"), e.get("color"), e.get("label"), e.get("alpha"))
               for e in renderer.findall("colorPalette/paletteEntry")]
    # Sorted by id; names with XML-special characters survive; colours are lower-case #rrggbb.
    assert entries == [("1", "#1f78b4", "Water <open>", "255"), ("4", "#1b7837", "Forest & woods", "255")]
    assert not list(tmp_path.glob("*.partial-*"))


def test_nodata_has_no_palette_entry():
    classes = ClassSchema.from_names(["a", "b", "c"]).to_list()
    root = ET.fromstring(paletted_qml(classes).split("\n", 1)[1])
    values = [e.get("value") for e in root.iter("paletteEntry")]
    assert values == ["1", "2", "3"]


def test_a_style_that_cannot_be_put_in_place_leaves_no_file(tmp_path):
    """It was written as a visible 'map.qml.partial-<pid>', left behind when the rename failed (here a folder
    holds the style's name)."""
    (tmp_path / "map.qml").mkdir()
    with pytest.raises(OSError):
        write_paletted_qml(str(tmp_path / "map.qml"), ClassSchema.from_names(["a", "b"]).to_list())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.qml"]
