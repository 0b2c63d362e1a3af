"""The ``classify`` engine command and its Python API, ``classify_raster(ClassifyOptions(...))``.

Reading, the model, blending and writing run as a pipeline (:mod:`.pipeline`).

Peak memory is a few batches plus classes x tile x width floats, whatever the raster's height.

``rows=(r0, r1)`` classifies only those rows of the area (one shard; the tile rows that touch them are run,
so the rows equal a whole run's); ``dask`` hands the run to :mod:`.on_dask`, which classifies shards so.
"""
import contextlib
import os
import time

from rasterio.transform import Affine

from ..classified_raster import ClassifiedRasterWriter
from ..errors import BadInputError
from ..events import Events, RecordingEvents
from ..model import map_record
from ..model.card import MAX_OVERLAP
from ..model.class_shares import card_weights
from ..model.session import load_model
from ..options import check_bounds, parse_floats, parse_ints, parse_names
from ..output_paths import RunInputs, check_output_path
from .options import ClassifyOptions
from .pipeline import report_progress, run_pipeline
from .source import mask_bounds, open_source
from .tile_size import choose_tile, model_grid
from .uncertainty import uncertainty_output


def classify_raster(options: ClassifyOptions, events: Events = None) -> dict:
    """Classify ``options.raster`` with ``options.model`` into ``options.output``; returns outputs and timings.

    ``overlap`` is in percent of the tile (default: the model card's, at least 12.5 %); ``extent`` is
    (xmin, ymin, xmax, ymax) in the raster's CRS; ``mask`` an OGR polygon file in any CRS;
    ``pipelined=False`` reads, blends and writes in turn with the model instead of in threads.
    Returns the outputs (OUTPUT, QML, CONFIDENCE) with the classes, device and timings (SECONDS,
    model_seconds, MEGAPIXELS_PER_SECOND, tiles, tiles_run, tiles_skipped, TILE, OVERLAP, BATCH_SIZE), and
    ``softmax_applied``: the model gave logits, not probabilities (said once in the log).
    """
    o = options
    if o.dask:
        from .on_dask import classify_on_dask  # dask is imported only when asked for
        return classify_on_dask(o, events or RecordingEvents())
    if o.cog:
        raise BadInputError("--cog applies to Dask runs (--dask): a single-process run already writes one tiled "
                            "GeoTIFF with overviews. Leave --cog out, or add --dask local:N.")
    rows = parse_ints(o.rows, "rows")
    if rows is not None and (len(rows) != 2 or o.uncertainty):
        raise BadInputError("rows takes two numbers, r0,r1, and no uncertainty raster.")
    events = events or RecordingEvents()
    started = time.perf_counter()
    inputs = RunInputs((os.fspath(o.raster), os.fspath(o.model), os.fspath(o.mask) if o.mask else None))
    output_path = check_output_path(o.output, overwrite=o.overwrite, inputs=inputs)
    confidence_path = None
    if o.confidence:
        confidence_path = check_output_path(o.confidence, overwrite=o.overwrite, inputs=inputs)
        if confidence_path == output_path:
            raise BadInputError(f"The confidence raster and the classified raster are both {output_path}: "
                                f"give them different paths.")
    with prepared_run(o, events, preflight=False) as (model, source, tile, batch_size, overlap_px):
        try:
            grid = model_grid(model, source.height, source.width, tile, overlap_px, rows=rows)
        except ValueError as exc:
            raise BadInputError(f"Cannot classify {exc}.") from exc
        r0, r1 = grid.rows
        part = f" (rows {r0}..{r1})" if rows else ""
        per_run = tiles_per_run(batch_size, model.streams, tile, model.fixed_batch)  # 1 stream unless pipelined
        at_once = f" ({model.streams} runs of {per_run} at once)" if model.streams > 1 else ""
        events.info(f"Classifying {source.width}x{r1 - r0} px{part} in {len(grid)} tiles of {tile} px "
                    f"overlapping by {overlap_px} px, {batch_size} tile{'s' if batch_size > 1 else ''} a batch"
                    f"{at_once}.")
        weights, tags = map_weights(o, model, events)
        with ClassifiedRasterWriter(output_path, width=source.width, height=r1 - r0, crs_wkt=source.crs_wkt,
                                    geotransform=(source.transform * Affine.translation(0, r0)).to_gdal(),
                                    classes=model.classes, confidence_path=confidence_path, overwrite=o.overwrite,
                                    progress=lambda f, m: report_progress(events, 0.97 + 0.03 * f, m),
                                    tags=tags) as writer, \
                uncertainty_output(o, source, inputs, model, events) as uncertainty:
            stats, outputs = run_pipeline(source, model, grid, writer, per_run, bool(confidence_path), events,
                                           o.pipelined, uncertainty, weights)
        blank = blank_reason(source) if stats["tiles_run"] == 0 and not rows else None
    if blank:
        events.warning(blank)
    seconds = time.perf_counter() - started
    megapixels = source.width * (r1 - r0) / 1e6
    events.progress(1.0, "done")
    size = f"{megapixels:.1f} Mpx" if megapixels >= 0.1 else f"{source.width * (r1 - r0):,} px"
    events.info(f"Classified {size} in {_seconds(seconds)} ({megapixels / seconds:.2f} Mpx/s; model "
                f"{_seconds(stats['model_seconds'])}); {stats['tiles_run']} tiles run, {stats['tiles_skipped']} "
                f"skipped (no valid pixel).")
    result = {"OUTPUT": outputs["labels"], "QML": outputs["qml"], "CLASSES": model.classes,
              "DEVICE": "cuda" if model.uses_cuda else "cpu", "SECONDS": round(seconds, 3),
              "MEGAPIXELS": round(megapixels, 3), "MEGAPIXELS_PER_SECOND": round(megapixels / seconds, 3),
              "TILE": tile, "OVERLAP": overlap_px, "BATCH_SIZE": batch_size, **stats}
    if confidence_path:
        result["CONFIDENCE"] = outputs["confidence"]
    if outputs["uncertainty"]:
        result["UNCERTAINTY"] = outputs["uncertainty"]
    if blank:
        result["BLANK"] = blank
    return result


@contextlib.contextmanager
def prepared_run(o: ClassifyOptions, events: Events, preflight: bool = True):
    """Check the inputs, load the model, open the raster and choose the tile: yields
    ``(model, source, tile, batch_size, overlap_px)``. Shared by a whole run, a shard and a Dask run's plan.
    ``preflight=False`` leaves the band statistics' check to the caller (see :class:`_Preflight`)."""
    extent = parse_floats(o.extent, "extent", 4)
    overlap = None if o.overlap is None else float(o.overlap) / 100.0
    if overlap is not None and not 0.0 <= overlap <= MAX_OVERLAP:
        raise BadInputError(f"The tile overlap is {o.overlap:g} % of the tile: give 0 to {100 * MAX_OVERLAP:g} % "
                            f"(empty: the model's own). More than that computes each pixel many times over.")
    batch_size = int(o.batch_size)
    raster_path, model_path = os.fspath(o.raster), os.fspath(o.model)
    mask_path = os.fspath(o.mask) if o.mask else None
    if not os.path.exists(raster_path):
        raise BadInputError(f"The raster {raster_path} does not exist.")
    if batch_size < 1:
        raise BadInputError(f"Batch size must be at least 1, got {batch_size}.")
    check_bounds(o)
    overrides = {"class_names": parse_names(o.class_names), "mean": parse_floats(o.mean, "mean"),
                 "std": parse_floats(o.std, "std")}
    model = load_model(model_path, device=o.device, threads=o.threads, overrides=overrides, events=events,
                       streams=int(o.streams or 0) if o.pipelined else 1)
    if model.fixed_batch and model.fixed_batch != batch_size:
        events.info(f"The model was exported with a fixed batch of {model.fixed_batch} tile(s): running "
                    f"{model.fixed_batch} tile(s) a batch instead of {batch_size}.")
        batch_size = model.fixed_batch
    with open_source(raster_path, model, extent=extent, mask_path=mask_path, resample=o.resample,
                     events=events, bands=o.bands, preflight=preflight, match=o.match_training_raster) as source:
        tile, batch_size, overlap_px = choose_tile(
            model, source.height, source.width, o.tile_size, batch_size,
            max(model.card.get("overlap") or 0.0, 0.125) if overlap is None else overlap, events)
        yield model, source, tile, batch_size, overlap_px


def map_weights(o: ClassifyOptions, model, events) -> tuple:
    """The class weights the map is made with (None: unweighed; the log lists them) and its tags: what it records
    of the model that made it, with the trainer's estimate of its accuracy (said in the log too)."""
    weights = None if o.class_shares == "off" else card_weights(model, events, o.raster)
    entry = map_record.record(model.card, o.model, o.raster, weights is not None)
    line = map_record.estimate_line(entry)
    if line:
        events.info(line)
    return weights, {map_record.TAG: entry}


def _seconds(seconds: float) -> str:
    """'3.4 s', or in ms under a second ('45 ms', not '0.0 s')."""
    return f"{seconds:.1f} s" if seconds >= 1 else f"{1000 * seconds:.0f} ms"


def blank_reason(source) -> str:
    """Why no pixel was classified, in words: the mask misses the raster, or every pixel is nodata/NaN."""
    left, bottom, right, top = source.bounds
    if source.shapes is not None:
        xmin, ymin, xmax, ymax = mask_bounds(source.shapes)
        if xmax < left or xmin > right or ymax < bottom or ymin > top:
            return (f"The classified raster is empty (all no data): the mask polygons ({xmin:.6g}, {ymin:.6g}, "
                    f"{xmax:.6g}, {ymax:.6g}) do not overlap the raster ({left:.6g}, {bottom:.6g}, {right:.6g}, "
                    f"{top:.6g}, in its CRS). Choose a mask over the raster, or check the mask's CRS.")
        where = "inside the mask"
    else:
        where = "in the area classified"
    nodata = "" if source.nodata is None else f" ({source.nodata:g})"
    masked = ", hidden by its own mask" if source.mask is not None else ""
    return (f"The classified raster is empty (all no data): every pixel {where} is the raster's nodata "
            f"value{nodata}{masked} or NaN, so there was nothing to classify. Check the raster (and its nodata "
            f"setting{' and mask' if masked else ''}) or the extent.")


SMALL_RUN_PIXELS = 256 * 256  # runs of fewer pixels keep the whole batch: they pay per call, and hold little


def tiles_per_run(batch_size: int, streams: int, tile: int, fixed_batch: int = None) -> int:
    """Tiles a model run takes when ``streams`` runs go at once: the batch shared between them, so the model holds
    no more tiles at once than one run of the whole batch did (at least one tile a run), unless a run would then
    hold fewer than :data:`SMALL_RUN_PIXELS`. Measured on 2 cores: ResNet-34 U-Net, 256 px tiles, two runs of 2
    tiles at once as fast as two of 4 (5.55-5.61 s against 5.46-5.71 s); a 64 px-chip model at 64 px tiles,
    2 tiles a run made the whole run 1.064x bare onnxruntime against 0.981x at 4. A model exported with a fixed
    batch: that batch."""
    if fixed_batch:
        return fixed_batch
    shared = max(1, batch_size // max(1, streams))
    return max(shared, min(batch_size, -(-SMALL_RUN_PIXELS // (tile * tile))))
