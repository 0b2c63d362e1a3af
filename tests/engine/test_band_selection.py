"""Bands end to end through the engine: chips cut from 3 of Zion's 4 bands in another order, a tiny model
trained on them, and the full 4-band raster classified with the card's band mapping, which must give the
same map as a raster made of just those bands."""
import json
import subprocess

import numpy as np
import pytest
import rasterio

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.metadata import read_metadata_props

BANDS = [3, 1, 2]  # red, blue, green of Zion's blue, green, red, NIR
EXTENT = ["329000", "4120000", "335000", "4126000"]  # a 200 x 200 px corner: keeps the classify runs short


def engine(engine_python, repo_root, *args):
    proc = subprocess.run([engine_python, "-m", "landcover_plugin.core.engine", *map(str, args)], cwd=repo_root,
                          capture_output=True, text=True, timeout=600)
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, events, proc.stderr


def logs(events):
    return "\n".join(e["message"] for e in events if e["event"] in ("log", "error"))


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory, engine_python, repo_root):
    folder = tmp_path_factory.mktemp("bands")
    image = shared_data / "zion" / "landsat8_2015_b2345.tif"
    chips = folder / "chips"
    code, events, stderr = engine(engine_python, repo_root, "export-chips", "--image", image, "--output", chips,
                                  "--labels-vector", shared_data / "zion" / "training_polygons_sparse.gpkg",
                                  "--class-field", "class_id", "--chip-size", "32", "--bands", *BANDS)
    assert code == 0, stderr + logs(events)
    export_log = logs(events)
    model = folder / "model.onnx"
    code, events, stderr = engine(engine_python, repo_root, "train", chips, "--output", model, "--epochs", "1",
                                  "--batch-size", "8", "--base-width", "8", "--device", "cpu", "--no-refit",
                                  "--cv-folds", "1")
    assert code == 0, stderr + logs(events)
    card = json.loads(read_metadata_props(str(model))["landcover_card"])
    return {"image": image, "chips": chips, "model": model, "card": card, "folder": folder, "export_log": export_log}


def test_export_reads_only_the_chosen_bands_in_their_order_and_records_them(trained):
    dataset = json.loads((trained["chips"] / "dataset.json").read_text())
    assert dataset["bands"]["source_bands"] == BANDS and dataset["bands"]["source_count"] == 4
    assert dataset["bands"]["count"] == 3 and dataset["bands"]["names"] == ["band 3", "band 1", "band 2"]
    assert "Bands: 3 of the raster's 4, in this order: 3, 1, 2" in trained["export_log"]
    chip = dataset["chips"][0]
    window = rasterio.windows.Window(chip["window"]["col_off"], chip["window"]["row_off"], 32, 32)
    with rasterio.open(trained["chips"] / chip["image"]) as src, rasterio.open(trained["image"]) as full:
        assert src.count == 3
        assert np.array_equal(src.read(), full.read(BANDS, window=window))
    with rasterio.open(trained["image"]) as full:  # the statistics are those of the chosen bands, in order
        data = full.read(BANDS).reshape(3, -1).astype(np.float64)
        valid = (data != 65535).all(axis=0)
        assert np.allclose(dataset["mean"], data[:, valid].mean(axis=1), rtol=1e-6)


def test_the_model_card_records_the_source_bands(trained):
    bands = trained["card"]["bands"]
    assert bands["source_bands"] == BANDS and bands["source_count"] == 4 and bands["count"] == 3
    assert bands["names"] == ["band 3", "band 1", "band 2"]


def test_the_training_report_names_the_source_bands(trained):
    from landcover_plugin.core.train.report import write_training_report

    page = write_training_report(trained["folder"] / "report.html", trained["model"], dataset_dir=trained["chips"])
    text = open(page, encoding="utf-8").read()
    assert "3: band 3, band 1, band 2 (source bands 3, 1, 2 of 4)" in text


def test_the_full_raster_is_classified_with_the_cards_bands_like_a_raster_of_just_those_bands(trained, engine_python,
                                                                                              repo_root):
    folder = trained["folder"]
    subset = folder / "bands_312.tif"
    with rasterio.open(trained["image"]) as src:
        profile = dict(src.profile, count=3)
        with rasterio.open(subset, "w", **profile) as dst:
            dst.write(src.read(BANDS))
    code, events, stderr = engine(engine_python, repo_root, "classify", "--raster", trained["image"], "--model",
                                  trained["model"], "--output", folder / "full.tif", "--extent", ",".join(EXTENT),
                                  "--device", "cpu")
    assert code == 0, stderr + logs(events)
    log = logs(events)
    assert "The model takes 3 bands, in this order: 1 'band 3', 2 'band 1', 3 'band 2'" in log
    assert "reading raster bands 3, 1, 2 (the training source's bands, recorded in the model)" in log
    result = classify_raster(ClassifyOptions(subset, trained["model"], folder / "subset.tif", extent=EXTENT,
                                             device="cpu"), events=RecordingEvents())
    with rasterio.open(folder / "full.tif") as a, rasterio.open(result["OUTPUT"]) as b:
        full, just = a.read(1), b.read(1)
    assert full.shape == just.shape and (full > 0).mean() > 0.9
    assert np.array_equal(full, just)
    # the same bands given by hand in another order feed the model other numbers: another map
    events = RecordingEvents()
    other = classify_raster(ClassifyOptions(trained["image"], trained["model"], folder / "other.tif", extent=EXTENT,
                                            device="cpu", bands=["1", "2", "3"]), events=events)
    assert "reading raster bands 1, 2, 3 (as given)" in logs(events.events)
    with rasterio.open(other["OUTPUT"]) as c:
        assert not np.array_equal(c.read(1), full)


def test_a_wrong_band_count_or_band_is_refused_before_the_run_naming_the_bands(trained, tmp_path):
    two = tmp_path / "two_bands.tif"
    with rasterio.open(trained["image"]) as src:
        with rasterio.open(two, "w", **dict(src.profile, count=2)) as dst:
            dst.write(src.read([1, 2]))
    with pytest.raises(BadInputError) as info:
        classify_raster(ClassifyOptions(two, trained["model"], tmp_path / "out.tif", device="cpu"))
    message = info.value.message
    assert "The raster has too few bands for the model (2 of 3): the model takes 3 bands, in this order: 1 'band 3'" \
        in message
    assert "--bands" not in message and not (tmp_path / "out.tif").exists()  # no choice of its bands can help
    with pytest.raises(BadInputError, match="2 bands given .1, 2. but the model takes 3 bands"):
        classify_raster(ClassifyOptions(trained["image"], trained["model"], tmp_path / "out.tif", bands=[1, 2]))
    with pytest.raises(BadInputError, match="has 4 bands, numbered 1 to 4; band 5 does not exist"):
        classify_raster(ClassifyOptions(trained["image"], trained["model"], tmp_path / "out.tif", bands=[5, 1, 2]))
