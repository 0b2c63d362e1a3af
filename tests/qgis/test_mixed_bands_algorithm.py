"""'Export label chips' in a real headless QGIS on a virtual raster stacking 16-bit bands and a float NDVI band
(tests/raster_stacks.py): it runs, and its size estimate counts the float32 chips the engine writes."""
import json

from algorithm_runs import checked_run
from qgis.core import QgsRasterLayer
from raster_stacks import zion_ndvi_stack


def test_export_of_a_mixed_stack_runs_and_sizes_its_float_chips(provider, shared_data, tmp_path):
    stack = zion_ndvi_stack(shared_data, tmp_path, (slice(600, 700), slice(300, 400)))
    layer = QgsRasterLayer(str(stack["path"]), "stack")
    assert layer.isValid()
    results, ok, log = checked_run("landcover:export_label_chips", {
        "INPUT": layer, "LABELS": str(shared_data / "zion" / "training_polygons_sparse.gpkg"),
        "CLASS_FIELD": "class_id", "CHIP_SIZE": 32, "OUTPUT": str(tmp_path / "chips")})
    assert ok, log
    assert "(13.0 KB a chip, image and labels)" in log  # 32 x 32 x (3 bands x 4 bytes + 1); 16-bit: 7.0 KB
    assert json.loads((tmp_path / "chips" / "dataset.json").read_text())["bands"]["dtype"] == "float32"
