"""One chip dataset from several rasters ('Export label chips' with --add): Zion's labelled west cut into a northern
and a southern scene, each exported onto the same dataset with the sparse polygons. The second scene holds classes
the first has none of, and their chips share window offsets, so ids, file names and grids must be kept apart."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from osgeo import gdal

from landcover_plugin.core.assess.training_pixels import TrainingPixels
from landcover_plugin.core.chips.dataset import RASTER_ROWS, load_dataset, load_spec
from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY
from landcover_plugin.core.model.map_record import training_images
from landcover_plugin.core.model.metadata import read_metadata_props
from landcover_plugin.core.train.options import TrainConfig
from landcover_plugin.core.train.report import write_training_report
from training.dataset import ChipStore
from training.folds import plan_folds
from training.loop import train

gdal.UseExceptions()
CHIP = 32


@pytest.fixture(scope="module")
def scenes(shared_data, tmp_path_factory):
    """The north and south halves of the west 60 % of the Zion image (where the polygons are), as two GeoTIFFs."""
    folder = tmp_path_factory.mktemp("scenes")
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    with rasterio.open(image) as src:
        width, half = int(src.width * 0.6), src.height // 2
        height = src.height
    north, south = folder / "north.tif", folder / "south.tif"
    gdal.Translate(str(north), str(image), srcWin=[0, 0, width, half])
    gdal.Translate(str(south), str(image), srcWin=[0, half, width, height - half])
    return {"north": north, "south": south, "folder": folder}


def options(image, output, shared_data, **more):
    return ChipExportOptions(image=str(image), output=str(output), chip_size=CHIP, add=True,
                             labels_vector=str(shared_data / "zion" / "training_polygons_sparse.gpkg"),
                             class_field="class", **more)


@pytest.fixture(scope="module")
def both(scenes, shared_data):
    """The dataset of both scenes, and the north scene's own dataset.json as it was before the south was added."""
    folder = scenes["folder"] / "chips"
    export_chips(options(scenes["north"], folder, shared_data), RecordingEvents())
    north = json.loads((folder / "dataset.json").read_text())
    events = RecordingEvents()
    summary = export_chips(options(scenes["south"], folder, shared_data), events)
    south_alone = export_chips(options(scenes["south"], scenes["folder"] / "south_alone", shared_data),
                               RecordingEvents())
    return {"folder": folder, "north": north, "summary": summary, "events": events, "south_alone": south_alone,
            "dataset": json.loads((folder / "dataset.json").read_text())}


def valid_pixels(*paths):
    values = []
    for path in paths:
        with rasterio.open(path) as src:
            data = src.read().reshape(src.count, -1).astype(np.float64)
            values.append(data[:, (data != src.nodata).all(axis=0)])
    return np.concatenate(values, axis=1)


def test_the_second_raster_adds_its_chips_under_names_of_their_own(both, scenes):
    dataset, north = both["dataset"], both["north"]
    south = [chip for chip in dataset["chips"] if chip.get("source") == 1]
    assert dataset["chips"][:len(north["chips"])] == north["chips"]  # the first raster's chips untouched
    assert len(south) == both["south_alone"]["chips"] > 0 and len(dataset["chips"]) == len(north["chips"]) + len(south)
    ids = [chip["id"] for chip in dataset["chips"]]
    assert len(set(ids)) == len(ids) and all(chip["id"].startswith("s2_") for chip in south)
    shared_windows = {(c["window"]["row_off"], c["window"]["col_off"]) for c in north["chips"]} & {
        (c["window"]["row_off"], c["window"]["col_off"]) for c in south}
    assert shared_windows  # the two rasters' chips share offsets: only the names keep them apart
    for chip in dataset["chips"]:
        assert (both["folder"] / chip["image"]).is_file() and (both["folder"] / chip["label"]).is_file()
    with rasterio.open(both["folder"] / south[0]["image"]) as chip, rasterio.open(scenes["south"]) as src:
        w = south[0]["window"]  # georeferenced in its own raster
        assert chip.transform == src.window_transform(((w["row_off"], w["row_off"] + CHIP),
                                                      (w["col_off"], w["col_off"] + CHIP)))
    assert [s["image"] for s in dataset["sources"]] == [str(scenes["north"]), str(scenes["south"])]
    # each raster's way from the dataset's folder (the added one exported through a hidden folder a level deeper)
    assert [s["image_from_chips"] for s in dataset["sources"]] == ["../north.tif", "../south.tif"]
    assert dataset["source"]["image_from_chips"] == "../north.tif"
    assert [s["chips"] for s in dataset["sources"]] == [len(north["chips"]), len(south)]
    assert not [p for p in scenes["folder"].iterdir() if p.name.startswith(".")]  # no hidden folder left
    logs = both["events"].of_type("log")
    assert any("of 2 rasters" in e["message"] for e in logs)
    # the south has no Water polygon, the north has: told of the raster, not warned of as the model's
    assert "No training pixels in this raster for: Water." in [e["message"] for e in logs]
    assert not [e for e in logs if e["level"] == "warning" and ("Water" in e["message"] or "Few training polygons"
                                                                 in e["message"])]


def test_band_statistics_are_those_of_every_valid_pixel_of_both_rasters(both, scenes):
    pixels = valid_pixels(scenes["north"], scenes["south"])
    dataset = both["dataset"]
    assert dataset["valid_pixels"] == pixels.shape[1]
    assert dataset["mean"] == pytest.approx(pixels.mean(axis=1).tolist(), rel=1e-9)
    assert dataset["std"] == pytest.approx(pixels.std(axis=1).tolist(), rel=1e-9)
    assert dataset["mean"] != pytest.approx(both["north"]["mean"], rel=1e-3)


def test_classes_keep_their_values_and_new_ones_come_after(both):
    north = {c["name"]: c["id"] for c in both["north"]["classes"]}
    merged = {c["name"]: c["id"] for c in both["dataset"]["classes"]}
    new = sorted(set(merged) - set(north))
    assert new and all(merged[name] == north[name] for name in north)
    assert sorted(merged[name] for name in new) == list(range(max(north.values()) + 1, max(north.values()) + 1
                                                             + len(new)))
    # the label chips of the second raster hold the merged ids; the pixel counts add up over both rasters
    found = np.zeros(256, dtype=np.int64)
    for chip in both["dataset"]["chips"]:
        with rasterio.open(both["folder"] / chip["label"]) as src:
            found += np.bincount(src.read(1).ravel(), minlength=256)
    counted = both["dataset"]["class_pixels"]
    assert {int(k): v for k, v in counted.items() if v} == {i: int(found[i]) for i in np.flatnonzero(found) if i}
    south_names = both["south_alone"]["class_pixels"]
    assert both["summary"]["class_pixels"] == {
        name: both["north"]["summary"]["class_pixels"].get(name, 0) + south_names.get(name, 0) for name in merged}


def test_cross_validation_lays_the_rasters_on_their_common_grid(both):
    """The two scenes are parts of one grid: each labelled pixel of each is scored once, where it lies on it (laid
    by their windows alone, chips of the two at the same offsets would be taken for one place)."""
    spec = load_spec(both["folder"])
    assert {chip.shift for chip in spec.chips if chip.source == 1} == {(both["north"]["chips"] and
                                                                       _rows_of(spec, 0), 0)}
    store = ChipStore(spec, 64, RecordingEvents())
    plan = plan_folds(store.labels, [chip.place for chip in spec.chips], 4, 0)
    assert int(plan.scored.sum()) == sum(both["dataset"]["distinct_class_pixels"].values())


def _rows_of(spec, source):
    with rasterio.open(spec.sources[source]["image"]) as src:
        return src.height


def test_two_dates_of_one_place_are_held_out_together(both, scenes, shared_data, tmp_path):
    """The north scene and a copy standing for another date of it: the same places, so cross-validation sees each
    polygon once (one group over both dates, held out on both), never trains on one date of a polygon and scores
    the other."""
    folder = tmp_path / "dates"
    other_date = tmp_path / "north_2016.tif"
    gdal.Translate(str(other_date), str(scenes["north"]))
    export_chips(options(scenes["north"], folder, shared_data), RecordingEvents())
    alone = load_spec(folder)
    plan_alone = plan_folds(ChipStore(alone, 64, RecordingEvents()).labels, [c.place for c in alone.chips], 4, 0)
    export_chips(options(other_date, folder, shared_data), RecordingEvents())
    spec = load_spec(folder)
    assert len(spec.chips) == 2 * len(alone.chips) and {chip.shift for chip in spec.chips} == {(0, 0)}
    plan = plan_folds(ChipStore(spec, 64, RecordingEvents()).labels, [c.place for c in spec.chips], 4, 0)
    assert plan.groups == plan_alone.groups and int(plan.scored.sum()) == int(plan_alone.scored.sum())
    second = np.array([spec.chips[i].source == 1 for i in plan.chip])
    for fold in range(plan.folds):  # a fold holds a place out on both dates or on neither
        assert (plan.fold[second] == fold).sum() == (plan.fold[~second] == fold).sum()


def test_a_model_of_both_rasters_names_them_and_assess_finds_its_training_pixels_on_either(both, scenes):
    model = both["folder"].parent / "both.onnx"
    train(TrainConfig(dataset_dir=str(both["folder"]), output=str(model), epochs=1, batch_size=8, base_width=8,
                      patience=0, device="cpu", refit=False), RecordingEvents())
    card = json.loads(read_metadata_props(model)[CARD_KEY])
    assert card["source"]["images"] == [str(scenes["north"]), str(scenes["south"])]
    page = Path(write_training_report(both["folder"].parent / "report.html", model,
                                      dataset_dir=both["folder"])).read_text()
    assert "Source image 2" in page and str(scenes["south"]) in page and "Labels 2" in page
    result = classify_raster(ClassifyOptions(scenes["south"], str(model), both["folder"].parent / "south_map.tif"),
                             RecordingEvents())
    with rasterio.open(result["OUTPUT"]) as out:
        record = json.loads(out.tags()["landcover_model"])
        shape, transform, crs = out.shape, out.transform, out.crs
    assert record["same_raster"] is True and record["training_raster"] == "north.tif, south.tif"
    assert record["chips_trained"] == "train"
    taught = TrainingPixels.from_record(record, crs).mask(transform, _bounds(transform, shape), shape)
    data = load_dataset(both["folder"])
    south_taught = sum(data["sources"][1]["summary"]["train_class_pixels"].values())
    assert int(taught.sum()) == south_taught  # the south's training pixels, none of the north's


def test_both_rasters_moved_with_their_chips_are_read_there_and_the_card_keeps_where_they_were(both, scenes,
                                                                                              tmp_path):
    """The project folder (two rasters, one chip dataset) trained elsewhere: each raster is read from its place beside
    the chips there, and the card keeps the paths the exports recorded, which the model uses once home again."""
    server = tmp_path / "server"
    moved = Path(shutil.move(scenes["folder"], server))
    try:
        events = RecordingEvents()
        model = tmp_path / "moved.onnx"
        train(TrainConfig(dataset_dir=str(moved / "chips"), output=str(model), epochs=1, batch_size=8, base_width=8,
                          patience=0, device="cpu", refit=False), events)
        card = json.loads(read_metadata_props(model)[CARD_KEY])
    finally:
        shutil.move(moved, scenes["folder"])  # home again, as the other tests expect it
    there = [str((moved / name).resolve()) for name in ("north.tif", "south.tif")]
    assert card["source"]["images"] == there
    assert card["source"]["images_recorded"] == [str(scenes["north"]), str(scenes["south"])]
    assert training_images(card) == [str(scenes["north"]), str(scenes["south"])]  # here, at home
    said = [e["message"] for e in events.of_type("log") if "where the export recorded it" in e["message"]]
    assert len(said) == 2 and there[1] in said[1]


def _bounds(transform, shape):
    left, top = transform * (0, 0)
    right, bottom = transform * (shape[1], shape[0])
    return (min(left, right), min(top, bottom), max(left, right), max(top, bottom))


def test_a_raster_that_does_not_fit_leaves_the_dataset_as_it_was(both, scenes, shared_data, tmp_path):
    folder = both["folder"]
    before = (folder / "dataset.json").read_bytes()
    files = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    another, eight_bit, zero = tmp_path / "south_copy.tif", tmp_path / "south_8bit.tif", tmp_path / "south_0.tif"
    gdal.Translate(str(another), str(scenes["south"]))
    gdal.Translate(str(zero), str(scenes["south"]), noData=0)
    gdal.Translate(str(eight_bit), str(scenes["south"]), outputType=gdal.GDT_Byte, scaleParams=[[]], noData=255)
    refusals = [
        (another, dict(bands=[1, 2, 3]), "gives 3 bands"),                         # another band count
        (eight_bit, {}, "holds uint8 pixels, the chip dataset .* uint16"),         # another pixel type
        (zero, {}, "has the nodata value 0, the rasters of the chip dataset .* 65535"),  # another nodata value
        (another, dict(chip_size=CHIP * 2), f"chips of {CHIP} px; this export asks for {2 * CHIP}"),  # before export
    ]
    for image, more, said in refusals:
        opts = options(image, folder, shared_data)
        for key, value in more.items():
            setattr(opts, key, value)
        with pytest.raises(BadInputError, match=said):
            export_chips(opts, RecordingEvents())
    with pytest.raises(BadInputError, match="already in the chip dataset"):
        export_chips(options(scenes["north"], folder, shared_data), RecordingEvents())
    assert (folder / "dataset.json").read_bytes() == before
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == files
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]


def test_what_a_killed_adding_run_left_is_removed_by_the_next(both, scenes, shared_data, tmp_path):
    folder = tmp_path / "chips"
    export_chips(options(scenes["north"], folder, shared_data), RecordingEvents())
    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                             text=True).stdout)  # a process that has ended: a run killed while exporting the raster
    dead = tmp_path / f".chips.partial-{pid}.adding"
    (dead / "chips" / "images").mkdir(parents=True)
    (dead / f".chips.partial-{pid}").mkdir()
    export_chips(options(scenes["south"], folder, shared_data), RecordingEvents())
    assert not dead.exists() and [p.name for p in tmp_path.iterdir()] == ["chips"]
    assert len(json.loads((folder / "dataset.json").read_text())["sources"]) == 2


def test_a_raster_in_another_crs_is_kept_apart_on_the_grid(scenes, shared_data, tmp_path):
    """The south scene warped to UTM 13N: its pixels are not the north's grid's, so cross-validation sets them
    apart (and counts each of its labelled pixels once)."""
    warped = tmp_path / "south_13n.tif"
    gdal.Warp(str(warped), str(scenes["south"]), dstSRS="EPSG:32613", xRes=30, yRes=30)
    folder = tmp_path / "chips"
    export_chips(options(scenes["north"], folder, shared_data), RecordingEvents())
    export_chips(options(warped, folder, shared_data), RecordingEvents())
    spec = load_spec(folder)
    assert {chip.shift for chip in spec.chips} == {(0, 0), (2 * RASTER_ROWS, 0)}
    plan = plan_folds(ChipStore(spec, 64, RecordingEvents()).labels, [c.place for c in spec.chips], 4, 0)
    assert int(plan.scored.sum()) == sum(json.loads((folder / "dataset.json").read_text())[
        "distinct_class_pixels"].values())


def test_rasters_whose_bands_were_chosen_differently_are_each_read_by_their_own_choice(scenes, shared_data, tmp_path):
    """The south scene delivered as 5 bands (NIR first, then blue, green, red, NIR), exported with bands 2-5: the
    model records both choices, and Classify reads the 5-band raster's bands 2-5 and the 4-band one's 1-4."""
    stacked = tmp_path / "south_5band.tif"
    gdal.Translate(str(stacked), str(scenes["south"]), bandList=[4, 1, 2, 3, 4])
    folder = tmp_path / "chips"
    export_chips(options(scenes["north"], folder, shared_data), RecordingEvents())
    events = RecordingEvents()
    export_chips(options(stacked, folder, shared_data, bands=[2, 3, 4, 5]), events)
    assert any("were chosen as bands 2, 3, 4, 5 of a 5-band raster" in e["message"] for e in events.of_type("log"))
    model = tmp_path / "model.onnx"
    train(TrainConfig(dataset_dir=str(folder), output=str(model), epochs=1, batch_size=8, base_width=8,
                      patience=0, device="cpu", refit=False), RecordingEvents())
    bands = json.loads(read_metadata_props(model)[CARD_KEY])["bands"]
    assert bands["source_choices"] == [{"source_bands": [1, 2, 3, 4], "source_count": 4},
                                       {"source_bands": [2, 3, 4, 5], "source_count": 5}]
    maps = {}
    for name, image in (("four", scenes["south"]), ("five", stacked)):
        said = RecordingEvents()
        result = classify_raster(ClassifyOptions(image, str(model), tmp_path / f"{name}.tif"), said)
        with rasterio.open(result["OUTPUT"]) as out:
            maps[name] = out.read(1)
    assert any("training raster of 5 bands" in e["message"] for e in said.of_type("log"))
    assert np.array_equal(maps["four"], maps["five"])  # the same pixels read, band for band
    six = tmp_path / "south_6band.tif"
    gdal.Translate(str(six), str(scenes["south"]), bandList=[4, 1, 2, 3, 4, 4])
    with pytest.raises(BadInputError, match="bands 1, 2, 3, 4 of a 4-band raster; bands 2, 3, 4, 5 of a 5-band"):
        classify_raster(ClassifyOptions(six, str(model), tmp_path / "six.tif"), RecordingEvents())


def test_other_polygons_of_the_same_layer_on_the_same_raster_are_added_and_polygons_again_refused(
        scenes, shared_data, tmp_path):
    """An analyst's second round of polygons on the same scene: the odd features first, then the even ones are
    added; then the whole layer, half of it in already, is refused, the dataset left as it was."""
    folder = tmp_path / "chips"
    export_chips(options(scenes["north"], folder, shared_data, fids=list(range(1, 41, 2))), RecordingEvents())
    events = RecordingEvents()
    export_chips(options(scenes["north"], folder, shared_data, fids=list(range(2, 41, 2))), events)
    dataset = json.loads((folder / "dataset.json").read_text())
    assert len(dataset["sources"]) == 2 and {chip.get("source", 0) for chip in dataset["chips"]} == {0, 1}
    assert not [e for e in events.of_type("log") if "labelled on" in e["message"]]
    assert any("of 1 raster (north.tif, 2 exports)" in e["message"] for e in events.of_type("log"))
    before = (folder / "dataset.json").read_bytes()
    with pytest.raises(BadInputError, match=r"of the [\d,]+ labelled pixels of these labels are labelled on north.tif "
                                            r"already \(raster 1 of the chip dataset"):
        export_chips(options(scenes["north"], folder, shared_data), RecordingEvents())
    with pytest.raises(BadInputError, match="with these labels is already in the chip dataset"):
        export_chips(options(scenes["north"], folder, shared_data, fids=list(range(2, 41, 2))), RecordingEvents())
    assert (folder / "dataset.json").read_bytes() == before
