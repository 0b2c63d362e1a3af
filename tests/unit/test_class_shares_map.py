"""A model trained on polygons keeps the scene's class shares in its card, and the classifier weighs each tile's
probabilities by them (core/model/class_shares.py): the map is the argmax of the weighed probabilities, and
``class_shares="off"`` gives the model's own."""
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.classify.source import open_source
from landcover_plugin.core.classify.tiling import TileGrid
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY
from landcover_plugin.core.model.class_shares import FLOOR, KEPT, STRENGTH, vanishing
from landcover_plugin.core.model.session import load_model
from landcover_plugin.core.train.options import TrainConfig
from training.loop import train


@pytest.fixture(scope="module")
def trained(chips, tmp_path_factory):
    events = RecordingEvents()
    out = tmp_path_factory.mktemp("shares") / "model.onnx"
    train(TrainConfig(dataset_dir=str(chips), output=str(out), epochs=3, batch_size=4, base_width=8,
                      learning_rate=3e-3, patience=0, device="cpu", cv_folds=1), events)
    card = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}[CARD_KEY])
    return out, card, events


def test_the_card_keeps_the_scene_class_shares_and_the_weights_they_give(chips, trained):
    _, card, events = trained
    entry = card["class_shares"]
    ids = [c["id"] for c in card["classes"]]
    assert entry["class_ids"] == ids and len(entry["weights"]) == len(ids) == 4
    assert max(entry["weights"]) == pytest.approx(1.0) and min(entry["weights"]) > 0
    assert sum(entry["scene_shares"]) == pytest.approx(1.0, abs=1e-4) and min(entry["scene_shares"]) >= 0.9 * FLOOR
    # the learned prior: training pixels times the class-weighted loss's weights (inverse square root): flatter
    pixels = json.loads((chips / "dataset.json").read_text())["distinct_class_pixels"]
    counts = np.array([pixels[str(i)] for i in ids], dtype=float)
    assert np.argmax(entry["learned_shares"]) == np.argmax(counts)
    assert max(entry["learned_shares"]) < counts.max() / counts.sum()
    assert entry["source"].endswith("landsat5_1988_7band.tif") and entry["sample_pixels"] > 1000
    logs = [e["message"] for e in events.of_type("log")]
    # This weak model (3 epochs of a tiny net) leads EM astray, as a rstoolbox model of the quality bench did:
    # fallen_dry gets most of the scene though the model's own map gives it less than it learned. The card takes
    # the map's own counts instead, keeps EM's shares beside them, and the log says so, in both runs.
    fallen = [c["name"] for c in card["classes"]].index("fallen_dry")
    assert entry["found_by"] == "counts" and max(entry["em_shares"]) == entry["em_shares"][fallen] > 0.5
    assert entry["scene_shares"][fallen] < entry["learned_shares"][fallen] < entry["em_shares"][fallen]
    assert entry["weights"][fallen] < 1.0  # weighed down, as the map's counts say, not up
    warned = [m for m in logs if m.startswith("Estimating the scene's class shares from the model's probabilities "
                                              "went astray: it gave fallen_dry")]
    assert len(warned) == 2  # held-out run, refit
    assert sum(m.startswith("The scene's class shares, counted on the model's map") for m in logs) == 2
    # the held-out estimate is of the map Classify makes (weighed); the unweighed map's is kept, and the log says both
    held = card["heldout"]
    assert held["classes_weighed"] is True and "classes_unweighed" not in held
    assert set(held["unweighed"]) >= {"overall_accuracy", "mean_iou"}
    told = [m for m in logs if m.startswith("Held-out estimate")][-1]
    assert "with the classes weighed by the scene's shares" in told
    assert f"'Weigh classes by the scene's shares' off: overall accuracy {held['unweighed']['overall_accuracy']:.0%}" \
        in told


def _probabilities(model_path, raster, tile):
    """The model's probabilities over ``tile`` px tiles without overlap, and the validity, as (K, H, W), (H, W)."""
    model = load_model(model_path, device="cpu", events=RecordingEvents())
    with open_source(str(raster), model, events=RecordingEvents()) as source:
        probs = np.zeros((len(model.classes), source.height, source.width), np.float32)
        valid = np.zeros((source.height, source.width), bool)
        for batch in source.batches(list(TileGrid(source.height, source.width, tile, 0)), 4):
            for t, p, v in zip(batch.tiles, model.run(batch.x), batch.valid):
                probs[:, t.row:t.row + t.rows, t.col:t.col + t.cols] = p[:, :t.rows, :t.cols]
                valid[t.row:t.row + t.rows, t.col:t.col + t.cols] = v[:t.rows, :t.cols]
    return probs, valid


def test_the_map_is_the_argmax_of_the_weighed_probabilities_and_off_gives_the_model_s_own(
        shared_data, trained, tmp_path):
    out, card, _ = trained
    raster = shared_data / "rstoolbox" / "landsat5_1988_7band.tif"
    maps, results = {}, {}
    for shares in ("model", "off"):
        events = RecordingEvents()
        results[shares] = classify_raster(ClassifyOptions(raster, out, tmp_path / f"{shares}.tif", overlap=0,
                                                          class_shares=shares), events)
        told = [e["message"] for e in events.of_type("log") if e["message"].startswith("Classes weighed by")]
        assert len(told) == (shares == "model")
        assert not _told_elsewhere(events)  # the training raster itself
        with rasterio.open(results[shares]["OUTPUT"]) as src:
            maps[shares] = src.read(1)
    probs, valid = _probabilities(out, raster, results["model"]["TILE"])
    ids = np.array([c["id"] for c in card["classes"]], dtype=np.uint8)
    weights = np.asarray(card["class_shares"]["weights"], np.float32)[:, None, None]
    expected = {"model": ids[np.argmax(probs * weights, axis=0)], "off": ids[np.argmax(probs, axis=0)]}
    for shares in ("model", "off"):
        # the same to a few pixels (float32 rounding where two classes tie), where the two maps differ widely
        assert (maps[shares][valid] == expected[shares][valid]).mean() > 0.999
    assert (maps["model"][valid] != maps["off"][valid]).mean() > 0.01  # the weights moved pixels
    # the card's shares of both maps over the trainer's sample are those of the maps Classify writes
    for shares, kind in (("model", "weighed"), ("off", "unweighed")):
        written = np.array([(maps[shares][valid] == i).mean() for i in ids])
        assert written == pytest.approx(card["class_shares"]["map_shares"][kind], abs=0.03)


def test_classify_says_when_the_shares_were_estimated_on_another_raster(shared_data, trained, tmp_path):
    out, card, _ = trained
    source = shared_data / "rstoolbox" / "landsat5_1988_7band.tif"
    assert Path(card["class_shares"]["source"]).samefile(source)
    other = tmp_path / "another_scene.tif"  # another file, as a neighbouring scene would be
    shutil.copy(source, other)
    for shares, expected in (("model", 1), ("off", 0)):
        events = RecordingEvents()
        classify_raster(ClassifyOptions(other, out, tmp_path / f"{shares}.tif", class_shares=shares), events)
        told = _told_elsewhere(events)
        assert len(told) == expected
        if told:
            assert "landsat5_1988_7band.tif" in told[0] and "weighing off" in told[0]


def _told_elsewhere(events) -> list:
    return [e["message"] for e in events.of_type("log") if "were estimated on the training raster" in e["message"]]


def test_classify_names_the_classes_the_weighed_map_all_but_loses_as_the_trainer_did(shared_data, trained,
                                                                                   tmp_path):
    out, card, training_events = trained
    names = [c["name"] for c in card["classes"]]
    entry = card["class_shares"]
    lost = vanishing(entry["map_shares"]["unweighed"], entry["map_shares"]["weighed"])
    events = RecordingEvents()
    classify_raster(ClassifyOptions(shared_data / "rstoolbox" / "landsat5_1988_7band.tif", out, tmp_path / "map.tif"),
                    events)
    warned = [e["message"] for e in events.of_type("log") if e["message"].startswith("Weighed by the scene's shares")]
    trained_warned = [e["message"] for e in training_events.of_type("log")
                      if e["message"].startswith("Weighed by the scene's shares")]
    assert len(warned) == (1 if lost else 0) and len(trained_warned) >= len(warned)
    for k in lost:
        assert f" {names[k]} " in warned[0]


def test_a_one_epoch_model_whose_weighing_would_erase_forest_is_weighed_gently(chips, tmp_path):
    """A one-epoch model's shares (its map's counts: EM went astray) weighed at the usual strength took forest,
    a fifth of its own map, off the map; the trainer weighs more gently, and says so."""
    events = RecordingEvents()
    out = tmp_path / "model.onnx"
    train(TrainConfig(dataset_dir=str(chips), output=str(out), epochs=1, batch_size=4, base_width=8,
                      learning_rate=3e-3, patience=0, device="cpu", cv_folds=1, seed=0), events)
    entry = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}[CARD_KEY])["class_shares"]
    assert entry["strength"] < STRENGTH
    weighed, unweighed = entry["map_shares"]["weighed"], entry["map_shares"]["unweighed"]
    for share, on, off in zip(entry["scene_shares"], weighed, unweighed):
        if share > 2 * FLOOR:  # every class the scene has keeps a quarter of its share on the weighed map
            assert on >= min(share, off) / KEPT - 1e-6
    warned = [e["message"] for e in events.of_type("log") if "would all but erase" in e["message"]]
    assert warned and f"Classify weighs them more gently (strength {entry['strength']};" in warned[-1]
