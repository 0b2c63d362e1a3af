"""Options of the ``assess`` command (engine flags, Processing defaults and the Python API in one place)."""
from dataclasses import dataclass
from typing import Optional

from ..options import option


@dataclass
class AssessOptions:
    classified: str = option(help="classified raster: class ids 1..254 in band 1, 0 (or its nodata) = no data")
    reference_vector: Optional[str] = option(None, help="reference polygons (any CRS, any format GDAL reads)")
    class_field: Optional[str] = option(None, help="field of the reference polygons holding class names or ids")
    layer: Optional[str] = option(None, help="layer name of the reference vector file (default: the first)")
    reference_raster: Optional[str] = option(None, help="reference raster of class ids (any grid and CRS)")
    reference_source: Optional[str] = option(
        None, help="what the report names as the reference (default: the reference file); the plugin gives the "
                   "analyst's layer when it hands the engine a temporary copy of it")
    classes: Optional[str] = option(
        None, help="class list as JSON text or a JSON file: [{id, name, colour}, ...] or {\"classes\": [...]}; "
                   "default: the classified raster's categories")
    output_folder: Optional[str] = option(
        None, help="folder for all outputs (default: beside --html/--table/--json)")
    html: Optional[str] = option(None, help="HTML report path (default: <folder>/accuracy_report.html)")
    table: Optional[str] = option(None, help="per-class CSV table path (default: <folder>/accuracy_table.csv)")
    json: Optional[str] = option(None, help="JSON results path (default: <folder>/accuracy.json)")
    block_size: int = option(1024, minimum=16, maximum=65_536, help="window size in pixels (default 1024)")
