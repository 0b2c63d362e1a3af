"""Options of the ``suggest-areas`` command (engine flags, Processing defaults and the Python API in one place)."""
from dataclasses import dataclass
from typing import Optional

from ..options import SEED_MAX, option


@dataclass
class SuggestOptions:
    output: str = option(help="polygon GeoPackage to write (.gpkg), in the training-areas schema")
    uncertainty: Optional[str] = option(None, help="uncertainty raster from classify (--uncertainty)")
    classified: Optional[str] = option(None, help="classified raster on the same grid: the predicted class hint")
    confidence: Optional[str] = option(None, help="confidence raster on the same grid: the probability hint")
    raster: Optional[str] = option(None, help="instead of the rasters above: the image to classify with --model")
    model: Optional[str] = option(None, help="ONNX model to classify --raster with first")
    measure: str = option("entropy", choices=("entropy", "margin"),
                          help="uncertainty measure when classifying with --model")
    count: int = option(20, minimum=1, maximum=10_000, help="number of places to suggest (default 20)")
    min_distance: Optional[float] = option(
        None, minimum=0.0,
        help="minimum distance between suggestions in the raster's CRS units, kept even when fewer places "
             "then fit, and never less than a square's diagonal, so squares never overlap (default, or 0: half the "
             "spacing of an even spread, lowered when too few fit)")
    size: int = option(5, minimum=1, maximum=101, help="side of each suggested square in pixels (default 5)")
    class_field: str = option("class_id", help="class field of the output (empty: for the analyst to fill)")
    class_values: str = option(
        "ids", choices=("ids", "names"),
        help="what the class field holds: 'ids' (an integer field, the class ids) or 'names' (a text field, the "
             "class names), as in the training areas layer the squares will be pasted into (default ids)")
    layer_name: str = option("suggested_areas", help="name of the polygon layer in the GeoPackage")
    seed: int = option(0, minimum=0, maximum=SEED_MAX, help="random seed for ties and thinning")
    block_size: int = option(1024, minimum=16, maximum=65_536, help="window size in pixels (default 1024)")
    overwrite: bool = option(False, help="replace an existing output file")
    replace_unlabelled: bool = option(
        False, help="replace an existing output only when it holds earlier suggestions none of which has a class "
                    "yet (Processing's choice: squares you labelled are never replaced)")
