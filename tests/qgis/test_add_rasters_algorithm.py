"""'Export label chips' with 'Add to the chip dataset in the output folder' in a real headless QGIS: two scenes
(Zion's labelled west cut in two) exported one after the other into one dataset, and the check before a run."""
import json

from algorithm_runs import checked_run
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessing, QgsProcessingContext, QgsRasterLayer

gdal.UseExceptions()


def scenes(shared_data, folder):
    image = str(shared_data / "zion" / "landsat8_2015_b2345.tif")
    gdal.Translate(str(folder / "north.tif"), image, srcWin=[0, 0, 676, 714])
    gdal.Translate(str(folder / "south.tif"), image, srcWin=[0, 714, 676, 714])
    return [QgsRasterLayer(str(folder / name), name) for name in ("north.tif", "south.tif")]


def test_two_scenes_exported_into_one_dataset(provider, shared_data, tmp_path):
    polygons = str(shared_data / "zion" / "training_polygons_sparse.gpkg")
    chips = []
    for layer in scenes(shared_data, tmp_path):
        results, ok, log = checked_run("landcover:export_label_chips", {
            "INPUT": layer, "LABELS": polygons, "CLASS_FIELD": "class", "CHIP_SIZE": 32, "ADD_TO_DATASET": True,
            "OUTPUT": str(tmp_path / "chips")})
        assert ok, log
        chips.append(results["CHIPS"])
    dataset = json.loads((tmp_path / "chips" / "dataset.json").read_text())
    assert [source["image"] for source in dataset["sources"]] == [str(tmp_path / "north.tif"),
                                                                str(tmp_path / "south.tif")]
    assert chips[1] == len(dataset["chips"]) > chips[0] > 0  # the outputs count the whole dataset
    assert "of 2 rasters (north.tif, south.tif)" in log
    # run again without the box checked: the dataset is replaced by the one raster's, as before
    results, ok, log = checked_run("landcover:export_label_chips", {
        "INPUT": str(tmp_path / "south.tif"), "LABELS": polygons, "CLASS_FIELD": "class", "CHIP_SIZE": 32,
        "OUTPUT": str(tmp_path / "chips")})
    assert ok, log
    assert "sources" not in json.loads((tmp_path / "chips" / "dataset.json").read_text())


def test_adding_to_a_temporary_folder_is_refused_before_the_run(provider, shared_data):
    algorithm = QgsApplication.processingRegistry().createAlgorithmById("landcover:export_label_chips")
    ok, message = algorithm.checkParameterValues({
        "INPUT": str(shared_data / "zion" / "landsat8_2015_b2345.tif"),
        "LABELS": str(shared_data / "zion" / "training_polygons_sparse.gpkg"), "CLASS_FIELD": "class",
        "ADD_TO_DATASET": True, "OUTPUT": QgsProcessing.TEMPORARY_OUTPUT}, QgsProcessingContext())
    assert not ok and "choose the chip dataset to add" in message
