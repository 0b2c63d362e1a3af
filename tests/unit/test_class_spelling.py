"""Text class values that differ only in case name one class: a square pasted as 'Forest' into a layer of 'forest'
polygons joins forest (real rstoolbox polygons), where export refused the layer ('appears twice in the schema')."""
import json
import shutil

import numpy as np
import rasterio
from osgeo import ogr

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.schema import ClassSchema, spelled_once

LAYER = "trainingPolygons_lsat"


def test_spellings_are_grouped_under_the_most_used_one():
    names, variants = spelled_once(["forest", "Forest", "forest", " water ", "WATER", "cleared"])
    assert names == ["WATER", "cleared", "forest"] and variants == {"forest": ["Forest", "forest"],
                                                                     "WATER": ["WATER", "water"]}  # a tie: sorted first
    schema = ClassSchema.from_names(["Forest", "Urban"]).respelled(names)
    assert schema.names == ["forest", "Urban"] and schema.ids == [1, 2]


def test_a_class_spelled_two_ways_exports_as_one_class_with_a_warning(shared_data, tmp_path):
    polygons = tmp_path / "polygons.gpkg"
    shutil.copy(shared_data / "rstoolbox" / "training_polygons.gpkg", polygons)
    source = ogr.Open(str(polygons), 1)
    recased = source.ExecuteSQL(f"SELECT fid FROM {LAYER} WHERE class = 'forest' LIMIT 2")
    fids = [feature.GetFID() for feature in recased]
    source.ReleaseResultSet(recased)
    source.ExecuteSQL(f"UPDATE {LAYER} SET class = 'Forest' WHERE fid IN ({', '.join(map(str, fids))})")
    source = None
    events = RecordingEvents()
    export_chips(ChipExportOptions(shared_data / "rstoolbox" / "landsat5_1988_7band.tif", tmp_path / "chips",
                                   labels_vector=polygons, class_field="class", chip_size=32), events)
    classes = json.loads((tmp_path / "chips" / "dataset.json").read_text())["classes"]
    assert [c["name"] for c in classes] == ["cleared", "fallen_dry", "forest", "water"]
    (warning,) = [e["message"] for e in events.of_type("log") if e["level"] == "warning" and "case" in e["message"]]
    assert "'Forest' / 'forest' are taken as one class, 'forest'" in warning
    labels = [rasterio.open(p).read(1) for p in sorted((tmp_path / "chips").glob("labels/*.tif"))]
    present = np.unique(np.concatenate([a.ravel() for a in labels]))
    assert set(present) <= {0, 1, 2, 3, 4} and 3 in present  # forest's pixels, the recased polygons' among them
