"""The files of a Dask classify run: where they go, the shard plan, resume, and the VRT / COG assembly.

For ``--output NAME.tif`` or ``NAME.vrt`` the run writes, beside it:

- ``NAME.shards/shard_00000.tif`` ...: one classified GeoTIFF per shard (whole tile rows of the area), each
  written under a temporary name and renamed when complete (:class:`..classified_raster.ClassifiedRasterWriter`),
  then marked done by ``shard_00000.json`` (also written to a temporary name and renamed);
- ``NAME.shards/manifest.json``: the settings the shards were made with (the model's SHA-256, the raster's
  size and time, tile, overlap, extent, mask, ...) and the shard rows. A rerun with the same settings keeps the
  shards marked done (resume); with other settings every shard is made again, so a stale shard is never reused;
- ``NAME.vrt``: a VRT over the shards with the colour table, category names and ``landcover_classes`` tag of a
  classified raster, and ``NAME.qml``;
- ``NAME.tif`` when asked (``--cog``, or an output ending in .tif): one Cloud-Optimised GeoTIFF (GDAL's COG
  driver: 256 px tiles, DEFLATE, nearest-neighbour overviews) with the same colour table, class names (in the
  ``.aux.xml``, as a single-process output) and tag.
"""
import hashlib
import json
import os
import time
from pathlib import Path

from osgeo import gdal

from ..classified_raster import category_names, colour_table
from ..errors import BadInputError, Cancelled, write_failure
from ..output_folder import file_in_place, remove_stale
from ..output_paths import check_output_path, partial_path
from ..qml import write_paletted_qml

MANIFEST = "manifest.json"
# Each shard but the first also runs the tile row above it (the overlap): fewer, taller shards do less extra
# work, more shards balance the workers better and resume at a finer grain. A whole number of shards per worker,
# at most SHARDS_PER_WORKER, each at least MIN_SHARD_TILE_ROWS tile rows (<= 1/16 more work) when the area allows.
SHARDS_PER_WORKER = 4
MIN_SHARD_TILE_ROWS = 16
COG_OPTIONS = ["COMPRESS=DEFLATE", "LEVEL=4", "BLOCKSIZE=256", "OVERVIEW_RESAMPLING=NEAREST", "BIGTIFF=IF_SAFER",
               "NUM_THREADS=ALL_CPUS"]


def output_paths(o) -> dict:
    """``{"vrt", "cog" (or None), "shards", "qml", "output"}`` for a Dask run; refuses what cannot be written."""
    output = os.path.abspath(os.fspath(o.output))
    stem, ext = os.path.splitext(output)
    if ext.lower() not in (".tif", ".tiff", ".vrt"):
        raise BadInputError(f"The output {output} must end in .vrt (a VRT over the shards) or .tif (one "
                            f"Cloud-Optimised GeoTIFF) for a Dask run.")
    inputs = (os.fspath(o.raster), os.fspath(o.model), os.fspath(o.mask) if o.mask else None)
    cog = None
    if ext.lower() != ".vrt" or o.cog:
        cog = check_output_path(output if ext.lower() != ".vrt" else stem + ".tif", overwrite=o.overwrite,
                                inputs=inputs)
    vrt = stem + ".vrt"
    if os.path.exists(vrt) and not o.overwrite:
        raise BadInputError(f"The output {vrt} already exists: choose another path, or allow overwriting "
                            f"(--overwrite).")
    for other in inputs:
        if other and os.path.exists(other) and os.path.exists(vrt) and os.path.samefile(vrt, other):
            raise BadInputError(f"The output {vrt} is also an input: choose another output path.")
    return {"vrt": vrt, "cog": cog, "shards": stem + ".shards", "qml": stem + ".qml", "output": cog or vrt}


def fingerprint(o, tile: int, overlap_px: int) -> dict:
    """What decides a shard's pixels: a shard made with anything else here differing is stale."""
    def identity(path):
        if not path:
            return None
        path = os.path.abspath(os.fspath(path))
        stat = os.stat(path)
        return {"path": path, "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    return {"model_sha256": file_sha256(o.model), "raster": identity(o.raster), "mask": identity(o.mask),
            "tile": int(tile), "overlap_px": int(overlap_px), "extent": list(o.extent) if o.extent else None,
            "resample": bool(o.resample), "bands": [int(b) for b in o.bands] if o.bands else None,
            "device": o.device, "class_names": o.class_names, "mean": o.mean, "std": o.std}


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan_shards(row_offsets: list, height: int, workers: int, tile_rows: int = 0) -> list:
    """``[(r0, r1), ...]``: shards of whole tile rows covering ``height`` area rows; ``tile_rows`` per shard when
    given, else a whole number of shards per worker (see SHARDS_PER_WORKER), the tile rows spread evenly."""
    total, workers = len(row_offsets), max(1, int(workers))
    if tile_rows:
        first_rows = range(0, total, max(1, min(int(tile_rows), total)))
    else:
        count = min(total, workers * min(SHARDS_PER_WORKER, max(1, total // (workers * MIN_SHARD_TILE_ROWS))))
        first_rows = [i * total // count for i in range(count)]
    starts = [row_offsets[g] for g in first_rows]
    return [(r0, r1) for r0, r1 in zip(starts, starts[1:] + [height])]


def shard_name(index: int) -> str:
    return f"shard_{index:05d}"


def prepare_folder(folder: str, settings: dict, tile_rows_asked: int, new_plan, events) -> tuple:
    """Create or reuse the shards folder: ``(shards, done)``, the shards' rows and the indices already done.

    ``new_plan()`` gives the shards of a fresh run; a manifest with the same settings keeps its own plan (the
    worker count may differ between runs), unless another shard size is asked for."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"Cannot create the shards folder {folder} ({write_failure(exc, folder)}). Choose an "
                            f"output folder you can write to.") from exc
    manifest = _read_json(folder / MANIFEST)
    if manifest and manifest.get("settings") == settings and (
            not tile_rows_asked or tile_rows_asked == manifest.get("tile_rows")):
        shards = [tuple(rows) for rows in manifest["shards"]]
        done = [i for i, rows in enumerate(shards) if shard_done(folder, i, rows, settings)]
        if done:
            events.info(f"Resuming: {len(done)} of {len(shards)} shards in {folder} are complete and kept.")
        return shards, done
    old = sorted(folder.glob("shard_*"))
    if manifest or old:
        events.info(f"The shards in {folder} were made with other settings (model, raster or tiling): "
                    f"all are made again.")
    for path in old + [folder / MANIFEST]:
        if path.is_file():
            path.unlink()
    shards = new_plan()
    write_json_atomic(folder / MANIFEST, {"settings": settings, "tile_rows": tile_rows_asked,
                                          "shards": [list(rows) for rows in shards]})
    return shards, []


def shard_done(folder, index: int, rows, settings: dict) -> bool:
    marker = _read_json(Path(folder) / f"{shard_name(index)}.json")
    return bool(marker and marker.get("settings") == settings and tuple(marker.get("rows", ())) == tuple(rows)
                and (Path(folder) / f"{shard_name(index)}.tif").is_file())


def write_json_atomic(path, value) -> None:
    """Write JSON under a temporary name and rename it: a reader sees the whole file or none."""
    with file_in_place(path, "") as temporary:
        Path(temporary).write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")


def _read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- assembly ---------------------------------------------------------------------------------------
def assemble(paths: dict, shard_files: list, classes: list, events, tags: dict = None) -> dict:
    """Write the VRT over ``shard_files`` (in row order), the .qml, and the COG when asked; returns the
    outputs with the seconds each took (``VRT_SECONDS``, ``COG_SECONDS``). ``tags``: more metadata items of the
    map, as a single run writes them (the COG copies the VRT's)."""
    gdal.UseExceptions()
    outputs = {}
    tick = time.perf_counter()
    vrt = paths["vrt"]
    remove_stale(vrt)
    with file_in_place(vrt, "the VRT ", ".vrt") as temporary:  # beside it: the shard paths stay relative
        dataset = gdal.BuildVRT(temporary, [str(p) for p in shard_files])
        _describe(dataset, classes, tags)
        dataset = None  # noqa: F841 - closing writes the VRT
    outputs["VRT"] = vrt
    outputs["VRT_SECONDS"] = round(time.perf_counter() - tick, 3)
    outputs["QML"] = write_paletted_qml(paths["qml"], classes)
    if paths["cog"]:
        tick = time.perf_counter()
        outputs["COG"] = write_cog(vrt, paths["cog"], classes, events)
        outputs["COG_SECONDS"] = round(time.perf_counter() - tick, 3)
    return outputs


def _describe(dataset, classes: list, tags: dict = None) -> None:
    """The classified raster's colour table, nodata, category names, class tag and ``tags`` on a dataset."""
    band = dataset.GetRasterBand(1)
    band.SetNoDataValue(0)
    band.SetRasterColorTable(colour_table(classes))
    band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    band.SetCategoryNames(category_names(classes))
    dataset.SetMetadataItem("landcover_classes", json.dumps(classes))
    for key, value in (tags or {}).items():
        dataset.SetMetadataItem(key, json.dumps(value))


def write_cog(vrt: str, target: str, classes: list, events) -> str:
    """One Cloud-Optimised GeoTIFF from the VRT (progress 0.95 -> 1; cancel removes the partial file)."""
    temp = partial_path(target)
    remove_stale(target)

    reached = [0.0]  # the COG driver may report several passes, each from 0 to 1: progress never goes back

    def callback(fraction, _message, _data):
        reached[0] = max(reached[0], min(fraction, 0.999))
        events.progress(0.95 + 0.05 * reached[0], "writing the Cloud-Optimised GeoTIFF")
        return 0 if events.cancel_requested else 1

    try:
        try:
            dataset = gdal.Translate(temp, vrt, format="COG", creationOptions=COG_OPTIONS, callback=callback)
        except RuntimeError as exc:
            if events.cancel_requested:
                raise Cancelled("Cancelled while writing the Cloud-Optimised GeoTIFF; the shards and the VRT "
                                "are kept: run the same command again to write it.") from exc
            raise BadInputError(f"Writing the Cloud-Optimised GeoTIFF {target} failed: {exc}. Check the free space "
                                f"at {os.path.dirname(target)}; the shards and the VRT are kept.") from exc
        dataset = None  # noqa: F841 - closes the file
        dataset = gdal.Open(temp)  # read-only: the category names go to the .aux.xml, as a single-process output
        dataset.GetRasterBand(1).SetCategoryNames(category_names(classes))
        dataset = None
        for suffix in (".aux.xml",):
            if os.path.exists(target + suffix):
                os.remove(target + suffix)
            if os.path.exists(temp + suffix):
                os.replace(temp + suffix, target + suffix)
        os.replace(temp, target)
    finally:
        for leftover in (temp, temp + ".aux.xml"):
            if os.path.exists(leftover):
                os.remove(leftover)
    return target
