"""Options of the ``classify`` command (engine flags, Processing defaults and the Python API in one place)."""
from dataclasses import dataclass
from typing import Optional, Sequence

from ..options import option

DEVICES = ("auto", "cpu", "cuda")
DEFAULT_BATCH = 4


@dataclass
class ClassifyOptions:
    raster: str = option(help="input raster (any GDAL-readable file)")
    model: str = option(help="ONNX segmentation model")
    output: str = option(help="classified GeoTIFF to write (.tif)")
    bands: Optional[Sequence[int]] = option(
        None, nargs="*", metavar="BAND",
        help="raster bands to feed the model, one per model band in the model's order (1 = the first band), e.g. "
             "--bands 4 3 2; default: the training source's bands the model records when the raster has them, "
             "else bands 1..n")
    extent: Optional[Sequence[float]] = option(
        None, help="xmin,ymin,xmax,ymax in the raster's CRS (default: whole raster)")
    mask: Optional[str] = option(None, help="polygons (any OGR file); only pixels inside them are classified")
    overlap: Optional[float] = option(
        None, minimum=0.0, maximum=75.0,
        help="tile overlap in percent of the tile, 0 to 75 (default: the model's recommendation, at least 12.5)")
    batch_size: int = option(DEFAULT_BATCH, minimum=1, maximum=256, help="tiles per model run")
    tile_size: Optional[int] = option(
        None, minimum=0, maximum=8192,
        help="tile size in px for a model that takes any size: a multiple of its tile, or 0 for the size "
             "that computes the fewest pixels up to 512 px, and up to the largest tile the trainer found to "
             "keep 99 % of the labels (default: that automatic choice for a model whose card holds the "
             "trainer's measurement, else the model's tile; see classify/tile_size.py); a model with "
             "a fixed size always runs its own")
    device: str = option("auto", choices=DEVICES, help="where the model runs")
    threads: Optional[int] = option(
        None, minimum=1, maximum=1024,
        help="onnxruntime threads in all (default: all usable CPUs); on the CPU, from 2 threads, two "
             "batches run at once, each on half of them")
    class_names: Optional[Sequence[str]] = option(
        None, help="class names for a model without metadata: comma-separated")
    mean: Optional[Sequence[float]] = option(
        None, help="per-band mean for a model without metadata: comma-separated")
    std: Optional[Sequence[float]] = option(None, help="per-band standard deviation for a model without metadata")
    resample: bool = option(False, help="resample the raster to the model's resolution")
    match_training_raster: bool = option(
        False, help="another date of the training raster's place: bring each band to the training raster's values "
                    "by a gain and offset per band fitted to the two rasters' pixel pairs over the ground they share, "
                    "leaving out pairs that changed "
                    "(see classify/radiometry.py)")
    confidence: Optional[str] = option(
        None, help="also write the top-class probability (percent) to this GeoTIFF")
    uncertainty: Optional[str] = option(
        None, help="also write the model's uncertainty (percent, 0 = certain, 255 = no data) to this GeoTIFF")
    uncertainty_measure: str = option(
        "entropy", choices=("entropy", "margin"),
        help="uncertainty: normalised entropy of the class probabilities, or 1 - (top - second) margin")
    class_shares: str = option(
        "model", choices=("model", "off"),
        help="'model': weigh the classes by the scene's class shares the trainer estimated and kept in the model "
             "(models trained on polygons; polygons sample classes about evenly, a scene does not); 'off': the "
             "model's own probabilities")
    overwrite: bool = option(False, help="replace existing output files")
    dask: Optional[str] = option(
        None, help="classify on a Dask cluster: local:N (N worker processes on this machine) or a scheduler "
                   "address (tcp://host:8786); shards of whole tile rows, identical to a single-process run; "
                   "the model and the output folder must be on storage every worker reaches (see on_dask.py)")
    dask_shard_rows: int = option(
        0, minimum=0, maximum=100_000,
        help="with --dask: tile rows per shard (0: automatic, about 4 shards per worker, at least 8 tile rows)")
    cog: bool = option(
        False, help="with --dask: also write one Cloud-Optimised GeoTIFF <output name>.tif from the shards "
                    "(implied when --output ends in .tif; with .vrt the output is a VRT over the shards)")
    rows: Optional[Sequence[int]] = option(
        None, cli=False, help="only area rows r0..r1 (r0 included, r1 not): one shard of a Dask run; the "
                              "output covers those rows and equals them in a whole run")
    pipelined: bool = option(
        True, cli=False, help="read and write in threads while the model runs (False: in turn with it)")
    streams: int = option(
        0, cli=False, minimum=0, maximum=1024,
        help="batches the model runs at once on the CPU when pipelined (0: automatic, see "
             "model/session.py: cpu_streams)")
