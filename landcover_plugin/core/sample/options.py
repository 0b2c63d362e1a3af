"""Options of the ``create-sample`` command (engine flags, Processing defaults and the Python API in one place)."""
from dataclasses import dataclass
from typing import Optional

from ..options import SEED_MAX, option

ALLOCATIONS = ("recommended", "proportional", "equal")  # here, not in design.py: the engine's --help imports no numpy

DEFAULT_USERS_ACCURACY = 0.8


@dataclass
class SampleOptions:
    classified: str = option(help="classified raster: class ids 1..254 in band 1, 0 (or its nodata) = no data")
    output: str = option(help="point GeoPackage to write (.gpkg)")
    size: Optional[int] = option(None, minimum=1, maximum=1_000_000,
                                 help="total number of sample points (or give --target-se)")
    target_se: Optional[float] = option(
        None, minimum=0.001, maximum=0.2,
        help="target standard error of overall accuracy (e.g. 0.01): the size then follows from "
             "Cochran's formula (Olofsson et al. 2014, eq. 13)")
    users_accuracy: Optional[str] = option(
        None, help="anticipated user's accuracy of each mapped class for --target-se: one value for all, or "
                   f"comma-separated in class-id order (default {DEFAULT_USERS_ACCURACY})")
    allocation: str = option("recommended", choices=ALLOCATIONS,
                             help="points per class: recommended (at least --min-per-class, the rest "
                                  "proportional), proportional to mapped area, or equal")
    min_per_class: int = option(50, minimum=0, maximum=100_000,
                                help="minimum points per class for the recommended allocation (default 50)")
    min_distance: float = option(0.0, minimum=0.0,
                                 help="minimum distance between points in the raster's CRS units (0: none)")
    seed: Optional[int] = option(None, minimum=0, maximum=SEED_MAX,
                                 help="random seed (default: a new one, stored with the sample)")
    classes: Optional[str] = option(
        None, help="class list as JSON text or a JSON file: [{id, name, colour}, ...]; default: the raster's "
                   "categories")
    layer_name: str = option("reference_sample", help="name of the point layer in the GeoPackage")
    block_size: int = option(1024, minimum=16, maximum=65_536, help="window size in pixels (default 1024)")
    overwrite: bool = option(False, help="replace an existing output file")
