"""A labels raster over part of the image: the held-out blocks lie among the labels, so the estimate is of that part.

In `make demo` the Zion model trained on NLCD labels of the scene's west 70 % estimated 77 % and scored 72 % on
the east 30 %, and nothing said that the estimate was of the labelled part only. The real eo-learn composite, with
its LULC labels whole and with the east half's labels removed.
"""
import json

import numpy as np
import pytest
import rasterio

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.train.options import TrainConfig
from landcover_plugin.core.train.report import write_training_report
from training.loop import train


def _train_on(labels, image, folder):
    export_chips(ChipExportOptions(image, folder / "chips", labels_raster=labels, chip_size=32, stride=16,
                                   val_fraction=0.25))
    events = RecordingEvents()
    outputs = train(TrainConfig(dataset_dir=str(folder / "chips"), output=str(folder / "m.onnx"), epochs=1,
                                batch_size=4, base_width=8, patience=0, device="cpu"), events)
    line = next(e["message"] for e in events.of_type("log") if e["message"].startswith("Held-out estimate"))
    return outputs, line, json.loads((folder / "chips" / "dataset.json").read_text())


def test_the_estimate_says_it_is_of_the_labelled_part_when_the_labels_cover_part_of_the_image(shared_data,
                                                                                               tmp_path):
    image = shared_data / "eolearn" / "sentinel2_13band_composite.tif"
    with rasterio.open(shared_data / "eolearn" / "lulc.tif") as src:
        profile, labels = src.profile, src.read(1)
    labels[:, labels.shape[1] // 2:] = 0  # the east half unlabelled (0 is the raster's nodata)
    west = tmp_path / "lulc_west.tif"
    with rasterio.open(west, "w", **profile) as dst:
        dst.write(labels, 1)
    (tmp_path / "half").mkdir()
    outputs, line, dataset = _train_on(west, image, tmp_path / "half")
    cover = outputs["HELDOUT"]["labels_cover"]
    assert cover == pytest.approx(sum(dataset["distinct_class_pixels"].values()) / dataset["valid_pixels"], abs=1e-4)
    assert 0.3 < cover < 0.6, cover  # the west half, less its unlabelled and NaN pixels
    assert f"The labels cover {cover:.0%} of the image's valid pixels" in line and "estimate is of that part" in line
    report = tmp_path / "report.html"
    write_training_report(report, outputs["OUTPUT"], dataset_dir=tmp_path / "half" / "chips", outputs=outputs)
    assert f"The labels cover {100 * cover:.1f} % of the image's valid pixels" in report.read_text()

    (tmp_path / "whole").mkdir()
    outputs, line, _ = _train_on(shared_data / "eolearn" / "lulc.tif", image, tmp_path / "whole")
    assert "labels_cover" not in outputs["HELDOUT"] and "The labels cover" not in line
    assert np.isfinite(outputs["HELDOUT"]["overall_accuracy"])
