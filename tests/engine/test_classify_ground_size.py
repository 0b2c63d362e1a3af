"""The classifier compares a raster's pixel size on the ground with the model's, not its CRS's units: Web Mercator
(EPSG:3857) stretches them by 1/cos(latitude), so Zion's 30 m Landsat pixels are ~37.8 units wide there. Read as
37.8 m, RESAMPLE put them on a 30-unit grid and the model saw everything 1.26x too big. A geographic CRS (EPSG:4326)
has no metres at all: its pixels are measured on the ground too (0.0003 deg: 26.6 m east-west by 33.3 m north-south
at Zion), where they could not be compared or resampled, and a model trained on them recorded 0.0003 m."""
import pytest
import rasterio
from classify_models import card_for, export, train_on_zion
from osgeo import gdal

from landcover_plugin.core.chips.dataset import load_dataset
from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.ground import ground_scale
from landcover_plugin.core.model.card import metadata_props
from landcover_plugin.core.model.metadata import model_resolution_of, read_metadata_props
from landcover_plugin.core.train.options import TrainConfig
from training.loop import train

TILE = 64


@pytest.fixture(scope="module")
def zion(shared_data, tmp_path_factory):
    """A net trained on Zion (UTM 12N, 30 m), its model (30 m), and Zion warped to EPSG:3857."""
    folder = tmp_path_factory.mktemp("ground")
    net, names, mean, std = train_on_zion(shared_data / "zion")
    card = card_for(names, mean=mean, std=std, tile=TILE, input_dtype="uint16", resolution=[30.0, 30.0],
                    crs="EPSG:32612", nodata=65535, overlap=0.25)
    model = export(net, folder / "zion.onnx", 4, TILE, metadata_props(card))
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    mercator = folder / "zion_3857.tif"
    gdal.Warp(str(mercator), str(image), dstSRS="EPSG:3857", resampleAlg="near")  # GDAL keeps ~30 m: ~37.8 units
    wgs84 = folder / "zion_4326.tif"
    gdal.Warp(str(wgs84), str(image), dstSRS="EPSG:4326", resampleAlg="near")  # ~0.0003 deg: 26.6 x 33.3 m
    # a card as the trainer wrote it for a raster in degrees before they were measured on the ground
    in_degrees = card_for(names, mean=mean, std=std, tile=TILE, input_dtype="uint16", resolution=[0.0003, 0.0003],
                          crs=rasterio.crs.CRS.from_epsg(4326).to_wkt(), nodata=65535, overlap=0.25)
    old_model = export(net, folder / "zion_degrees.onnx", 4, TILE, metadata_props(in_degrees))
    return {"model": model, "image": image, "mercator": mercator, "wgs84": wgs84, "folder": folder,
            "old_model": old_model}


def classify(zion, raster, name, **options):
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(raster, zion["model"], zion["folder"] / name, batch_size=8, **options),
                             events=events)
    return result["OUTPUT"], [e["message"] for e in events.of_type("log")]


def agreement_with_the_utm_map(utm_map, other_map, crs="EPSG:3857") -> float:
    """The share of the other map's (Mercator, or ``crs``) classified pixels where the UTM map, warped to its grid,
    agrees."""
    with rasterio.open(other_map) as out:
        bounds, width, height = out.bounds, out.width, out.height
        labels = out.read(1)
    warped = gdal.Warp("", str(utm_map), format="MEM", dstSRS=crs, resampleAlg="near",
                       outputBounds=tuple(bounds), width=width, height=height).ReadAsArray()
    both = (labels > 0) & (warped > 0)
    assert both.mean() > 0.5
    return float((labels[both] == warped[both]).mean())


def test_a_utm_raster_at_the_models_resolution_is_not_resampled(zion):
    path, logs = classify(zion, zion["image"], "utm.tif", resample=True)
    with rasterio.open(path) as out, rasterio.open(zion["image"]) as src:
        assert out.res == (30.0, 30.0) and out.transform == src.transform and out.shape == src.shape
    assert any("already at the model's resolution (30 m): not resampled" in m for m in logs)
    assert not any("on the ground" in m for m in logs)  # UTM's scale factor (~0.9996..1.001) is no stretch


def test_a_web_mercator_raster_is_judged_by_its_size_on_the_ground(zion):
    with rasterio.open(zion["mercator"]) as src:
        units = src.res[0]
    assert 37.0 < units < 38.5
    utm_map, _ = classify(zion, zion["image"], "utm_map.tif")
    path, logs = classify(zion, zion["mercator"], "mercator.tif", resample=True)
    with rasterio.open(path) as out:
        assert out.res[0] == pytest.approx(units)  # 30 m on the ground already: not put on a 30-unit grid
    assert any("in EPSG:3857 units, 30.0 m on the ground at the raster's centre" in m for m in logs)
    assert any("already at the model's resolution (30 m): not resampled" in m for m in logs)
    assert agreement_with_the_utm_map(utm_map, path) >= 0.95


def test_a_web_mercator_raster_is_resampled_to_the_models_size_on_the_ground(zion):
    """Zion warped to 30 EPSG:3857 units (~24 m on the ground): RESAMPLE puts it on ~37.8-unit pixels (30 m)."""
    fine = zion["folder"] / "zion_3857_30units.tif"
    gdal.Warp(str(fine), str(zion["image"]), dstSRS="EPSG:3857", xRes=30, yRes=30, resampleAlg="near")
    with rasterio.open(fine) as src:
        centre = src.transform * (src.width / 2, src.height / 2)
        expected = 30.0 / ground_scale(src.crs.to_wkt(), *centre)
    assert 37.0 < expected < 38.5
    utm_map, _ = classify(zion, zion["image"], "utm_map2.tif")
    path, logs = classify(zion, fine, "fine.tif", resample=True)
    with rasterio.open(path) as out:
        assert out.res[0] == pytest.approx(expected)
    assert any("Resampled (bilinear) from 23.8" in m and "to the model's 30 m per pixel" in m for m in logs)
    assert agreement_with_the_utm_map(utm_map, path) >= 0.9  # resampled twice (warp, then bilinear)


def test_no_resolution_warning_for_a_web_mercator_raster_near_the_models_size_on_the_ground(zion):
    """48 EPSG:3857 units are 38 m on the ground at Zion (1.27x the model's 30 m, no warning); read as 48 m (1.6x)
    they were reported as too coarse."""
    coarse = zion["folder"] / "zion_3857_48units.tif"
    gdal.Warp(str(coarse), str(zion["image"]), dstSRS="EPSG:3857", xRes=48, yRes=48, resampleAlg="average")
    _, logs = classify(zion, coarse, "coarse.tif")
    assert any("48.0 m per pixel in EPSG:3857 units, 38.1 m on the ground" in m for m in logs)
    assert not any("resolution is" in m for m in logs)


def test_a_model_trained_on_web_mercator_records_its_resolution_on_the_ground(zion, shared_data, tmp_path):
    """Chips cut from the Web Mercator raster: the model's card says 30 m (on the ground), not 37.8 (units), so the
    classifier, which compares ground sizes, leaves that same raster as it is when asked to resample."""
    piece, dataset = chips_of_a_piece(zion["mercator"], [300, 200, 192, 192], shared_data, tmp_path)
    assert dataset["resolution"][0] == pytest.approx(zion_units(zion))
    assert dataset["ground_resolution"] == pytest.approx([30.0, 30.0], rel=0.01)
    model = tmp_path / "mercator.onnx"
    train(TrainConfig(dataset_dir=str(tmp_path / "chips"), output=str(model), epochs=1, batch_size=4, base_width=8,
                      patience=0, device="cpu", refit=False), RecordingEvents())
    assert model_resolution_of(model) == pytest.approx(30.0, rel=0.01)
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(piece, str(model), tmp_path / "map.tif", resample=True), events=events)
    with rasterio.open(result["OUTPUT"]) as out, rasterio.open(piece) as src:
        assert out.transform == src.transform and out.shape == src.shape
    assert any("not resampled" in e["message"] for e in events.of_type("log"))


def chips_of_a_piece(raster, window, shared_data, tmp_path) -> tuple:
    """A 192 px piece of ``raster`` (``window``: col, row, width, height) and its chip dataset (NLCD labels)."""
    piece = tmp_path / "piece.tif"
    gdal.Translate(str(piece), str(raster), srcWin=window)
    nlcd = shared_data / "zion" / "nlcd2011_8class.tif"
    export_chips(ChipExportOptions(piece, tmp_path / "chips", labels_raster=nlcd, chip_size=64, stride=64,
                                   min_labelled=0.05, val_fraction=0.25, seed=1))
    return piece, load_dataset(tmp_path / "chips")


def zion_units(zion) -> float:
    with rasterio.open(zion["mercator"]) as src:
        return src.res[0]


def test_a_geographic_raster_is_judged_and_resampled_by_its_size_on_the_ground(zion):
    with rasterio.open(zion["wgs84"]) as src:
        degrees, centre = src.res, src.transform * (src.width / 2, src.height / 2)
    utm_map, _ = classify(zion, zion["image"], "utm_map3.tif")
    path, logs = classify(zion, zion["wgs84"], "wgs84.tif")
    assert any("degrees per pixel in EPSG:4326" in m and "(26.6 m east-west by 33.3 m north-south)" in m
               for m in logs)
    assert not any("resolution is" in m or "cannot be compared" in m for m in logs)  # 29.7 m: the model's 30 m
    assert agreement_with_the_utm_map(utm_map, path, "EPSG:4326") >= 0.9
    path, logs = classify(zion, zion["wgs84"], "wgs84_resampled.tif", resample=True)
    with rasterio.open(path) as out:  # square on the ground at the centre: 30 m each way, so not square in degrees
        assert out.crs.to_epsg() == 4326
        assert out.res[0] == pytest.approx(degrees[0] * 30.0 / 26.57, rel=0.002)
        assert out.res[1] == pytest.approx(degrees[1] * 30.0 / 33.27, rel=0.002)
    assert any("Resampled (bilinear) from 26.6 m x 33.3 m to the model's 30 m per pixel" in m for m in logs)
    assert agreement_with_the_utm_map(utm_map, path, "EPSG:4326") >= 0.85  # resampled twice (warp, then bilinear)
    assert abs(centre[1] - 37.3) < 0.2  # (the latitude the sides above are measured at)


def test_pixels_much_longer_one_way_on_the_ground_are_warned_of(zion):
    """0.0004 x 0.0002 deg at Zion: 35.5 m east-west by 22.2 m north-south, 28 m on average (the model's size), but
    1.6 times longer one way: objects look stretched."""
    stretched = zion["folder"] / "zion_4326_stretched.tif"
    gdal.Warp(str(stretched), str(zion["image"]), dstSRS="EPSG:4326", xRes=0.0004, yRes=0.0002, resampleAlg="near")
    _, logs = classify(zion, stretched, "stretched.tif")
    assert any("0.0004 x 0.0002 degrees per pixel in EPSG:4326" in m for m in logs)
    assert any("35.5 m east-west by 22.2 m north-south" in m and "1.60 times stretched" in m for m in logs)


def test_a_raster_without_a_crs_cannot_be_resampled(zion, tmp_path):
    bare = tmp_path / "no_crs.tif"
    with rasterio.open(zion["image"]) as src:
        profile, pixels = src.profile, src.read(window=((300, 428), (300, 428)))
    profile.update(crs=None, width=128, height=128, transform=rasterio.Affine(30, 0, 0, 0, -30, 0))
    with rasterio.open(bare, "w", **profile) as out:
        out.write(pixels)
    _, logs = classify(zion, bare, "bare.tif")
    assert any("no CRS" in m and "cannot be compared" in m for m in logs)
    with pytest.raises(BadInputError, match="Reproject the raster to a projected CRS"):
        classify(zion, bare, "bare2.tif", resample=True)


def test_a_model_trained_on_a_geographic_raster_records_its_resolution_in_metres(zion, shared_data, tmp_path):
    """Chips cut from Zion in EPSG:4326: the dataset and the card say metres on the ground (26.6 by 33.3; 29.7 m
    for the model), not 0.0003 read as metres, which had the classifier tell the analyst that Zion's own 30 m
    raster was 100,000 times too coarse, and gave Deepness a resolution of 0.03 cm."""
    _, dataset = chips_of_a_piece(zion["wgs84"], [400, 300, 192, 192], shared_data, tmp_path)
    assert dataset["resolution"][0] < 0.001  # degrees, as the CRS says
    assert dataset["ground_resolution"] == pytest.approx([26.57, 33.27], rel=0.002)
    model = tmp_path / "wgs84.onnx"
    train(TrainConfig(dataset_dir=str(tmp_path / "chips"), output=str(model), epochs=1, batch_size=4, base_width=8,
                      patience=0, device="cpu", refit=False), RecordingEvents())
    assert model_resolution_of(model) == pytest.approx(29.73, rel=0.002)
    assert float(read_metadata_props(model)["resolution"]) == pytest.approx(2973, rel=0.002)  # Deepness: cm
    events = RecordingEvents()
    classify_raster(ClassifyOptions(zion["image"], str(model), tmp_path / "utm.tif"), events=events)
    assert not any("resolution is" in e["message"] for e in events.of_type("log"))


def test_an_older_model_that_recorded_degrees_as_metres_is_taken_as_recording_no_resolution(zion):
    assert model_resolution_of(zion["old_model"]) is None
    assert "resolution" not in read_metadata_props(zion["old_model"])  # nor is Deepness told 0.03 cm
    events = RecordingEvents()
    classify_raster(ClassifyOptions(zion["image"], zion["old_model"], zion["folder"] / "old.tif", resample=True),
                    events=events)
    logs = [e["message"] for e in events.of_type("log")]
    assert any("the model does not say its resolution: not resampled" in m for m in logs)
    assert not any("resolution is" in m for m in logs)
