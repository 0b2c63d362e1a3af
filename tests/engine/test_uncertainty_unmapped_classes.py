"""The uncertainty raster of a model trained on some of the classes of its list: 100 % still means unsure.

The probe's case: polygons of 3 of the 8 classes of Zion's classes.json. The trainer shuts the other 5 (their
probability is 0), so an entropy scaled by log 8 never passed log 3 / log 8 = 53 % ("uncertainty 53..53 %" in
Suggest's log). Scaled by the classes the model can map, a model that hesitates between its 3 reaches 100.
"""
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import rasterio
from osgeo import gdal, ogr

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import CARD_KEY
from landcover_plugin.core.raster_classes import embedded_classes
from landcover_plugin.core.suggest.options import SuggestOptions
from landcover_plugin.core.suggest.suggest import suggest_areas
from landcover_plugin.core.train.options import TrainConfig
from landcover_plugin.core.train.report import write_training_report
from training.loop import train

TRAINED = (3, 4, 5)  # Barren, Forest, Shrubland: 24 of the 40 polygons
CAP = 100 * np.log(3) / np.log(8)  # 52.8: the most an entropy over all 8 classes could say


@pytest.fixture(scope="module")
def three_of_eight(shared_data, tmp_path_factory):
    """A model (2 epochs) trained on the polygons of 3 classes under the 8-class list, and a 400 px window."""
    folder = tmp_path_factory.mktemp("unmapped")
    zion = shared_data / "zion"
    polygons = ogr.Open(str(zion / "training_polygons_sparse.gpkg"))  # kept: its layer dies with it
    fids = [f.GetFID() for f in polygons.GetLayer() if f["class_id"] in TRAINED]
    export_chips(ChipExportOptions(zion / "landsat8_2015_b2345.tif", folder / "chips",
                                   labels_vector=zion / "training_polygons_sparse.gpkg", class_field="class_id",
                                   fids=fids, schema=str(zion / "classes.json"), chip_size=32), RecordingEvents())
    model = folder / "m.onnx"
    train(TrainConfig(dataset_dir=str(folder / "chips"), output=str(model), epochs=2, batch_size=4, base_width=8,
                      patience=0, device="cpu", refit=False), RecordingEvents())
    window = folder / "window.tif"
    gdal.Translate(str(window), str(zion / "landsat8_2015_b2345.tif"), srcWin=[0, 300, 400, 400])
    return folder, model, window


def card_of(path) -> dict:
    return json.loads(next(p.value for p in onnx.load(str(path)).metadata_props if p.key == CARD_KEY))


def uncertainty(folder, model, window, name):
    """(classify's outputs, the valid entropy values, the log) of ``model`` over ``window``: the model's own
    probabilities (class shares off), whose spread the scale is about; weighed by the scene's class shares, this
    2-epoch model's are surer (at most 66 % on this window)."""
    events = RecordingEvents()
    result = classify_raster(ClassifyOptions(window, model, folder / f"{name}.tif", class_shares="off",
                                             uncertainty=folder / f"{name}_u.tif"), events)
    with rasterio.open(result["UNCERTAINTY"]) as src:
        values = src.read(1)
    return result, values[values != 255], [e["message"] for e in events.of_type("log")]


def test_the_entropy_reaches_100_among_the_classes_the_model_maps(three_of_eight):
    folder, model, window = three_of_eight
    assert card_of(model)["left_out_classes"] == [1, 2, 6, 7, 8]  # Water, Developed, Herbaceous, ...
    result, values, logs = uncertainty(folder, model, window, "map")
    assert values.max() >= 90 > CAP, (values.max(), np.percentile(values, [1, 50, 99]))
    assert any("maps 3 of its 8 classes" in m and "Water, Developed, Herbaceous, Cultivated, Wetlands" in m
               for m in logs), logs
    schema, _ = embedded_classes(result["OUTPUT"])  # the legend keeps the analyst's whole list
    assert [c.id for c in schema.classes] == list(range(1, 9))

    events = RecordingEvents()  # Suggest ranks and reports on that scale: the probe's log said 53..53 %
    suggest_areas(SuggestOptions(str(folder / "places.gpkg"), uncertainty=result["UNCERTAINTY"],
                                 classified=result["OUTPUT"], count=5), events)
    line = next(m for m in (e["message"] for e in events.of_type("log")) if m.startswith("Suggested"))
    assert int(line.split("uncertainty ")[1].split("..")[1].split(" ")[0]) >= 90, line


def test_a_model_whose_card_predates_the_record_is_read_from_its_graph(three_of_eight, tmp_path):
    """Models exported before the card named the left-out classes: the trainer's -1e4 offset in the graph says."""
    folder, model, window = three_of_eight
    proto = onnx.load(str(model))
    entry = next(p for p in proto.metadata_props if p.key == CARD_KEY)
    card = json.loads(entry.value)
    del card["left_out_classes"]
    entry.value = json.dumps(card)
    old = tmp_path / "old.onnx"
    onnx.save(proto, str(old))
    _, recorded, _ = uncertainty(folder, model, window, "recorded")
    _, read, logs = uncertainty(tmp_path, old, window, "old")
    assert np.array_equal(read, recorded) and read.max() >= 90, (read.max(), recorded.max())
    assert any("maps 3 of its 8 classes" in m for m in logs)


def test_the_training_report_says_which_classes_the_model_never_maps(three_of_eight, tmp_path):
    folder, model, _ = three_of_eight
    page = Path(write_training_report(tmp_path / "report.html", model, dataset_dir=folder / "chips")).read_text()
    rows = {name: page.split(f"</span>{name}</td>")[1].split("</tr>")[0] for name in ("Water", "Forest")}
    assert "never mapped (no training pixels)" in rows["Water"] and "never mapped" not in rows["Forest"], rows
