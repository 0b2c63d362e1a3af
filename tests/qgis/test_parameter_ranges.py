"""Every number in the Processing dialogs has the range its engine option accepts: the dialog refuses what the
engine would refuse later (or silently misuse: a seed over 2**31 - 1 reached the engine as seed 0)."""
from dataclasses import MISSING, fields

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingParameterDistance,
    QgsProcessingParameterNumber,
)

from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.model.quantise_options import QuantiseOptions
from landcover_plugin.core.options import bounds_of, check_bounds, flag_of
from landcover_plugin.core.sample.options import SampleOptions
from landcover_plugin.core.suggest.options import SuggestOptions
from landcover_plugin.core.train.options import TrainConfig
from landcover_plugin.provider import ALGORITHMS

ZERO = "0 means the option left out"  # the dialog's 0 is "automatic" or "none": the engine never sees it
# A maximum only the dialog has, and why the engine has none
DIALOG_ONLY_MAXIMUM = {("train_segmentation_model", "LEARNING_RATE"): 1.0}  # a diverging run stops with the fix
# (algorithm, parameter) -> (the engine's options, its option, ZERO or None)
ENGINE_OPTION = {
    ("export_label_chips", "CHIP_SIZE"): (ChipExportOptions, "chip_size", None),
    ("export_label_chips", "STRIDE"): (ChipExportOptions, "stride", None),
    ("export_label_chips", "MIN_LABELLED"): (ChipExportOptions, "min_labelled", None),
    ("export_label_chips", "VAL_FRACTION"): (ChipExportOptions, "val_fraction", None),
    ("export_label_chips", "SEED"): (ChipExportOptions, "seed", None),
    ("train_segmentation_model", "EPOCHS"): (TrainConfig, "epochs", None),
    ("train_segmentation_model", "BATCH_SIZE"): (TrainConfig, "batch_size", None),
    ("train_segmentation_model", "LEARNING_RATE"): (TrainConfig, "learning_rate", None),
    ("train_segmentation_model", "PATIENCE"): (TrainConfig, "patience", None),
    ("train_segmentation_model", "BASE_WIDTH"): (TrainConfig, "base_width", None),
    ("train_segmentation_model", "SEED"): (TrainConfig, "seed", None),
    ("train_segmentation_model", "TIME_LIMIT"): (TrainConfig, "time_limit_minutes", ZERO),
    ("train_segmentation_model", "TILE_SIZE"): (TrainConfig, "export_tile_size", ZERO),
    ("train_segmentation_model", "FREEZE_ENCODER_EPOCHS"): (TrainConfig, "freeze_encoder_epochs", None),
    ("train_segmentation_model", "ENCODER_LR_FACTOR"): (TrainConfig, "encoder_lr_factor", None),
    ("train_segmentation_model", "SCENE_PRETRAIN_MINUTES"): (TrainConfig, "scene_pretrain_minutes", None),
    ("train_segmentation_model", "CV_FOLDS"): (TrainConfig, "cv_folds", None),
    ("train_segmentation_model", "NPROC"): (TrainConfig, "nproc", None),
    ("classify_raster", "OVERLAP"): (ClassifyOptions, "overlap", None),
    ("classify_raster", "BATCH_SIZE"): (ClassifyOptions, "batch_size", None),
    ("quantise_model", "CALIBRATION_CHIPS"): (QuantiseOptions, "calibration_chips", None),
    ("quantise_model", "CHECK_CHIPS"): (QuantiseOptions, "check_chips", None),
    ("create_reference_sample", "SIZE"): (SampleOptions, "size", None),
    ("create_reference_sample", "TARGET_SE"): (SampleOptions, "target_se", None),
    ("create_reference_sample", "MIN_PER_CLASS"): (SampleOptions, "min_per_class", None),
    ("create_reference_sample", "MIN_DISTANCE"): (SampleOptions, "min_distance", None),
    ("create_reference_sample", "SEED"): (SampleOptions, "seed", None),
    ("suggest_training_areas", "COUNT"): (SuggestOptions, "count", None),
    ("suggest_training_areas", "MIN_DISTANCE"): (SuggestOptions, "min_distance", ZERO),
    ("suggest_training_areas", "SIZE"): (SuggestOptions, "size", None),
}
# Numbers only the dialog uses, with their range: the engine never sees them
DIALOG_ONLY = {("export_label_chips", "WEB_RESOLUTION"): (0.01, 10000.0)}  # QGIS fetches a web map layer at it
UNBOUNDED = 1e300  # QGIS's default range is +-DBL_MAX
INT_MAX = 2**31 - 1  # Processing reads an integer parameter as a C int


def numbers():
    for algorithm_class in ALGORITHMS:
        algorithm = algorithm_class()
        algorithm.initAlgorithm()
        for parameter in algorithm.parameterDefinitions():
            if isinstance(parameter, (QgsProcessingParameterNumber, QgsProcessingParameterDistance)):
                yield algorithm.name(), parameter


def test_every_number_parameter_has_the_range_of_its_engine_option(qgis_app):
    found = set()
    for algorithm, parameter in numbers():
        key = (algorithm, parameter.name())
        if key in DIALOG_ONLY:
            assert (parameter.minimum(), parameter.maximum()) == DIALOG_ONLY[key], key
            continue
        assert key in ENGINE_OPTION, f"{key}: add its engine option to ENGINE_OPTION (and give the option a range)"
        found.add(key)
        options, name, zero = ENGINE_OPTION[key]
        low, high = bounds_of(options, name)
        assert low is not None or zero, f"{options.__name__}.{name} has no minimum"
        assert parameter.minimum() == (0 if zero else low), key
        if key in DIALOG_ONLY_MAXIMUM:
            assert high is None and parameter.maximum() == DIALOG_ONLY_MAXIMUM[key], key
        elif high is None:
            assert parameter.maximum() > UNBOUNDED, key  # a distance: any, as the engine takes any
        else:
            assert parameter.maximum() == high, key
        if getattr(parameter, "dataType", lambda: None)() == QgsProcessingParameterNumber.Integer:
            assert parameter.maximum() <= INT_MAX, f"{key}: larger integers reach the engine as other numbers"
        # the engine takes the ends of the range and refuses just outside it, naming its flag
        field = next(f for f in fields(options) if f.name == name)
        step = 1 if isinstance(low if low is not None else high, int) else 1e-9
        inside = [v for v in (low, high) if v is not None]
        outside = ([low - step] if low is not None else []) + ([high + step] if high is not None else [])
        for value in inside:
            check_bounds(_filled(options, name, value))
        for value in outside:
            with pytest.raises(BadInputError, match=flag_of(field)):
                check_bounds(_filled(options, name, value))
    assert found == set(ENGINE_OPTION), f"parameters gone: {set(ENGINE_OPTION) - found}"


def _filled(options, name, value):
    """``options`` with ``name`` set to ``value`` (and placeholder paths for what the command requires)."""
    needed = {f.name: "x" for f in fields(options) if f.default is MISSING and f.default_factory is MISSING}
    return options(**{**needed, name: value})


def test_an_out_of_range_number_is_refused_naming_the_parameter_and_its_range(provider):
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:create_reference_sample")
    base = {"INPUT": "/nowhere.tif", "SIZE": 40, "OUTPUT": "/tmp/none.gpkg"}
    ok, message = algorithm.checkParameterValues({**base, "SEED": 5_000_000_000}, QgsProcessingContext())
    assert not ok and "(SEED) must be from 0 to 2147483647, got 5000000000" in message, message
    ok, message = algorithm.checkParameterValues({**base, "SIZE": 2_000_000_000}, QgsProcessingContext())
    assert not ok and "(SIZE) must be from 1 to 1000000" in message, message
