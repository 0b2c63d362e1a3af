"""Each algorithm's engine call, built from its parameters without running the engine (GDAL's
``getConsoleCommands`` pattern): the flags are the engine's released ones, and the engine's own parser
reads them back into the options the algorithm meant."""
import pytest
from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsRasterLayer, QgsVectorLayer

from landcover_plugin.core import options as opts
from landcover_plugin.core.engine import COMMANDS, build_parser


def engine_call(provider, name, parameters):
    algorithm = provider.algorithm(name).create()
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    ok, message = algorithm.checkParameterValues(parameters, context)
    assert ok, message
    argv = algorithm.engine_command(parameters, context, feedback)
    parsed = build_parser().parse_args(argv)
    return argv, opts.from_args(COMMANDS[argv[0]].options, parsed)


@pytest.fixture
def zion(shared_data):
    return shared_data / "zion"


def test_classify_call_carries_every_choice(provider, zion, tmp_path):
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read here")
    argv, options = engine_call(provider, "classify_raster", {
        "INPUT": str(zion / "landsat8_2015_b2345.tif"), "MODEL": str(model), "OVERLAP": 30, "BATCH_SIZE": 2,
        "DEVICE": 1, "MASK": str(zion / "park_boundary.gpkg"), "MEAN": "1,2,3,4", "OUTPUT": str(tmp_path / "o.tif"),
        "CONFIDENCE": str(tmp_path / "c.tif")})
    assert argv[0] == "classify"
    assert "--overlap=30.0" in argv and "--device=cpu" in argv
    assert options.raster == str(zion / "landsat8_2015_b2345.tif")  # a file layer is passed by path
    assert options.batch_size == 2 and options.overwrite and options.mean == "1,2,3,4"
    assert options.confidence == str(tmp_path / "c.tif") and options.output == str(tmp_path / "o.tif")
    assert options.mask.endswith(".gpkg") and options.mask != str(zion / "park_boundary.gpkg")  # reprojected copy
    assert options.class_names is None and options.std is None and not options.resample


def test_values_with_a_minus_sign_reach_the_engine(provider, zion, tmp_path):
    """West of Greenwich an extent starts with a minus sign, and so may a mean (radar in dB): the engine's parser
    must not take them for options (it did: argparse's usage and exit 2)."""
    from osgeo import gdal
    mercator = tmp_path / "zion_3857.tif"
    gdal.Warp(str(mercator), str(zion / "landsat8_2015_b2345.tif"), dstSRS="EPSG:3857")
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read here")
    argv, options = engine_call(provider, "classify_raster", {
        "INPUT": str(mercator), "MODEL": str(model), "OUTPUT": str(tmp_path / "o.tif"),
        "EXTENT": "-113.1,-112.9,37.2,37.3 [EPSG:4326]", "MEAN": "-10.5,9000,9000,15000", "STD": "1,2,3,4"})
    xmin, ymin, xmax, ymax = opts.parse_floats(options.extent, "extent", 4)
    assert -12_600_000 < xmin < xmax < -12_560_000 and 4_460_000 < ymin < ymax < 4_490_000  # metres, EPSG:3857
    assert opts.parse_floats(options.mean, "mean") == [-10.5, 9000, 9000, 15000]


def test_train_call_uses_the_trainers_defaults(provider, tmp_path):
    argv, config = engine_call(provider, "train_segmentation_model", {
        "DATASET": str(tmp_path), "OUTPUT": str(tmp_path / "model"), "AUGMENT": False, "TIME_LIMIT": 2.5})
    assert argv[:2] == ["train", str(tmp_path)] and "--no-augment" in argv
    assert config.output == str(tmp_path / "model.onnx") and config.time_limit_minutes == 2.5
    defaults = type(config)(dataset_dir=str(tmp_path), output=config.output)
    for name in ("epochs", "batch_size", "learning_rate", "patience", "base_width", "architecture", "device",
                 "class_weights", "colour_augment", "seed"):
        assert getattr(config, name) == getattr(defaults, name), name
    assert config.augment is False and config.resume is None and config.export_tile_size is None


def test_export_chips_call_passes_the_layer_schema(provider, shared_data, tmp_path):
    polygons = QgsVectorLayer(str(shared_data / "rstoolbox" / "training_polygons.gpkg"), "polygons")
    raster = QgsRasterLayer(str(shared_data / "rstoolbox" / "landsat5_1988_7band.tif"), "image")
    argv, options = engine_call(provider, "export_label_chips", {
        "INPUT": raster, "LABELS": polygons, "CLASS_FIELD": "class", "CHIP_SIZE": 64, "STRIDE": 0,
        "OUTPUT": str(tmp_path / "chips")})
    assert argv[0] == "export-chips" and "--stride" not in argv  # 0 = the chip size: left to the engine
    assert options.chip_size == 64 and options.class_field == "class" and options.labels_raster is None
    assert options.labels_vector.endswith(".gpkg")


def test_assess_call_writes_json_beside_the_table(provider, shared_data, tmp_path):
    argv, options = engine_call(provider, "assess_accuracy", {
        "CLASSIFIED": str(shared_data / "zion" / "nlcd2011_8class.tif"),
        "REFERENCE_RASTER": str(shared_data / "zion" / "nlcd2011_8class.tif"),
        "OUTPUT_HTML": str(tmp_path / "r.html"), "OUTPUT_TABLE": str(tmp_path / "t.csv")})
    assert argv[0] == "assess" and options.json == str(tmp_path / "t.json")
    assert options.reference_vector is None and options.block_size == 1024
