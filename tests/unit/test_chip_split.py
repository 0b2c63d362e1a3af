"""Chip windows, band statistics and the spatial train/val split (QGIS-free, synthetic numbers); the polygon
hold-out on eolearn's wall-to-wall land-cover polygons (real data)."""
import itertools

import numpy as np
import pytest
import rasterio
from osgeo import ogr

from landcover_plugin.core.chips.band_stats import BandStats
from landcover_plugin.core.chips.dataset import load_dataset
from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.chips.split import polygon_groups, polygon_split, spatial_split, unique_spans, window_offsets
from landcover_plugin.core.events import RecordingEvents


@pytest.mark.parametrize("length,chip,stride", [(310, 64, 64), (1428, 256, 256), (287, 64, 48), (100, 100, 50),
                                                (129, 32, 7)])
def test_windows_are_full_size_cover_the_axis_and_spans_cover_it_once(length, chip, stride):
    offsets = window_offsets(length, chip, stride)
    assert offsets[0] == 0 and offsets[-1] == length - chip  # last window shifted inward, full size
    assert all(0 < b - a <= stride for a, b in zip(offsets, offsets[1:]))
    covered = np.zeros(length, dtype=int)
    for offset, (start, stop) in zip(offsets, unique_spans(offsets, chip)):
        covered[offset + start:offset + stop] += 1
    assert (covered == 1).all()


def test_band_stats_match_numpy_over_valid_pixels():
    rng = np.random.default_rng(1)
    stats, kept = BandStats(3), []
    for _ in range(7):
        data = rng.normal(20000, 300, size=(3, 40, 50)).astype(np.float32)
        valid = rng.random((40, 50)) > 0.3
        if _ == 0:
            valid[:] = True
        stats.add(data, valid)
        kept.append(data[:, valid].astype(np.float64))
    everything = np.concatenate(kept, axis=1)
    assert stats.count == everything.shape[1]
    np.testing.assert_allclose(stats.mean, everything.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, everything.std(axis=1), rtol=1e-9)


def _grid(rows, cols, step):
    return [(r * step, c * step) for r, c in itertools.product(range(rows), range(cols))]


def _overlap(a, b, chip):
    return abs(a[0] - b[0]) < chip and abs(a[1] - b[1]) < chip


@pytest.mark.parametrize("step", [64, 32, 16])  # no overlap, half, three quarters
def test_split_never_shares_a_pixel_between_train_and_val(step):
    windows = _grid(12, 10, step)
    splits, info = spatial_split(windows, 64, 0.2, seed=3)
    train = [w for w, s in zip(windows, splits) if s == "train"]
    val = [w for w, s in zip(windows, splits) if s == "val"]
    assert train and val and "warning" not in info
    assert not any(_overlap(t, v, 64) for t in train for v in val)
    dropped = [w for w, s in zip(windows, splits) if s is None]
    assert info["dropped_overlapping"] == len(dropped)
    assert all(any(_overlap(d, v, 64) for v in val) for d in dropped)  # only overlapping chips dropped
    if step == 64:
        assert not dropped and abs(len(val) / len(windows) - 0.2) < 0.1


def test_split_uses_whole_blocks_and_follows_the_seed():
    windows = _grid(8, 8, 64)
    splits, info = spatial_split(windows, 64, 0.25, seed=0)
    assert info["block_size"] == 128
    blocks = {}
    for w, s in zip(windows, splits):
        blocks.setdefault(((w[0] + 32) // 128, (w[1] + 32) // 128), set()).add(s)
    assert all(len(s) == 1 for s in blocks.values())  # a block is all train or all val
    assert spatial_split(windows, 64, 0.25, seed=0)[0] == splits
    assert spatial_split(windows, 64, 0.25, seed=1)[0] != splits


def test_split_falls_back_to_all_train_with_a_warning():
    assert spatial_split([(0, 0)], 64, 0.2) == (["train"], spatial_split([(0, 0)], 64, 0.2)[1])
    splits, info = spatial_split([(0, 0), (0, 10), (10, 0)], 64, 0.3)  # all overlap each other
    assert splits == ["train"] * 3 and "overlap" in info["warning"]
    splits, info = spatial_split(_grid(3, 3, 64), 64, 0.0)
    assert splits == ["train"] * 9 and "warning" not in info


def test_touching_polygons_form_one_group_and_far_ones_do_not():
    boxes = np.array([[0, 0, 10, 10], [10.5, 0, 20, 10], [19, 9, 30, 30], [100, 100, 110, 110]], dtype=float)
    groups = polygon_groups(boxes, gap=1.0)
    assert groups[0] == groups[1] == groups[2] != groups[3]  # 0-1 within the gap, 1-2 overlap: one chain
    assert len(set(polygon_groups(boxes, gap=0.0))) == 3  # 0 and 1 no longer within reach


def test_polygon_split_holds_out_whole_groups_of_every_class_that_has_two():
    classes = np.array([1, 1, 1, 1, 1, 2, 2, 3])
    groups = np.arange(8)
    groups[1] = groups[0]  # polygons 0 and 1 touch: one group
    is_val, info = polygon_split(classes, groups, 0.25, seed=3)
    assert is_val[0] == is_val[1]  # a group is never cut
    for class_id in (1, 2):
        members = is_val[classes == class_id]
        assert members.any() and not members.all()  # in both splits
    assert not is_val[classes == 3].any() and info["unsplit_classes"] == [3]
    assert info["val_polygons"] == int(is_val.sum()) and info["train_polygons"] == 8 - int(is_val.sum())
    again, _ = polygon_split(classes, groups, 0.25, seed=3)
    assert (again == is_val).all()


def test_polygons_group_within_their_class():
    """Touching polygons of one class stay together; a polygon of another class between them does not join
    them (wall-to-wall polygons chained every polygon into one group)."""
    boxes = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [20, 0, 30, 10], [30, 0, 40, 10], [50, 0, 60, 10]],
                     dtype=float)
    classes = np.array([1, 2, 1, 1, 2])
    assert len(set(polygon_groups(boxes, gap=0.5))) == 2  # any class: 0-1-2-3 chain, 4 alone
    groups = polygon_groups(boxes, gap=0.5, classes=classes)
    assert groups[2] == groups[3] != groups[0]  # class 1: 2-3 touch, 0 is apart (1 lies between)
    assert len({groups[1], groups[4]}) == 2 and not {groups[1], groups[4]} & {groups[0], groups[2]}
    assert sorted(set(groups)) == list(range(4))  # numbered 0, 1, ...
    is_val, info = polygon_split(classes, groups, 0.5, seed=0)
    assert info["unsplit_classes"] == [] and is_val[2] == is_val[3]
    for class_id in (1, 2):
        assert is_val[classes == class_id].any() and not is_val[classes == class_id].all()


def _eolearn_export(shared_data, folder, fids=None):
    events = RecordingEvents()
    export_chips(ChipExportOptions(shared_data / "eolearn/sentinel2_13band_composite.tif", folder,
                                   labels_vector=shared_data / "eolearn/lulc_polygons.gpkg", class_field="LULC_NAME",
                                   fids=fids, chip_size=32, stride=16), events=events)
    return load_dataset(folder), [e["message"] for e in events.of_type("log") if e["level"] == "warning"]


def _polygons(shared_data):
    """{fid: (class name, geometry)} of eolearn's polygons, in the raster's CRS."""
    source = ogr.Open(str(shared_data / "eolearn/lulc_polygons.gpkg"))
    layer = source.GetLayer(0)
    with rasterio.open(shared_data / "eolearn/sentinel2_13band_composite.tif") as image:
        assert layer.GetSpatialRef().GetAuthorityCode(None) == str(image.crs.to_epsg())
    return {f.GetFID(): (f.GetField("LULC_NAME"), f.GetGeometryRef().Clone()) for f in layer}


def test_wall_to_wall_polygons_are_held_out_class_by_class(shared_data, tmp_path):
    """eolearn's land-cover polygons cover the scene without gaps, so every polygon touches another: grouped
    class by class, whole groups are held out, no held-out polygon has a training polygon of its class within
    2 pixels, and no labelled pixel is on both sides."""
    dataset, warnings = _eolearn_export(shared_data, tmp_path / "chips")
    split = dataset["split"]
    assert split["method"] == "polygons" and split["val_fids"], warnings
    assert not any("No polygon can be held out" in w for w in warnings)
    polygons = _polygons(shared_data)
    held = set(split["val_fids"])
    gap = 2 * dataset["resolution"][0]
    for fid in held:
        name, geometry = polygons[fid]
        near = {other for other, (n, g) in polygons.items() if n == name and g.Distance(geometry) <= gap}
        assert near <= held, (name, near - held)  # touching polygons of a class are held out together
    for name in {polygons[f][0] for f in held}:  # a class held out still trains
        assert {f for f, (n, _) in polygons.items() if n == name} - held, name
    with rasterio.open(shared_data / "eolearn/sentinel2_13band_composite.tif") as image:
        shape = (image.height, image.width)
    labelled = {"train": np.zeros(shape, dtype=bool), "val": np.zeros(shape, dtype=bool)}
    for chip in dataset["chips"]:
        w = chip["window"]
        with rasterio.open(chip["label_path"]) as label:
            labelled[chip["split"]][w["row_off"]:w["row_off"] + w["height"],
                                    w["col_off"]:w["col_off"] + w["width"]] |= label.read(1) > 0
    assert labelled["val"].any() and not (labelled["train"] & labelled["val"]).any()


def test_when_no_polygon_can_be_held_out_the_warning_says_why(shared_data, tmp_path):
    """Two classes whose polygons each form one group (forest, artificial surface on eolearn): the fallback to
    spatial blocks names each class's polygons and groups."""
    polygons = _polygons(shared_data)
    counts = {}
    for fid, (name, _) in polygons.items():
        counts.setdefault(name, []).append(fid)
    chosen = ["forest", "artificial surface"]
    dataset, warnings = _eolearn_export(shared_data, tmp_path / "chips", sorted(counts[chosen[0]] + counts[chosen[1]]))
    assert dataset["split"]["method"] == "blocks"
    (message,) = [w for w in warnings if w.startswith("No polygon can be held out")]
    for name in chosen:
        assert f"{name} {len(counts[name])} polygons in 1 group" in message
    assert "within 2 pixels" in message and "spatial blocks" in message
