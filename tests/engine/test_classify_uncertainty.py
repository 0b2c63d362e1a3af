"""The optional uncertainty raster of ``classify``: entropy or margin of the blended probabilities, checked
against the same net run by torch on the whole Zion raster at once (no tiles), with nodata holes."""
import numpy as np
import pytest
import rasterio
from classify_models import card_for, export, tiny_net, torch_probabilities

from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.classify.run import classify_raster
from landcover_plugin.core.classify.uncertainty import NODATA, uncertainty_percent
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.card import metadata_props

MEAN, STD = [9000, 8000, 7500, 15000], [1000, 1200, 1500, 2500]


@pytest.fixture(scope="module")
def zion_with_holes(shared_data, tmp_path_factory):
    """The Zion image with a nodata hole larger than a tile, and a 4-class model (seed 3) with its net."""
    folder = tmp_path_factory.mktemp("uncertainty")
    with rasterio.open(shared_data / "zion" / "landsat8_2015_b2345.tif") as src:
        data, profile = src.read(), src.profile
    data[:, 300:500, 200:420] = 65535
    image = folder / "zion_holes.tif"
    with rasterio.open(image, "w", **profile) as dst:
        dst.write(data)
    net = tiny_net(4, 4, seed=3)
    card = card_for(["water", "forest", "shrubland", "barren"], mean=MEAN, std=STD, tile=64, input_dtype="uint16",
                    resolution=[30.0, 30.0], nodata=65535, overlap=0.25)
    model = export(net, folder / "m.onnx", 4, 64, metadata_props(card))
    probs = torch_probabilities(net, image, MEAN, STD)
    return folder, image, model, probs, (data == 65535).any(axis=0)


def read(path):
    with rasterio.open(path) as src:
        return src.read(1), src.nodata, src.dtypes[0], src.overviews(1)


@pytest.mark.parametrize("measure", ["entropy", "margin"])
def test_uncertainty_matches_the_untiled_probabilities(zion_with_holes, measure):
    folder, image, model, probs, hole = zion_with_holes
    out = folder / f"u_{measure}.tif"
    result = classify_raster(ClassifyOptions(image, model, folder / f"c_{measure}.tif", uncertainty=out,
                                             uncertainty_measure=measure, batch_size=8), RecordingEvents())
    assert result["UNCERTAINTY"] == str(out)
    values, nodata, dtype, overviews = read(out)
    assert dtype == "uint8" and nodata == NODATA and overviews == [2, 4, 8]
    labels = read(result["OUTPUT"])[0]
    assert ((values == NODATA) == (labels == 0)).all() and (values[hole] == NODATA).all()
    valid = ~hole
    if measure == "entropy":
        p = np.clip(probs, 1e-12, 1)
        expected = -(probs * np.log(p)).sum(axis=0) / np.log(4)
    else:
        top2 = np.sort(probs, axis=0)[-2:]
        expected = 1 - (top2[1] - top2[0])
    expected = np.rint(100 * expected)
    difference = np.abs(values[valid].astype(int) - expected[valid])
    assert values[valid].max() <= 100 and difference.mean() < 0.6, difference.mean()
    assert np.percentile(difference, 99) <= 4
    assert values[valid].std() > 1  # not a constant
    assert (folder / f"u_{measure}.qml").read_text().count("<item ") == 5


def test_uncertainty_percent_ends_and_bad_inputs(tmp_path, zion_with_holes):
    certain = np.array([[[1.0]], [[0.0]], [[0.0]]])
    tie = np.array([[[0.5]], [[0.5]], [[0.0]]])
    flat = np.full((3, 1, 1), 1 / 3)
    ok = np.ones((1, 1), bool)
    assert uncertainty_percent(certain, ok, "entropy")[0, 0] == 0
    assert uncertainty_percent(flat, ok, "entropy")[0, 0] == 100
    assert uncertainty_percent(tie, ok, "margin")[0, 0] == 100
    assert uncertainty_percent(certain * 0.4, ok, "margin")[0, 0] == 0  # blended weights: normalised first
    assert uncertainty_percent(tie, ~ok, "margin")[0, 0] == NODATA
    folder, image, model, _, _ = zion_with_holes
    with pytest.raises(BadInputError, match="its own path"):
        classify_raster(ClassifyOptions(image, model, tmp_path / "same.tif", uncertainty=tmp_path / "same.tif",
                                        overwrite=True), RecordingEvents())
    assert not list(tmp_path.iterdir())  # nothing left behind
    # map.tif and map.tiff: the uncertainty's style replaced the map's map.qml (no class legend in QGIS)
    with pytest.raises(BadInputError, match=r"share the style file .*map\.qml"):
        classify_raster(ClassifyOptions(image, model, tmp_path / "map.tif", uncertainty=tmp_path / "map.tiff"),
                        RecordingEvents())
    assert not list(tmp_path.iterdir())
