"""Classify raster with model: a net trained here on the real Zion data, compared with torch run on
the whole raster at once (no tiles), so tiling, blending, nodata and writing are checked against an
independent reference."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from classify_models import band_stats, card_for, export, tiny_net, torch_probabilities, train_on_zion
from osgeo import gdal
from rasterio.windows import Window

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.classify.tiling import TileGrid
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import metadata_props
from landcover_plugin.core.model.session import load_model

TILE = 64


@pytest.fixture(scope="module")
def zion(shared_data, tmp_path_factory):
    """The trained net, its ONNX model (full card), and one classification of the whole image."""
    folder = tmp_path_factory.mktemp("zion")
    net, names, mean, std = train_on_zion(shared_data / "zion")
    card = card_for(names, mean=mean, std=std, tile=TILE, input_dtype="uint16", resolution=[30.0, 30.0],
                    crs="EPSG:32612", nodata=65535, overlap=0.25)
    model = export(net, folder / "zion.onnx", 4, TILE, metadata_props(card))
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(image, model, folder / "classes.tif",
                                             confidence=folder / "confidence.tif", batch_size=8), events=events)
    reference = torch_probabilities(net, image, mean, std)
    return {"net": net, "names": names, "mean": mean, "std": std, "card": card, "model": model, "image": image,
            "result": result, "events": events, "reference": reference, "folder": folder}


def read(path, window=None):
    with rasterio.open(path) as src:
        return src.read(1, window=window)


def seam_mask(height, width, tile, overlap, margin=2):
    """Pixels within ``margin`` of an interior tile edge of the grid the classifier used."""
    grid = TileGrid(height, width, tile, overlap)
    rows, cols = np.zeros(height, bool), np.zeros(width, bool)
    for offsets, size, mask in ((grid.row_offsets, height, rows), (grid.col_offsets, width, cols)):
        for start in offsets:
            for edge in (start, start + tile):
                if 0 < edge < size:
                    mask[max(0, edge - margin):edge + margin] = True
    return rows[:, None] | cols[None, :]


def test_output_is_a_styled_geotiff_on_the_input_grid(zion):
    result, image = zion["result"], zion["image"]
    with rasterio.open(image) as src, rasterio.open(result["OUTPUT"]) as out:
        assert (out.crs, out.transform, out.width, out.height) == (src.crs, src.transform, src.width, src.height)
        assert out.dtypes == ("uint8",) and out.nodata == 0 and out.count == 1
        assert out.block_shapes == [(256, 256)] and out.compression.name.lower() == "deflate"
        assert out.overviews(1) == [2, 4, 8]
        colours = out.colormap(1)
        classes = json.loads(out.tags()["landcover_classes"])
    expected = zion["card"]["classes"]
    assert classes == expected
    for item in expected:
        assert colours[item["id"]][:3] == tuple(int(item["colour"][i:i + 2], 16) for i in (1, 3, 5))
    assert colours[0][3] == 0  # nodata is transparent
    categories = gdal.Info(result["OUTPUT"], format="json")["bands"][0]["categories"]
    assert categories[1:len(zion["names"]) + 1] == zion["names"]
    qml = (zion["folder"] / "classes.qml").read_text()
    assert result["QML"] == str(zion["folder"] / "classes.qml")
    assert all(f'label="{name}"' in qml for name in zion["names"])
    assert not [p.name for p in zion["folder"].iterdir() if "partial" in p.name]
    assert result["tiles_run"] == result["tiles"] == len(TileGrid(1428, 1128, TILE, 16))


def test_labels_match_the_whole_raster_run_without_tiles(zion):
    labels = read(zion["result"]["OUTPUT"])
    expected = zion["reference"].argmax(axis=0) + 1
    assert labels.min() >= 1  # the Zion image has no nodata
    disagree = labels != expected
    assert disagree.mean() < 0.002, f"{disagree.mean():.4%} of pixels differ from the untiled run"
    # The net learned something real: the map agrees with NLCD well beyond the most common class.
    nlcd = read(zion["image"].parent / "nlcd2011_8class.tif")
    majority = np.bincount(nlcd[nlcd != 255]).max() / (nlcd != 255).sum()
    assert (labels == nlcd)[nlcd != 255].mean() > majority + 0.02
    # Confidence is the top class probability in percent.
    confidence = read(zion["result"]["CONFIDENCE"]).astype(int)
    top = np.rint(100 * zion["reference"].max(axis=0)).clip(1, 100)
    assert np.abs(confidence - top)[~disagree].mean() < 0.5
    assert np.percentile(np.abs(confidence - top), 99.9) <= 3


def test_no_seams_with_blending_and_seams_without(zion, tmp_path):
    expected = zion["reference"].argmax(axis=0) + 1
    labels = read(zion["result"]["OUTPUT"])
    seams = seam_mask(*labels.shape, TILE, zion["result"]["OVERLAP"])
    blended = (labels != expected)[seams].mean()
    # The same model with no overlap (so no blending): the net's zero padding shows along tile edges.
    hard = classify_raster(ClassifyOptions(zion["image"], zion["model"], tmp_path / "hard.tif",
                                           overlap=0.0), events=RecordingEvents())
    hard_labels = read(hard["OUTPUT"])
    hard_seams = seam_mask(*labels.shape, TILE, 0)
    at_seams = (hard_labels != expected)[hard_seams].mean()
    away = (hard_labels != expected)[~hard_seams].mean()
    assert at_seams > 10 * max(away, 1e-4), "the seam check would not see a seam"
    assert blended < 0.003 and blended < at_seams / 10, f"{blended:.3%} of seam pixels differ when blended"


def test_a_window_classified_as_its_own_raster_matches_the_big_output(zion, tmp_path):
    window = Window(300, 500, 333, 290)
    with rasterio.open(zion["image"]) as src:
        profile = src.profile
        profile.update(width=window.width, height=window.height, transform=src.window_transform(window),
                       tiled=False, blockysize=16)
        piece = tmp_path / "piece.tif"
        with rasterio.open(piece, "w", **profile) as dst:
            dst.write(src.read(window=window))
    small = read(classify_raster(ClassifyOptions(piece, zion["model"],
                                                 tmp_path / "piece_classes.tif"), events=RecordingEvents())["OUTPUT"])
    big = read(zion["result"]["OUTPUT"], window)
    inner = (slice(8, -8), slice(8, -8))  # away from the small raster's own border (the net sees 0 beyond)
    assert (small[inner] != big[inner]).mean() < 0.002


def test_nodata_pixels_give_nodata_and_empty_tiles_are_not_run(zion, tmp_path):
    image = tmp_path / "holes.tif"
    shutil.copy(zion["image"], image)
    with rasterio.open(image, "r+") as dst:
        data = dst.read()
        data[:, 200:520, 100:420] = 65535  # a hole bigger than several tiles
        rng = np.random.default_rng(1)
        rows, cols = rng.integers(0, data.shape[1], 500), rng.integers(0, data.shape[2], 500)
        data[rng.integers(0, 4, 500), rows, cols] = 65535  # scattered pixels, one band each
        dst.write(data)
    invalid = (data == 65535).any(axis=0)
    result = classify_raster(ClassifyOptions(image, zion["model"],
                                             tmp_path / "holes_classes.tif"), events=RecordingEvents())
    labels = read(result["OUTPUT"])
    np.testing.assert_array_equal(labels == 0, invalid)
    grid = TileGrid(*labels.shape, TILE, result["OVERLAP"])
    empty = sum(invalid[t.row:t.row + t.rows, t.col:t.col + t.cols].all() for t in grid)
    assert empty > 0 and result["tiles_skipped"] == empty and result["tiles_run"] == len(grid) - empty
    expected = torch_probabilities(zion["net"], image, zion["mean"], zion["std"]).argmax(axis=0) + 1
    assert (labels != expected)[~invalid].mean() < 0.003


def test_nan_pixels_of_a_float_raster_give_nodata(shared_data, tmp_path):
    image = shared_data / "eolearn" / "sentinel2_13band_composite.tif"
    mean, std = band_stats(image)
    card = card_for(["cultivated", "forest", "grassland"], mean=mean, std=std, tile=32, input_dtype="float32",
                    resolution=[10.0, 10.0])
    net = tiny_net(13, 3, seed=3)
    model = export(net, tmp_path / "s2.onnx", 13, 32, metadata_props(card))
    events = RecordingEvents()
    labels = read(classify_raster(ClassifyOptions(image, model, tmp_path / "s2.tif"), events=events)["OUTPUT"])
    with rasterio.open(image) as src:
        nan = np.isnan(src.read()).any(axis=0)
    assert nan.sum() > 1000
    # 100x101 px in a fraction of a second: its size and times, not 'Classified 0.0 Mpx in 0.1 s (model 0.0 s)'
    done = next(e["message"] for e in events.of_type("log") if e["message"].startswith("Classified "))
    assert done.startswith("Classified 10,100 px in ") and " ms" in done and "0.0 Mpx" not in done, done
    np.testing.assert_array_equal(labels == 0, nan)
    expected = torch_probabilities(net, image, mean, std).argmax(axis=0) + 1
    assert (labels != expected)[~nan].mean() < 0.01
    # A tile larger than the raster: one tile, padded with zeros exactly as the net pads its borders.
    big_tile = export(net, tmp_path / "s2_128.onnx", 13, 128, metadata_props({**card, "tile_size": 128}))
    result = classify_raster(ClassifyOptions(image, big_tile, tmp_path / "s2_128.tif"), events=RecordingEvents())
    assert result["tiles"] == 1
    labels = read(result["OUTPUT"])
    np.testing.assert_array_equal(labels == 0, nan)
    assert (labels != expected)[~nan].mean() < 0.001


def test_extent_and_a_mask_in_another_crs(zion, tmp_path, shared_data):
    with rasterio.open(zion["image"]) as src:
        transform = src.transform
    # An extent that does not fall on pixel edges: snapped outward onto the input grid.
    x0, y0 = transform * (300.3, 700.6)  # (col, row) -> (x, y)
    x1, y1 = transform * (600.2, 400.1)
    park = shared_data / "zion" / "park_boundary.gpkg"
    result = classify_raster(ClassifyOptions(zion["image"], zion["model"], tmp_path / "part.tif",
                                             extent=(x0, y0, x1, y1), mask=park), events=RecordingEvents())
    with rasterio.open(result["OUTPUT"]) as out:
        assert (out.width, out.height) == (301, 301)
        assert out.transform == transform * transform.translation(300, 400)
        labels = out.read(1)
    # The mask, burnt independently by GDAL after reprojecting the park with ogr2ogr.
    park_utm = tmp_path / "park_utm.gpkg"
    gdal.VectorTranslate(str(park_utm), str(park), dstSRS="EPSG:32612")
    bounds = rasterio.transform.array_bounds(301, 301, transform * transform.translation(300, 400))
    burnt = gdal.Rasterize("/vsimem/park.tif", str(park_utm), format="GTiff", outputType=gdal.GDT_Byte,
                           burnValues=[1], width=301, height=301, outputBounds=list(bounds))
    inside = burnt.GetRasterBand(1).ReadAsArray().astype(bool)
    burnt = None
    gdal.Unlink("/vsimem/park.tif")
    assert 0.05 < inside.mean() < 0.95
    assert ((labels > 0) != inside).mean() < 0.002
    big = read(zion["result"]["OUTPUT"], Window(300, 400, 301, 301))
    assert (labels != big)[inside][8:-8].mean() < 0.01


def test_engine_command_line_streams_events(zion, tmp_path):
    output = tmp_path / "cli.tif"
    with rasterio.open(zion["image"]) as src:
        extent = ",".join(str(v) for v in src.xy(700, 300) + src.xy(500, 600))
    completed = subprocess.run(
        [sys.executable, "-m", "landcover_plugin.core.engine", "classify", "--raster", str(zion["image"]),
         "--model", zion["model"], "--output", str(output), "--extent", extent, "--batch-size", "2",
         "--device", "cpu", "--overlap", "25"], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    events = [json.loads(line) for line in completed.stdout.splitlines()]
    assert events[-1]["event"] == "result" and events[-1]["outputs"]["OUTPUT"] == str(output)
    assert any(e["event"] == "progress" for e in events)
    assert any("tiles of 64 px overlapping by 16 px" in e.get("message", "") for e in events)
    assert read(output).min() >= 1


def test_threaded_and_in_turn_pipelines_write_the_same_map(zion, tmp_path):
    with rasterio.open(zion["image"]) as src:
        x0, y0 = src.xy(900, 100)
        x1, y1 = src.xy(600, 500)
    maps = []
    for pipelined in (True, False):
        events = RecordingEvents()
        result = classify_raster(ClassifyOptions(zion["image"], zion["model"], tmp_path / f"p{pipelined}.tif",
                                                 extent=(x0, y0, x1, y1), batch_size=3, threads=2,
                                                 pipelined=pipelined), events=events)
        assert result["pipelined"] is pipelined
        # Threaded: two batches run at once on a thread each, blended in grid order all the same.
        assert result["streams"] == (2 if pipelined else 1)
        # 64 px tiles: each run keeps the whole batch (small runs pay per call; see test_tiles_per_run.py).
        assert result["tiles_per_run"] == 3 and result["BATCH_SIZE"] == 3
        assert any("2 batches at once, 1 thread(s) each" in e.get("message", "") for e in events.events) is pipelined
        assert 0 < result["model_seconds"] <= result["SECONDS"]
        maps.append(read(result["OUTPUT"]))
    np.testing.assert_array_equal(maps[0], maps[1])


def test_streams_share_the_threads_on_the_cpu(zion):
    for threads, streams, each in ((2, 0, 1), (4, 0, 2), (1, 0, 1), (2, 1, 2)):
        model = load_model(zion["model"], device="cpu", threads=threads, streams=streams)
        assert model.streams == (streams or min(2, threads)) and model.threads == threads
        assert model.session.get_session_options().intra_op_num_threads == each
        # no memory pattern on the CPU: its block doubled what the first runs fault in (session.session_options)
        assert model.session.get_session_options().enable_mem_pattern is False


def test_overviews_are_gdal_nearest_of_the_labels(zion, tmp_path):
    """The labels' overviews are built as rows are written: the same pixels GDAL's BuildOverviews would give."""
    labels = read(zion["result"]["OUTPUT"])
    reference = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "ref.tif"), labels.shape[1], labels.shape[0], 1,
                                                     gdal.GDT_Byte)
    reference.GetRasterBand(1).WriteArray(labels)
    reference.BuildOverviews("NEAREST", [2, 4, 8])
    with rasterio.open(zion["result"]["OUTPUT"]) as out:
        assert out.overviews(1) == [2, 4, 8]
    out = gdal.Open(zion["result"]["OUTPUT"])
    for level in range(3):
        expected = reference.GetRasterBand(1).GetOverview(level).ReadAsArray()
        np.testing.assert_array_equal(out.GetRasterBand(1).GetOverview(level).ReadAsArray(), expected)
