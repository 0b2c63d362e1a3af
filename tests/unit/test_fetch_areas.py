"""The areas of a web map layer fetched for label chips: around groups of polygons, on one pixel grid."""
import pytest

from landcover_plugin.core.fetch_areas import MAX_BOXES, fetch_boxes, pixels


def on_grid(value, origin, step):
    return (value - origin) / step == pytest.approx(round((value - origin) / step), abs=1e-6)


def test_polygons_far_apart_are_fetched_apart_and_near_ones_together():
    # three polygons near each other (their 10 px margins overlap, the first and last only through the middle one)
    # and one 5 km away; pixels of 2 m, on the grid of the top-left corner of all (y = 5032 - 2k: 45 goes up to 46)
    boxes = [(0, 0, 20, 20), (50, 5, 70, 25), (100, 0, 110, 10), (5000, 5000, 5010, 5012)]
    areas = fetch_boxes(boxes, 2.0, 2.0, 10)
    assert sorted(areas) == [(-20.0, -20.0, 130.0, 46.0), (4980.0, 4980.0, 5030.0, 5032.0)]
    assert pixels(areas, 2.0, 2.0) == 75 * 33 + 25 * 26  # against 2525 x 2526 for the box of all
    assert fetch_boxes([], 2.0, 2.0, 10) == []


def test_areas_lie_on_one_pixel_grid_and_hold_their_boxes():
    boxes = [(0.3, 0.7, 9.9, 10.1), (1000.05, -500.2, 1003.3, -498.9)]
    areas = fetch_boxes(boxes, 0.3, 0.4, 4)
    left, top = min(a[0] for a in areas), max(a[3] for a in areas)
    for area, box in zip(sorted(areas), sorted(boxes)):
        assert area[0] <= box[0] - 4 * 0.3 + 1e-9 and area[2] >= box[2] + 4 * 0.3 - 1e-9
        assert area[1] <= box[1] - 4 * 0.4 + 1e-9 and area[3] >= box[3] + 4 * 0.4 - 1e-9
        assert on_grid(area[0], left, 0.3) and on_grid(area[2], left, 0.3)
        assert on_grid(area[1], top, 0.4) and on_grid(area[3], top, 0.4)


def test_very_many_polygons_are_fetched_in_their_one_box():
    boxes = [(i * 1000.0, 0.0, i * 1000.0 + 1, 1.0) for i in range(MAX_BOXES + 1)]
    assert fetch_boxes(boxes, 1.0, 1.0, 2) == [(-2.0, -2.0, MAX_BOXES * 1000.0 + 3, 3.0)]
