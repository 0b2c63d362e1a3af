"""Which chip windows must be kept so that every labelled pixel of every training polygon is in some kept chip.

The windows lie on a grid (:func:`.split.window_offsets`), so the raster is cut into *cells* along every window
edge, as in :mod:`.distinct`: a window covers whole cells. The scan counts each cell's training-labelled pixels
once (in the window whose unique span holds it) and marks the cells of every kept training chip. A polygon
that a kept chip holds only in part (a chip at the raster's edge, shifted inward, holding a polygon's last
rows) is not thereby "covered": its other cells still count as missing, and :meth:`CellCover.next_window`
gives windows to write until no labelled cell is left outside a kept chip.
"""
import numpy as np
from rasterio import windows as rio_windows


class CellCover:
    def __init__(self, rows: list, cols: list, chip_size: int):
        self.rows, self.cols, self.chip_size = np.asarray(rows), np.asarray(cols), int(chip_size)
        self.row_edges = np.unique(np.concatenate([self.rows, self.rows + chip_size]))
        self.col_edges = np.unique(np.concatenate([self.cols, self.cols + chip_size]))
        shape = (len(self.row_edges) - 1, len(self.col_edges) - 1)
        self.pixels = np.zeros(shape, dtype=np.int64)  # training-labelled pixels per cell
        self.kept = np.zeros(shape, dtype=bool)  # cells inside a kept training chip

    def _cells(self, row0, row1, col0, col1) -> tuple:
        r0, r1 = np.searchsorted(self.row_edges, [row0, row1])
        c0, c1 = np.searchsorted(self.col_edges, [col0, col1])
        return slice(int(r0), int(r1)), slice(int(c0), int(c1))

    def add(self, window, labelled: np.ndarray, span) -> None:
        """Count the labelled pixels (a bool array of the window) in the window's unique span, cell by cell."""
        (r0, r1), (c0, c1) = span
        row, col = int(window.row_off), int(window.col_off)
        rows, cols = self._cells(row + r0, row + r1, col + c0, col + c1)
        part = labelled[r0:r1, c0:c1].astype(np.int64)
        if rows.stop <= rows.start or cols.stop <= cols.start or not part.any():
            return
        starts_r = self.row_edges[rows.start:rows.stop] - (row + r0)
        starts_c = self.col_edges[cols.start:cols.stop] - (col + c0)
        self.pixels[rows, cols] += np.add.reduceat(np.add.reduceat(part, starts_r, axis=0), starts_c, axis=1)

    def keep(self, window) -> None:
        row, col = int(window.row_off), int(window.col_off)
        self.kept[self._cells(row, row + int(window.height), col, col + int(window.width))] = True

    def missing_pixels(self) -> int:
        """Training-labelled pixels in no kept chip."""
        return int(self.pixels[~self.kept].sum())

    def next_window(self):
        """A window holding the first labelled cell outside every kept chip (the one, of the windows holding it,
        with the most such pixels), marked kept; None when every labelled pixel is in a kept chip."""
        missing = np.where(self.kept, 0, self.pixels)
        if not missing.any():
            return None
        r, c = np.argwhere(missing)[0]
        size = self.chip_size
        rows = self.rows[(self.rows <= self.row_edges[r]) & (self.rows + size >= self.row_edges[r + 1])]
        cols = self.cols[(self.cols <= self.col_edges[c]) & (self.cols + size >= self.col_edges[c + 1])]
        best = max((int(missing[self._cells(row, row + size, col, col + size)].sum()), -int(row), -int(col))
                    for row in rows for col in cols)
        window = rio_windows.Window(-best[2], -best[1], size, size)
        self.keep(window)
        return window
