"""``create_sample``: a stratified random sample of points from the real Zion NLCD map (8 classes, from
0.1 % to 47 % of the map), checked point by point against the raster."""
import json

import numpy as np
import pytest
import rasterio
from osgeo import ogr

from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.sample import spacing
from landcover_plugin.core.sample.draw import create_sample
from landcover_plugin.core.sample.options import SampleOptions

ogr.UseExceptions()


@pytest.fixture(scope="module")
def zion_map(shared_data, tmp_path_factory):
    """NLCD as a classified map (255 -> 0 = no data) and its pixel counts per class."""
    with rasterio.open(shared_data / "zion" / "nlcd2011_8class.tif") as src:
        data, profile = src.read(1), src.profile
    data[data == 255] = 0
    profile.update(nodata=0)
    path = tmp_path_factory.mktemp("zion_map") / "nlcd_map.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path, data, profile["transform"], np.bincount(data.ravel(), minlength=9)


def read_points(path):
    source = ogr.Open(str(path))
    layer = source.GetLayerByName("reference_sample")
    points = [(f.GetField("sample_id"), f.GetField("map_class"), f.GetField("reference_class"),
               f.GetGeometryRef().GetX(), f.GetGeometryRef().GetY()) for f in layer]
    design = json.loads(layer.GetMetadataItem("landcover_sample_design"))
    tables = {name: [f.items() for f in source.GetLayerByName(name)]
              for name in ("landcover_classes", "landcover_sample_design")}
    return points, design, tables


def test_recommended_allocation_points_on_their_map_class(zion_map, tmp_path, shared_data):
    path, data, transform, counts = zion_map
    events = RecordingEvents()
    out = create_sample(SampleOptions(path, tmp_path / "sample.gpkg", size=600, min_per_class=50, seed=7,
                                      classes=str(shared_data / "zion" / "classes.json"), block_size=300), events)
    points, design, tables = read_points(tmp_path / "sample.gpkg")
    assert out["SAMPLE_SIZE"] == len(points) == 600 and out["SEED"] == 7
    assert sorted(p[0] for p in points) == list(range(1, 601))
    per_class = np.bincount([p[1] for p in points], minlength=9)[1:]
    # Six classes cover under 8 % of the map: each gets the minimum (barren's 7.3 % would give it 44 of
    # 600, and 26 of the 350 left after the five rarest). The remaining 300 go to forest and shrubland by area.
    rare = np.argsort(counts[1:])[:6]
    assert (per_class[rare] == 50).all()
    common = np.setdiff1d(np.arange(8), rare)
    assert common.tolist() == [3, 4]
    expected = 300 * counts[1:][common] / counts[1:][common].sum()
    assert np.abs(per_class[common] - expected).max() <= 1
    inverse = ~transform
    cells = set()
    for _, map_class, reference_class, x, y in points:
        col, row = inverse * (x, y)
        assert col % 1 == pytest.approx(0.5) and row % 1 == pytest.approx(0.5)  # pixel centres
        assert data[int(row), int(col)] == map_class  # on a pixel of its class
        assert reference_class is None  # left for the interpreter
        cells.add((int(row), int(col)))
    assert len(cells) == 600  # without replacement
    assert design["allocation"] == "recommended" and design["seed"] == 7 and design["size"] == 600
    assert [s["mapped_pixels"] for s in design["strata"]] == counts[1:].tolist()
    assert [s["drawn"] for s in design["strata"]] == per_class.tolist()
    assert [row["name"] for row in tables["landcover_classes"]][:2] == ["Water", "Developed"]
    assert [row["allocated"] for row in tables["landcover_sample_design"]] == per_class.tolist()


def test_same_seed_same_sample_and_minimum_distance(zion_map, tmp_path):
    path = zion_map[0]
    options = dict(size=300, allocation="equal", seed=11, min_distance=150.0)
    create_sample(SampleOptions(path, tmp_path / "a.gpkg", **options), RecordingEvents())
    create_sample(SampleOptions(path, tmp_path / "b.gpkg", **options), RecordingEvents())
    a, _, _ = read_points(tmp_path / "a.gpkg")
    b, _, _ = read_points(tmp_path / "b.gpkg")
    assert a == b
    assert np.bincount([p[1] for p in a], minlength=9)[1:].tolist() == [38, 38, 38, 38, 37, 37, 37, 37]
    xy = np.array([(p[3], p[4]) for p in a])
    distances = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(axis=2)) + np.eye(len(xy)) * 1e9
    assert distances.min() >= 150.0
    # Water (1,334 pixels in a few small reservoirs) cannot hold 38 points 1 km apart: fewer, and a warning.
    events = RecordingEvents()
    out = create_sample(SampleOptions(path, tmp_path / "far.gpkg", **{**options, "min_distance": 1000.0}), events)
    drawn = {s["name"]: s["drawn"] for s in out["DESIGN"]["strata"]}
    assert drawn["class 1"] < 38 and out["SAMPLE_SIZE"] == sum(drawn.values()) < 300
    assert any(e["message"].startswith("Class 1: only") and "at least 1,000 m apart" in e["message"]
               and "all its other pixels (of 1,334) lie closer" in e["message"]  # the distance stops it, truly
               and "Lower the minimum distance" in e["message"] for e in events.of_type("log"))
    create_sample(SampleOptions(path, tmp_path / "c.gpkg", **{**options, "seed": 12}), RecordingEvents())
    assert read_points(tmp_path / "c.gpkg")[0] != a


def test_a_class_short_of_candidates_draws_more_before_blaming_the_distance(zion_map, tmp_path, monkeypatch):
    """Only about 4x the wanted points of a class were drawn as candidates: water (1,334 pixels) got 43 of its 50
    points 150 m apart and the warning said to lower the distance, while 50 fit once more of its pixels are tried."""
    path, data, transform, counts = zion_map
    options = dict(size=800, seed=1, min_distance=150.0)
    events = RecordingEvents()
    out = create_sample(SampleOptions(path, tmp_path / "full.gpkg", **options), events)
    strata = out["DESIGN"]["strata"]
    assert [s["drawn"] for s in strata] == [s["allocated"] for s in strata] and strata[0]["allocated"] == 50
    assert not [e for e in events.of_type("log") if e["level"] == "warning"]
    points, _, _ = read_points(tmp_path / "full.gpkg")
    xy = np.array([(p[3], p[4]) for p in points])
    distances = np.sqrt(((xy[:, None] - xy[None]) ** 2).sum(axis=2)) + np.eye(len(xy)) * 1e9
    assert distances.min() >= 150.0
    inverse = ~transform
    assert all(data[int((inverse * (x, y))[1]), int((inverse * (x, y))[0])] == c for _, c, _, x, y in points)
    # a search stopped by its bound says so, not that the distance is too large
    monkeypatch.setattr(spacing, "SECONDS", -1.0)
    events = RecordingEvents()
    out = create_sample(SampleOptions(path, tmp_path / "stopped.gpkg", **options), events)
    (warning,) = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert warning.startswith(f"Class 1: only {out['DESIGN']['strata'][0]['drawn']} of 50 points were placed")
    assert "of its 1,334 pixels tried before the search for more stopped" in warning and "more may fit" in warning


def test_size_from_a_target_standard_error(zion_map, tmp_path):
    path = zion_map[0]
    events = RecordingEvents()
    out = create_sample(SampleOptions(path, tmp_path / "se.gpkg", target_se=0.02,
                                      users_accuracy="0.7,0.8,0.9,0.9,0.8,0.6,0.9,0.7", allocation="proportional",
                                      seed=1), events)
    weights = zion_map[3][1:] / zion_map[3][1:].sum()
    ua = np.array([0.7, 0.8, 0.9, 0.9, 0.8, 0.6, 0.9, 0.7])
    n = (weights * np.sqrt(ua * (1 - ua))).sum() ** 2 / 0.02 ** 2  # Olofsson et al. eq. 13, N large
    assert out["SAMPLE_SIZE"] == int(np.ceil(n))
    assert out["DESIGN"]["users_accuracy_anticipated"] == ua.tolist()
    assert any("Cochran" in e["message"] for e in events.of_type("log"))


def test_bad_inputs_name_the_fix(zion_map, tmp_path):
    path = zion_map[0]
    with pytest.raises(BadInputError, match="sample size, or a target standard error"):
        create_sample(SampleOptions(path, tmp_path / "x.gpkg"), RecordingEvents())
    with pytest.raises(BadInputError, match="one per mapped class"):
        create_sample(SampleOptions(path, tmp_path / "x.gpkg", target_se=0.01, users_accuracy="0.8,0.9"),
                      RecordingEvents())
    with pytest.raises(BadInputError, match="ending in .gpkg"):
        create_sample(SampleOptions(path, tmp_path / "x.shp", size=10), RecordingEvents())
    create_sample(SampleOptions(path, tmp_path / "x.gpkg", size=10), RecordingEvents())
    with pytest.raises(BadInputError, match="may hold labelled points: it is not replaced. Choose another file "
                                            "name, or delete the old file") as error:
        create_sample(SampleOptions(path, tmp_path / "x.gpkg", size=10), RecordingEvents())
    assert "--overwrite" not in str(error.value)  # nothing a QGIS user can act on
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gpkg"]  # no partial file left behind


def test_classes_left_with_too_few_points_are_warned_about_with_the_fix(zion_map, tmp_path):
    """Proportional allocation of 100 points gives the rarest Zion classes 0 or 1 point: Assess can then give
    no area estimate, so the sample's creation says so and names the minimum per class."""
    path = zion_map[0]
    events = RecordingEvents()
    out = create_sample(SampleOptions(path, tmp_path / "p.gpkg", size=100, allocation="proportional", seed=1), events)
    thin = [s for s in out["DESIGN"]["strata"] if s["allocated"] < 2]
    assert thin  # Zion's rarest classes cover well under 1 % of the map
    warnings = [e["message"] for e in events.of_type("log") if e["level"] == "warning"]
    assert len(warnings) == 1 and "fewer than 2 points (proportional allocation)" in warnings[0]
    assert all(f"{s['name']} {s['allocated']}" in warnings[0] for s in thin)
    assert "no area estimates" in warnings[0]
    assert "recommended allocation with a minimum points per class" in warnings[0]
    events = RecordingEvents()
    create_sample(SampleOptions(path, tmp_path / "r.gpkg", size=400, min_per_class=50, seed=1), events)
    assert not [e for e in events.of_type("log") if e["level"] == "warning"]  # recommended: 50 in every class
