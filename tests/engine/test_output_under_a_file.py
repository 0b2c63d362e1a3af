"""An output whose folder path runs through a file (``/data/scene.tif/map.tif``): the message names that file as
a file, not a folder. errno's 'File exists' or 'Not a directory' read as if the output already existed."""
import pytest

from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("an analyst's file")
    return path


@pytest.mark.parametrize("below", ["map.tif", "maps/map.tif"])
def test_classify_into_a_folder_that_is_a_file(model, zion_image, a_file, below):
    with pytest.raises(BadInputError, match=rf"{a_file} is a file, not a folder") as raised:
        classify_raster(ClassifyOptions(zion_image, model, a_file / below), RecordingEvents())
    assert "File exists" not in raised.value.message and "Not a directory" not in raised.value.message
    assert a_file.read_text() == "an analyst's file"


def test_export_chips_into_a_folder_under_a_file(shared_data, a_file):
    folder = shared_data / "rstoolbox"
    with pytest.raises(BadInputError, match=rf"{a_file} is a file, not a folder"):
        export_chips(ChipExportOptions(folder / "landsat5_1988_7band.tif", a_file / "chips",
                                       labels_vector=folder / "training_polygons.gpkg", class_field="class",
                                       chip_size=32), RecordingEvents())
    assert a_file.read_text() == "an analyst's file"
