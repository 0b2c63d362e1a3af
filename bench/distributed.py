"""Distributed: the engine's ``classify --dask local:2`` against the single-process ``classify`` on the same VRT
mosaic of the real Zion image (100 Mpx; a small one with --quick), the shards' throughput, the VRT and COG
assembly, and a projection for a 100-gigapixel mosaic on 1, 8 and 64 workers.

Runs alternate (single, Dask, single, ...) so a busy spell does not land on one side only. The Dask run's
overhead is its engine time without the COG (the VRT is the output comparable with the single-process GeoTIFF)
over the single-process time; the target (<= 1.15x on this 2-core machine) is issue 15's.

Projection (written out in docs/user_guide.md, "Classify on a Dask cluster"): wall time(W workers) =
serial + parallel / W, where

- parallel = the mosaic's tiles computed (each shard also runs the tile row above it: counted exactly with the
  engine's own shard plan for W workers) / (tiles a second a worker, measured here in the shards) / W;
- serial = cluster start-up (measured) + the VRT (measured per shard, times the shard count) + the COG (one GDAL
  process reading the VRT: measured Mpx/s, times the area). The COG is optional: the table gives both.

It assumes each worker has what one worker had here (one core of this CPU, its own disk bandwidth) and shared
storage fast enough to feed them: the input read rate it needs is in the table.
"""
import numpy as np
import rasterio

from landcover_plugin.core.classify.shards import plan_shards
from landcover_plugin.core.classify.tiling import tile_offsets

from .assets import mosaic_vrt, speed_model
from .common import ZION_IMAGE, engine, figure, median, target

OVERHEAD_LIMIT = 1.15
PROJECTED_SIDE = 316_228  # a square of 100 gigapixels
PROJECTED_WORKERS = (1, 8, 64)


def run(settings) -> dict:
    model_path, model_text = speed_model(settings, 4)
    work = settings.folder("distributed")
    with rasterio.open(ZION_IMAGE) as src:
        bytes_per_pixel = src.count * np.dtype(src.dtypes[0]).itemsize
    side = 1200 if settings.quick else 10_000
    mosaic = mosaic_vrt(work / f"mosaic_{side}.vrt", side, side)
    single_s, dask_s, cog_s, vrt_s, cluster_s, shard_rates, tile_rates = [], [], [], [], [], [], []
    shards = None
    for _ in range(settings.runs):
        single = engine("classify", "--raster", mosaic, "--model", model_path, "--output", work / "single.tif",
                        "--overwrite", "--device", "cpu", timeout=3600)["result"]
        single_s.append(single["SECONDS"])
        for leftover in work.glob("dask.*"):  # a fresh run each time, no shard reused
            if leftover.is_dir():
                for path in leftover.iterdir():
                    path.unlink()
                leftover.rmdir()
            else:
                leftover.unlink()
        dask = engine("classify", "--raster", mosaic, "--model", model_path, "--output", work / "dask.tif",
                      "--device", "cpu", "--dask", "local:2", timeout=3600)["result"]
        dask_s.append(dask["SECONDS"] - dask["COG_SECONDS"])
        cog_s.append(dask["COG_SECONDS"])
        vrt_s.append(dask["VRT_SECONDS"])
        cluster_s.append(dask["CLUSTER_SECONDS"])
        shards = dask["shards"]
        shard_rates.append(median([mp / s for mp, s in zip(dask["shard_megapixels"], dask["shard_seconds"])]))
        tile_rates.append(sum(dask["shard_tiles"]) / sum(dask["shard_seconds"]))  # tiles computed a worker-second
    megapixels = single["MEGAPIXELS"]
    tile, overlap = single["TILE"], single["OVERLAP"]
    ratio = median(dask_s) / median(single_s)
    cog_rate = megapixels / median(cog_s)
    figures = [
        figure("distributed.single", f"Single process, {megapixels:.0f} Mpx", median(single_s), "s", runs=single_s,
               note=f"{megapixels / median(single_s):.2f} Mpx/s"),
        figure("distributed.local2", f"Dask local:2, {shards} shards (VRT output, cluster start included)",
               median(dask_s), "s", runs=dask_s, ratio=ratio,
               baseline={"label": "single process", "value": median(single_s), "unit": "s", "runs": single_s},
               target=target(ratio, "<=", OVERHEAD_LIMIT, "x"),
               note=f"cluster start {median(cluster_s):.1f} s"),
        figure("distributed.shard_rate", "Shard throughput, one worker (1 core)", median(shard_rates), "Mpx/s",
               runs=shard_rates, note=f"{median(tile_rates):.1f} tiles of {tile} px a second, the row above each "
                                      f"shard included"),
        figure("distributed.vrt", f"VRT over {shards} shards", median(vrt_s), "s", runs=vrt_s),
        figure("distributed.cog", f"COG from the VRT, {megapixels:.0f} Mpx (serial)", median(cog_s), "s", runs=cog_s,
               note=f"{cog_rate:.1f} Mpx/s"),
    ]
    rows, notes = projection(median(tile_rates), tile, overlap, cog_rate, median(vrt_s) / shards,
                             median(cluster_s), bytes_per_pixel)
    for row in rows:
        figures.append(figure(f"distributed.projected_{row['workers']}",
                              f"100 Gpx projected on {row['workers']} worker(s), VRT output", row["hours"], "h",
                              note=f"with the COG {row['hours_cog']:.2f} h; {row['shards']} shards, "
                                   f"{100 * row['extra']:.1f} % extra tiles; serial {row['serial_s']:.0f} s "
                                   f"(+ COG {row['cog_s'] / 3600:.2f} h); input read "
                                   f"{row['read_mb_s']:.0f} MB/s"))
    what = (f"Engine `classify` on a {side}x{side} px VRT mosaic of the Zion image, single process against "
            f"`--dask local:2` (one thread per worker), same model: {model_text}; CPU.")
    return {"what": what, "figures": figures, "notes": notes,
            "details": {"single_seconds": single_s, "dask_seconds": dask_s, "cog_seconds": cog_s,
                        "vrt_seconds": vrt_s, "cluster_seconds": cluster_s, "projection": rows}}


def projection(tile_rate: float, tile: int, overlap: int, cog_rate: float, vrt_per_shard: float,
               cluster_s: float, bytes_per_pixel: int) -> tuple:
    """Rows of the 100-gigapixel projection (see the module's docstring) and the notes that explain them."""
    side = PROJECTED_SIDE
    row_offsets = tile_offsets(side, tile, overlap)
    columns = len(tile_offsets(side, tile, overlap))
    area_mpx = side * side / 1e6
    cog_s = area_mpx / cog_rate
    rows = []
    for workers in PROJECTED_WORKERS:
        shards = plan_shards(row_offsets, side, workers)
        computed_rows = len(row_offsets) + len(shards) - 1  # each shard but the first also runs the row above
        extra = computed_rows / len(row_offsets) - 1
        parallel_s = computed_rows * columns / tile_rate / workers
        serial_s = cluster_s + vrt_per_shard * len(shards)
        hours = (parallel_s + serial_s) / 3600
        rows.append({"workers": workers, "shards": len(shards),
                     "extra": extra, "parallel_s": parallel_s, "serial_s": serial_s, "cog_s": cog_s,
                     "hours": hours, "hours_cog": hours + cog_s / 3600,
                     "read_mb_s": area_mpx * 1e6 * bytes_per_pixel / (parallel_s + serial_s) / 1e6})
    notes = [f"Projection for a {side}x{side} px mosaic ({area_mpx / 1e3:.0f} Gpx; {len(row_offsets)} tile rows of "
             f"{columns} tiles of {tile} px): parallel = tiles computed / the measured shard throughput "
             f"({tile_rate:.1f} tiles a second a worker) / workers; serial = cluster start ({cluster_s:.1f} s) + VRT "
             f"({vrt_per_shard * 1e3:.1f} ms a shard) and, when asked, the COG ({cog_rate:.1f} Mpx/s, one GDAL "
             f"process: {cog_s / 3600:.2f} h whatever the worker count).",
             f"What stays serial: planning and cluster start, the VRT, and above all the COG: at 64 workers it is "
             f"{100 * cog_s / 3600 / rows[-1]['hours_cog']:.0f} % of the wall time. Give a .vrt output (QGIS and GDAL "
             f"read it as one raster) and write the COG only when one file is needed.",
             "Assumes each worker is one core like this machine's and shared storage feeds every worker "
             "(input read rate in the table); the shard counts are the engine's own plan for that many workers."]
    return rows, notes
