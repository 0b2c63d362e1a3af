"""Retraining from the previous iteration's model (initial weights) after the analyst changed the classes, on real
rstoolbox polygons (text class field: ids follow the sorted names, so a class added in iteration 2 moves the
others to other output channels)."""
import json
import shutil

import pytest
import torch
from osgeo import ogr

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.train.options import TrainConfig
from training import checkpoint
from training.loop import train
from training.networks import build_network

TINY = {"batch_size": 4, "base_width": 8, "learning_rate": 3e-3, "patience": 0, "device": "cpu", "refit": False}
LAYER = "trainingPolygons_lsat"


def chips_without(shared_data, folder, dropped: str, keep_classes=None):
    """The rstoolbox chips from its polygons less those of class ``dropped`` (as an earlier iteration had);
    ``keep_classes``: the class list whose values they keep."""
    polygons = folder.with_suffix(".gpkg")
    shutil.copy(shared_data / "rstoolbox" / "training_polygons.gpkg", polygons)
    source = ogr.Open(str(polygons), 1)
    source.ExecuteSQL(f"DELETE FROM {LAYER} WHERE class = '{dropped}'")
    source = None
    export_chips(ChipExportOptions(shared_data / "rstoolbox" / "landsat5_1988_7band.tif", folder,
                                   labels_vector=polygons, class_field="class", chip_size=32,
                                   keep_classes=keep_classes))
    return folder


@pytest.fixture(scope="module")
def first_iteration(shared_data, tmp_path_factory):
    """Iteration 1: cleared, forest and water (no fallen_dry yet), trained for an epoch."""
    root = tmp_path_factory.mktemp("iteration1")
    chips = chips_without(shared_data, root / "chips", "fallen_dry")
    return train(TrainConfig(dataset_dir=str(chips), output=str(root / "model1.onnx"), epochs=1,
                             architecture="unet", **TINY))


def head_rows(path) -> tuple:
    state = checkpoint.load(path)
    names = [c["name"] for c in state["data"]["classes"]]
    return names, state["model"]["head.weight"], state["model"]["head.bias"]


def loaded_head(weights, classes, events):
    torch.manual_seed(0)
    model = build_network("unet", 7, len(classes), base_width=TINY["base_width"])
    fresh = model.state_dict()["head.weight"].clone()
    checkpoint.load_initial_weights(model, weights, events, classes)
    return model.state_dict()["head.weight"], model.state_dict()["head.bias"], fresh


@pytest.mark.parametrize("dropped, expected", [
    ("none", ["cleared", "fallen_dry", "forest", "water"]),  # a class added: 3 -> 4 channels
    ("water", ["cleared", "fallen_dry", "forest"]),  # one added, one left out: 3 channels, other classes
])
def test_the_previous_models_classes_keep_their_weights_by_name(shared_data, tmp_path, first_iteration, dropped,
                                                                 expected):
    chips = chips_without(shared_data, tmp_path / "chips", dropped)
    classes = json.loads((chips / "dataset.json").read_text())["classes"]
    assert [c["name"] for c in classes] == expected
    names, weight, bias = head_rows(first_iteration["CHECKPOINT"])
    assert names == ["cleared", "forest", "water"]
    events = RecordingEvents()
    new_weight, new_bias, fresh = loaded_head(first_iteration["CHECKPOINT"], classes, events)
    for index, name in enumerate(expected):
        if name in names:  # forest was channel 1, is channel 2 now: its own weights, not water's or fallen_dry's
            assert torch.equal(new_weight[index], weight[names.index(name)]), name
            assert torch.equal(new_bias[index], bias[names.index(name)]), name
        else:  # the new class starts at random, as a new model would
            assert torch.equal(new_weight[index], fresh[index]), name
    log = " ".join(e["message"] for e in events.of_type("log"))
    assert "matched to this dataset's by name" in log and "new here (random start): fallen_dry" in log
    if dropped == "water":
        assert "not in this dataset (left out): water" in log


def test_a_retrained_run_maps_the_earlier_classes_from_the_start(shared_data, tmp_path, first_iteration):
    """Iteration 2 trained from iteration 1's checkpoint, cancelled before its first batch: its model is the
    start, and the earlier classes' channels are iteration 1's (forest moved from channel 2 to 3)."""
    chips = chips_without(shared_data, tmp_path / "chips", "none")
    events = RecordingEvents()
    events.cancel_requested = True
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "model2.onnx"), epochs=1,
                            architecture="unet", initial_weights=first_iteration["CHECKPOINT"], **TINY), events)
    log = " ".join(e["message"] for e in events.of_type("log"))
    assert "Initial weights: loaded" in log and "kept their random start" not in log  # the head too
    assert "start from their earlier weights" in log and out["OUTPUT"]


def warnings_of(events) -> list:
    return [e["message"] for e in events.of_type("log") if e["level"] == "warning"]


def test_retraining_on_renumbered_classes_says_so_and_names_the_class_list_to_keep(shared_data, tmp_path,
                                                                                   first_iteration):
    """Iteration 2's chips numbered by sorted names moved forest from 2 to 3: the head follows the names, but the
    map's values differ from iteration 1's, and the log says so. Chips that keep iteration 1's model's values
    give the same start (forest's own weights) and no such warning."""
    names, weight, _ = head_rows(first_iteration["CHECKPOINT"])
    moved = json.loads((chips_without(shared_data, tmp_path / "moved", "none") / "dataset.json").read_text())
    events = RecordingEvents()
    loaded_head(first_iteration["CHECKPOINT"], moved["classes"], events)
    (warning,) = [w for w in warnings_of(events) if "class values differ" in w]
    assert "moved forest 2 -> 3, water 3 -> 4" in warning and "value 2 was forest, is now fallen_dry" in warning
    assert "'Class list to keep'" in warning and "--keep-classes" in warning

    kept = chips_without(shared_data, tmp_path / "kept", "none", keep_classes=first_iteration["OUTPUT"])
    classes = json.loads((kept / "dataset.json").read_text())["classes"]
    assert [(c["id"], c["name"]) for c in classes] == [(1, "cleared"), (2, "forest"), (3, "water"), (4, "fallen_dry")]
    events = RecordingEvents()
    new_weight, _, _ = loaded_head(first_iteration["CHECKPOINT"], classes, events)
    assert not [w for w in warnings_of(events) if "class values differ" in w], warnings_of(events)
    assert torch.equal(new_weight[1], weight[names.index("forest")])


def test_a_cross_validated_retraining_warns_of_the_renumbered_classes_once(shared_data, tmp_path, first_iteration):
    """Cross-validation starts every fold and the refit from the initial weights: the head follows the names each
    time, and the warning about the classes' values comes once in the run, not once per model."""
    chips = chips_without(shared_data, tmp_path / "chips", "none")
    events = RecordingEvents()
    out = train(TrainConfig(dataset_dir=str(chips), output=str(tmp_path / "model2.onnx"), epochs=1,
                            architecture="unet", initial_weights=first_iteration["CHECKPOINT"],
                            **{**TINY, "refit": True, "cv_folds": 2}), events)
    log = [e["message"] for e in events.of_type("log")]
    assert len([m for m in log if m.startswith("Initial weights: loaded")]) == 3  # 2 folds and the refit
    assert len([m for m in log if "start from their earlier weights" in m]) == 3
    (warning,) = [w for w in warnings_of(events) if "class values differ" in w]
    assert "moved forest 2 -> 3, water 3 -> 4" in warning and out["OUTPUT"]
