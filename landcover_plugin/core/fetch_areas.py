"""Where to fetch a web map layer for label chips: around the labels, not over the land between them.

Training polygons spread over a town, digitised on a basemap at 0.3 m, span tens of thousands of pixels each way,
though the chips need only the pixels around each polygon. :func:`fetch_boxes` widens each polygon's box by a
chip's margin, merges the boxes that then overlap (a group of polygons is fetched in one piece), and snaps the
pieces outward onto one pixel grid, so that they mosaic exactly into one virtual raster (the land between them no
data). QGIS-free: boxes are ``(xmin, ymin, xmax, ymax)`` in the web layer's CRS.
"""
import math

import numpy as np

MAX_BOXES = 2000  # polygons whose boxes are merged pairwise (a matrix of them); more: one box, as before


def fetch_boxes(boxes, step_x: float, step_y: float, margin: int) -> list:
    """The areas to fetch for label boxes (``[(xmin, ymin, xmax, ymax)]``) at pixels of ``step_x`` by ``step_y``,
    each ``margin`` pixels wider on every side: overlapping areas merged, snapped outward to the pixel grid whose
    origin is the top-left corner of them all. One area (all the labels' box) for more than :data:`MAX_BOXES`."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return []
    widened = boxes + np.array([-margin * step_x, -margin * step_y, margin * step_x, margin * step_y])
    if len(widened) > MAX_BOXES:
        widened = np.array([[widened[:, 0].min(), widened[:, 1].min(), widened[:, 2].max(), widened[:, 3].max()]])
    merged = _merged(widened)
    left, top = merged[:, 0].min(), merged[:, 3].max()
    return [_snapped(box, left, top, step_x, step_y) for box in merged]


def pixels(areas, step_x: float, step_y: float) -> int:
    """How many pixels the areas hold at that pixel size."""
    return int(sum(round((b[2] - b[0]) / step_x) * round((b[3] - b[1]) / step_y) for b in areas))


def _merged(boxes: np.ndarray) -> np.ndarray:
    """Boxes merged until none overlaps another (a merged box can reach a third one: repeat)."""
    while True:
        overlap = ((boxes[:, None, 0] <= boxes[None, :, 2]) & (boxes[None, :, 0] <= boxes[:, None, 2])
                   & (boxes[:, None, 1] <= boxes[None, :, 3]) & (boxes[None, :, 1] <= boxes[:, None, 3]))
        group = _components(overlap)
        if group.max() + 1 == len(boxes):
            return boxes
        boxes = np.array([[boxes[group == g, 0].min(), boxes[group == g, 1].min(), boxes[group == g, 2].max(),
                           boxes[group == g, 3].max()] for g in range(group.max() + 1)])


def _components(adjacent: np.ndarray) -> np.ndarray:
    """Connected-component number (0..) per node of a symmetric boolean adjacency matrix."""
    label = np.arange(len(adjacent), dtype=np.int32)
    while True:
        lowest = np.where(adjacent, label[None, :], len(label)).min(axis=1)
        new = np.minimum(label, lowest)
        new = new[new]
        if np.array_equal(new, label):
            return np.unique(label, return_inverse=True)[1]
        label = new


def _snapped(box, left: float, top: float, step_x: float, step_y: float) -> tuple:
    xmin = left + math.floor((box[0] - left) / step_x + 1e-9) * step_x
    xmax = left + math.ceil((box[2] - left) / step_x - 1e-9) * step_x
    ymax = top - math.floor((top - box[3]) / step_y + 1e-9) * step_y
    ymin = top - math.ceil((top - box[1]) / step_y - 1e-9) * step_y
    return (xmin, ymin, xmax, ymax)
