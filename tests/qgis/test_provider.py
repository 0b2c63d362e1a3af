"""The provider inside a real (headless) QGIS, and the Set up engine environment check mode."""
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProcessingParameterDefinition

from landcover_plugin.provider import ALGORITHMS


def test_provider_lists_every_algorithm_with_stable_names(provider):
    assert provider.id() == "landcover" and provider.name() == "Land cover"
    registered = QgsApplication.processingRegistry().providerById("landcover")
    names = sorted(a.name() for a in registered.algorithms())
    assert names == sorted(cls().name() for cls in ALGORITHMS)
    for algorithm in registered.algorithms():
        assert algorithm.name() == algorithm.name().lower() and " " not in algorithm.name()
        assert algorithm.group() == "Land cover" and algorithm.groupId() == "landcover"
        assert len(algorithm.shortHelpString()) > 80, f"{algorithm.name()} needs help an analyst can follow"
        assert isinstance(algorithm.createInstance(), type(algorithm))


def test_setup_engine_check_mode_reports_what_the_engine_uses(provider):
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:setup_engine_environment")
    feedback = QgsProcessingFeedback()
    results, ok = algorithm.run({"MODE": 1}, QgsProcessingContext(), feedback)
    assert ok, feedback.textLog()
    assert results["GPU"] in ("no GPU",) or results["TORCH_DEVICE"] == "cuda"
    assert "CPUExecutionProvider" in results["ORT_PROVIDERS"]
    assert "torch 2." in results["VERSIONS"] and "onnxruntime 1." in results["VERSIONS"]
    assert results["TORCH_DEVICE"] in ("cpu", "cuda")


def test_setup_engine_check_mode_with_a_broken_engine_fails_with_a_fix(provider, monkeypatch, tmp_path):
    monkeypatch.setenv("LANDCOVER_PYTHON", str(tmp_path / "missing" / "python"))
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:setup_engine_environment")
    feedback = QgsProcessingFeedback()
    results, ok = algorithm.run({"MODE": 1}, QgsProcessingContext(), feedback)
    assert not ok
    assert "Set up engine environment" in feedback.textLog() and "LANDCOVER_PYTHON" in feedback.textLog()


def test_raster_outputs_offer_geotiff_only(provider):
    """The engine writes GeoTIFFs only: the file dialogs offered every GDAL format (.img, .vrt, .jpg...), each
    refused once the run had started ('must be a GeoTIFF')."""
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:classify_raster")
    for name in ("OUTPUT", "CONFIDENCE", "UNCERTAINTY"):
        parameter = algorithm.parameterDefinition(name)
        assert parameter.supportedOutputRasterLayerExtensions() == ["tif"], name
        assert parameter.defaultFileExtension() == "tif" and ".img" not in parameter.createFileFilter(), name


def test_settings_an_analyst_rarely_changes_are_advanced(provider):
    """Export's split seed sat among the chip settings while Train's seed is advanced; the environment's base
    Python (used only when installing, nearly always QGIS's own) sat beside the mode; Suggest's uncertainty measure
    sat among the main settings, Classify's among the advanced ones."""
    registry = QgsApplication.processingRegistry()
    for algorithm_id, name in (("landcover:export_label_chips", "SEED"),
                               ("landcover:train_segmentation_model", "SEED"),
                               ("landcover:setup_engine_environment", "BASE_PYTHON"),
                               ("landcover:classify_raster", "UNCERTAINTY_MEASURE"),
                               ("landcover:suggest_training_areas", "MEASURE")):
        algorithm = registry.createAlgorithmById(algorithm_id)  # kept: it owns the parameter
        parameter = algorithm.parameterDefinition(name)
        assert parameter.flags() & QgsProcessingParameterDefinition.FlagAdvanced, f"{algorithm_id} {name}"


def test_quantise_opens_with_the_last_model_and_chips_as_classify_and_train_do(provider, tmp_path):
    """Quantise's dialog opened empty, so the model and chips just made had to be browsed for again."""
    from qgis.core import QgsSettings

    from landcover_plugin.qgis_glue.output_places import LAST_CHIP_FOLDER, LAST_MODEL

    model, chips = tmp_path / "chips_model.onnx", tmp_path / "chips"
    model.write_bytes(b"onnx")
    chips.mkdir()
    settings = QgsSettings()
    before = {key: settings.value(key) for key in (LAST_MODEL, LAST_CHIP_FOLDER)}
    try:
        settings.setValue(LAST_MODEL, str(model))
        settings.setValue(LAST_CHIP_FOLDER, str(chips))
        algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:quantise_model")
        assert algorithm.parameterDefinition("MODEL").defaultValue() == str(model)
        assert algorithm.parameterDefinition("DATASET").defaultValue() == str(chips)
    finally:
        for key, value in before.items():
            if value is None:
                settings.remove(key)
            else:
                settings.setValue(key, value)
