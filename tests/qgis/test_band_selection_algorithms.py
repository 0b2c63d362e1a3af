"""Bands in the Processing dialogs, in a real headless QGIS on Zion: 'Export label chips' with 3 of the 4 bands in
another order records them; 'Classify raster with model' reads a model's recorded bands from the full raster,
takes a band mapping, and refuses bands it cannot use before the run, naming the bands the model expects."""
import json

import numpy as np
import pytest
import rasterio
from algorithm_runs import checked_run
from classify_models import tiny_model_for_chips
from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsRasterLayer

BANDS = [3, 1, 2]
EXTENT = "329000,335000,4120000,4126000 [EPSG:32612]"  # xmin,xmax,ymin,ymax: 200 x 200 px


def run(name, parameters):
    return checked_run(f"landcover:{name}", parameters)


@pytest.fixture(scope="module")
def zion(shared_data):
    layer = QgsRasterLayer(str(shared_data / "zion" / "landsat8_2015_b2345.tif"), "zion")
    assert layer.isValid()
    return layer


@pytest.fixture(scope="module")
def chips(provider, zion, shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("band_chips") / "chips"
    polygons = str(shared_data / "zion" / "training_polygons_sparse.gpkg")
    results, ok, log = run("export_label_chips", {"INPUT": zion, "BANDS": BANDS, "LABELS": polygons,
                                                  "CLASS_FIELD": "class_id", "CHIP_SIZE": 32, "OUTPUT": str(folder)})
    assert ok, log
    return folder, log


@pytest.fixture(scope="module")
def model(chips, tmp_path_factory):
    """A tiny net whose card is the one training writes for these chips (classes, statistics, source bands)."""
    return tiny_model_for_chips(json.loads((chips[0] / "dataset.json").read_text()),
                                tmp_path_factory.mktemp("band_model") / "m.onnx")


def test_export_records_the_chosen_bands_and_sizes_the_output_by_them(chips):
    folder, log = chips
    bands = json.loads((folder / "dataset.json").read_text())["bands"]
    assert bands["source_bands"] == BANDS and bands["source_count"] == 4 and bands["count"] == 3
    assert "Bands: 3 of the raster's 4, in this order: 3, 1, 2." in log
    assert "(7.0 KB a chip, image and labels)" in log  # 32 x 32 x (3 bands x 2 bytes + 1)
    with rasterio.open(next((folder / "images").glob("*.tif"))) as chip:
        assert chip.count == 3


def test_classify_reads_the_models_bands_from_the_full_raster(provider, zion, model, tmp_path):
    results, ok, log = run("classify_raster", {"INPUT": zion, "MODEL": model, "EXTENT": EXTENT,
                                               "OUTPUT": str(tmp_path / "default.tif"), "DEVICE": 1})
    assert ok, log
    assert "The model takes 3 bands, in this order: 1 'band 3', 2 'band 1', 3 'band 2'" in log
    assert log.count("The model takes 3 bands") == 1  # said once
    assert "reading raster bands 3, 1, 2 (the training source's bands" in log
    mapped, ok, log = run("classify_raster", {"INPUT": zion, "MODEL": model, "EXTENT": EXTENT, "BANDS": [3, 1, 2],
                                              "OUTPUT": str(tmp_path / "mapped.tif"), "DEVICE": 1})
    assert ok and "reading raster bands 3, 1, 2 (as given)" in log
    other, ok, log = run("classify_raster", {"INPUT": zion, "MODEL": model, "EXTENT": EXTENT, "BANDS": [1, 2, 4],
                                             "OUTPUT": str(tmp_path / "other.tif"), "DEVICE": 1})
    assert ok and "reading raster bands 1, 2, 4 (as given)" in log
    with rasterio.open(results["OUTPUT"]) as a, rasterio.open(mapped["OUTPUT"]) as b, \
            rasterio.open(other["OUTPUT"]) as c:
        assert np.array_equal(a.read(1), b.read(1)) and not np.array_equal(a.read(1), c.read(1))


def test_bands_the_raster_cannot_give_are_refused_before_the_run(provider, zion, model, shared_data, tmp_path):
    two = tmp_path / "two.tif"
    with rasterio.open(shared_data / "zion" / "landsat8_2015_b2345.tif") as src:
        with rasterio.open(two, "w", **dict(src.profile, count=2)) as dst:
            dst.write(src.read([1, 2]))
    out = tmp_path / "c.tif"
    _, ok, message = run("classify_raster", {"INPUT": QgsRasterLayer(str(two), "two"), "MODEL": model,
                                             "OUTPUT": str(out)})
    assert not ok and message.startswith("'two': The raster has too few bands for the model (2 of 3): the model "
                                         "takes 3 bands, in this order")
    assert "Bands" not in message and not out.exists()  # no choice of its bands can help
    _, ok, message = run("classify_raster", {"INPUT": zion, "MODEL": model, "BANDS": [1, 2], "OUTPUT": str(out)})
    assert not ok and "2 bands given (1, 2) but the model takes 3 bands" in message


def test_the_band_lists_become_the_engines_bands_flag_in_order(provider, zion, model, shared_data, tmp_path):
    from landcover_plugin.core import options as opts
    from landcover_plugin.core.engine import COMMANDS, build_parser

    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    for name, parameters in (
            ("classify_raster", {"INPUT": zion, "MODEL": model, "BANDS": [4, 1, 2], "OUTPUT": str(tmp_path / "c.tif")}),
            ("export_label_chips", {"INPUT": zion, "BANDS": [4, 1, 2], "OUTPUT": str(tmp_path / "chips"),
                                    "LABELS": str(shared_data / "zion" / "training_polygons_sparse.gpkg"),
                                    "CLASS_FIELD": "class_id"})):
        argv = provider.algorithm(name).create().engine_command(parameters, context, feedback)
        assert argv[argv.index("--bands"):argv.index("--bands") + 4] == ["--bands", "4", "1", "2"]
        parsed = opts.from_args(COMMANDS[argv[0]].options, build_parser().parse_args(argv))
        assert [int(b) for b in parsed.bands] == [4, 1, 2]
