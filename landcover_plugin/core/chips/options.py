"""Options of the ``export-chips`` command (engine flags, Processing defaults and the Python API in one place)."""
import json
from dataclasses import dataclass
from typing import Optional, Sequence

from ..options import SEED_MAX, option


def schema_to_text(schema) -> str:
    """A class schema (a ClassSchema, a list of class dicts, or already JSON text or a JSON file's path) as
    the text ``--schema`` takes."""
    if isinstance(schema, str):
        return schema
    items = schema.to_list() if hasattr(schema, "to_list") else list(schema)
    return json.dumps(items)


@dataclass
class ChipExportOptions:
    image: str = option(help="raster to cut into chips (any band count and dtype)")
    output: str = option(help="output folder (new, empty, or a previous chip dataset)")
    bands: Optional[Sequence[int]] = option(
        None, nargs="*", metavar="BAND",
        help="raster bands to export, in this order (1 = the first band), e.g. --bands 4 3 2; default: all bands")
    labels_vector: Optional[str] = option(None, help="training polygons (any vector file GDAL reads, any CRS)")
    labels_layer: Optional[str] = option(None, help="layer name inside the vector file (default: the first)")
    class_field: Optional[str] = option(None, help="attribute holding the class (numeric id or name)")
    fids: Optional[Sequence[int]] = option(None, help="comma-separated feature ids to use (default: all)")
    labels_raster: Optional[str] = option(None, help="classified raster to use as labels instead of polygons")
    labels_source: Optional[str] = option(
        None, help="what dataset.json records as the labels' source (default: the labels file); the plugin gives "
                   "the analyst's layer when it hands the engine a temporary copy of it")
    schema: Optional[object] = option(
        None, to_text=schema_to_text,
        help="class schema: JSON text or a JSON file (list of {id, name, colour}); default: from the labels")
    keep_classes: Optional[str] = option(
        None, help="an earlier run's classes whose values to keep: its model (.onnx), its chip dataset (folder or "
                   "dataset.json) or a classes JSON; label classes not in it get values after its highest")
    chip_size: int = option(256, minimum=8, maximum=4096, help="chip width and height in pixels")
    stride: Optional[int] = option(None, minimum=0, maximum=4096,
                                   help="pixels between chip windows (default or 0: the chip size, no overlap)")
    min_labelled: float = option(0.05, minimum=0.0, maximum=1.0,
                                 help="share of labelled pixels a chip needs to be kept (0-1)")
    val_fraction: float = option(0.2, minimum=0.0, maximum=0.9,
                                 help="share of chips for validation, chosen by spatial blocks (0-0.9)")
    seed: int = option(0, minimum=0, maximum=SEED_MAX, help="random seed of the train/validation split")
    add: bool = option(False, help="add the chips to the chip dataset already in the output folder (another raster "
                                   "for the same model: same bands, pixel type, nodata and chip size) instead of "
                                   "replacing it; a new or empty folder gets a new dataset")
