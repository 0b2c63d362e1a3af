"""The output folder: replaced only when it is a previous chip dataset; nothing left after a failure or cancel."""
import json

import numpy as np
import pytest
import rasterio

from landcover_plugin.core.chips.dataset import is_chip_dataset_folder, load_dataset, load_spec
from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.errors import BadInputError, Cancelled
from landcover_plugin.core.events import RecordingEvents


@pytest.fixture()
def rstoolbox(shared_data):
    folder = shared_data / "rstoolbox"
    return {"image": folder / "landsat5_1988_7band.tif",
            "labels_vector": folder / "training_polygons.gpkg", "class_field": "class", "min_labelled": 0.01}


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_previous_dataset_is_replaced_and_empty_folder_used(rstoolbox, tmp_path):
    out = tmp_path / "chips"
    out.mkdir()  # an empty folder is fine
    export_chips(ChipExportOptions(output=out, chip_size=64, **rstoolbox))
    first = load_dataset(out)
    assert is_chip_dataset_folder(out)
    export_chips(ChipExportOptions(output=out, chip_size=32, **rstoolbox))
    second = load_dataset(out)
    assert second["chip_size"] == 32 and len(second["chips"]) != len(first["chips"])
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.tif")}
    assert on_disk == {c["image"] for c in second["chips"]} | {c["label"] for c in second["chips"]}
    assert leftovers(tmp_path) == []


def test_folder_with_other_files_is_refused_and_untouched(rstoolbox, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(BadInputError, match="already holds other files"):
        export_chips(ChipExportOptions(output=out, chip_size=64, **rstoolbox))
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "keep me"
    # a chip dataset with an extra file in it is not "a previous dataset" either
    export_chips(ChipExportOptions(output=tmp_path / "chips", chip_size=64, **rstoolbox))
    (tmp_path / "chips" / "images" / "extra.tif").write_bytes(b"x")
    assert not is_chip_dataset_folder(tmp_path / "chips")
    with pytest.raises(BadInputError, match="extra|images"):
        export_chips(ChipExportOptions(output=tmp_path / "chips", chip_size=32, **rstoolbox))
    assert (tmp_path / "chips" / "images" / "extra.tif").exists() and leftovers(tmp_path) == []


class CancelAfter(RecordingEvents):
    def __init__(self, windows):
        super().__init__()
        self.windows = windows

    def progress(self, fraction, message=""):
        super().progress(fraction, message)
        self.windows -= 1
        self.cancel_requested = self.windows <= 0


def test_cancel_and_failure_leave_nothing(rstoolbox, tmp_path):
    events = CancelAfter(5)
    with pytest.raises(Cancelled):
        export_chips(ChipExportOptions(output=tmp_path / "chips", chip_size=32, **rstoolbox), events=events)
    assert not (tmp_path / "chips").exists() and leftovers(tmp_path) == []
    assert len(events.of_type("progress")) == 5

    # a failure after chips were written (no chip is labelled enough) also cleans up; labels from a raster
    # with one 3x3 patch (polygons would keep their best window whatever the labelled share)
    with rasterio.open(rstoolbox["image"]) as src:
        profile = dict(src.profile, count=1, nodata=0)
        patch = np.zeros((1, src.height, src.width), dtype="uint8")
    patch[0, 100:103, 100:103] = 1
    with rasterio.open(tmp_path / "patch.tif", "w", **profile) as dst:
        dst.write(patch)
    with pytest.raises(BadInputError, match="labelled"):
        export_chips(ChipExportOptions(rstoolbox["image"], tmp_path / "chips", labels_raster=tmp_path / "patch.tif",
                                       chip_size=32, min_labelled=0.99))
    assert not (tmp_path / "chips").exists() and leftovers(tmp_path) == []

    # and a cancelled re-export keeps the previous dataset as it was
    export_chips(ChipExportOptions(output=tmp_path / "chips", chip_size=64, **rstoolbox))
    before = (tmp_path / "chips" / "dataset.json").read_text()
    with pytest.raises(Cancelled):
        export_chips(ChipExportOptions(output=tmp_path / "chips", chip_size=32, **rstoolbox), events=CancelAfter(3))
    assert (tmp_path / "chips" / "dataset.json").read_text() == before and leftovers(tmp_path) == []
    assert json.loads(before)["chip_size"] == 64


def test_the_trainers_view_takes_the_dataset_json_file_for_its_folder(chips, tmp_path):
    spec = load_spec(chips / "dataset.json")
    assert spec.folder == chips and spec.chips and spec == load_spec(chips)
    other = tmp_path / "notes.txt"
    other.write_text("not a dataset")
    with pytest.raises(BadInputError, match="is a file, not a chip dataset folder. Choose the folder written by "
                                            "'Export label chips' .the one holding dataset.json."):
        load_spec(other)
    with pytest.raises(BadInputError, match="does not exist"):
        load_spec(tmp_path / "missing")
