"""A class of the schema without a training pixel is never predicted: its untrained logits put it on the map.

The probe's case (eo-learn): the western 40 columns of the Sentinel-2 composite hold forest, grassland and
shrubland; the classes.json beside lulc.tif also names cultivated and artificial, which only lie further east. A
model trained there mapped 15 % of the whole composite as 'artificial' (48 px still after 15 epochs).
"""
import json
import shutil

import numpy as np
import onnxruntime as ort
import rasterio
from rasterio.windows import Window

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.quantise import quantise_model
from landcover_plugin.core.model.quantise_options import QuantiseOptions
from landcover_plugin.core.train.options import TrainConfig
from training.loop import train

CLASSES = [{"id": 1, "name": "cultivated", "color": "#fbf65d"}, {"id": 2, "name": "forest", "color": "#38814e"},
           {"id": 3, "name": "grassland", "color": "#e2e2c1"}, {"id": 4, "name": "shrubland", "color": "#dcca8f"},
           {"id": 8, "name": "artificial", "color": "#e31a1c"}]


def test_classes_without_training_pixels_are_never_mapped(shared_data, tmp_path):
    source = shared_data / "eolearn"
    shutil.copy2(source / "lulc.tif", tmp_path / "lulc.tif")
    (tmp_path / "classes.json").write_text(json.dumps({"classes": CLASSES, "nodata": 0}))
    image = source / "sentinel2_13band_composite.tif"
    with rasterio.open(image) as src:
        window = Window(0, 20, 40, 81)
        profile = dict(src.profile, width=40, height=81, transform=src.window_transform(window))
        with rasterio.open(tmp_path / "west.tif", "w", **profile) as dst:
            dst.write(src.read(window=window))
    events = RecordingEvents()
    export_chips(ChipExportOptions(tmp_path / "west.tif", tmp_path / "chips", labels_raster=tmp_path / "lulc.tif",
                                   chip_size=32, stride=16), events)
    meta = json.loads((tmp_path / "chips" / "dataset.json").read_text())
    assert meta["summary"]["missing_classes"] == ["cultivated", "artificial"]

    events = RecordingEvents()
    train(TrainConfig(dataset_dir=str(tmp_path / "chips"), output=str(tmp_path / "m.onnx"), epochs=2, batch_size=2,
                      base_width=8, patience=0, device="cpu", refit=False), events)
    assert any("No training pixels for: cultivated, artificial" in e["message"] and "never maps it" in e["message"]
               for e in events.of_type("log") if e["level"] == "warning")
    for metric in events.of_type("metric"):  # never predicted nor labelled in validation: no score, not 0 %
        assert metric["values"]["val_iou_cultivated"] is None and metric["values"]["val_iou_artificial"] is None
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    probabilities = session.run(None, {"input": np.random.default_rng(0).standard_normal((2, 13, 32, 32),
                                                                                         dtype=np.float32)})[0]
    assert probabilities[:, [0, 4]].max() < 1e-6 and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

    classify_raster(ClassifyOptions(image, tmp_path / "m.onnx", tmp_path / "map.tif"), RecordingEvents())
    with rasterio.open(tmp_path / "map.tif") as src:
        mapped = set(np.unique(src.read(1)).tolist())
    assert mapped & {1, 8} == set() and mapped - {0}, mapped

    # int8: onnxruntime's pre-processing fuses the -1e4 into the head's bias; quantised, that range made every
    # logit's int8 step about 40 (labels agreed with the float model on 57 %). The head stays float.
    result = quantise_model(QuantiseOptions(str(tmp_path / "m.onnx"), str(tmp_path / "chips"),
                                            str(tmp_path / "m_int8.onnx")), RecordingEvents())
    assert result["AGREEMENT"] >= 0.95, result
    int8 = ort.InferenceSession(result["OUTPUT"], providers=["CPUExecutionProvider"])
    chips = np.random.default_rng(1).standard_normal((2, 13, 32, 32), dtype=np.float32)
    assert int8.run(None, {int8.get_inputs()[0].name: chips})[0][:, [0, 4]].max() < 1e-6
