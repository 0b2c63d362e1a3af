"""The points of a sample kept a minimum distance apart (QGIS-free, numpy).

Candidates are drawn in excess (``OVERSAMPLE`` per wanted point, at least 50 more) and accepted in their random
order, rarest class first, when far enough from every point accepted so far. A class that falls short only
because its candidates ran out gets more (``GROWTH`` times as many, drawn after the others, so the draw order
stays random) until it is full, every pixel of the class was tried (then the distance truly stops it), or the
search's bound (``SECONDS``, ``MAX_CANDIDATES``) is reached; the warning says which of the two limited it.
"""
import time

import numpy as np

from ..map_units import distance_text

OVERSAMPLE = 4  # candidates per wanted point when a minimum distance may reject some
GROWTH = 4  # a class that falls short draws this many times the candidates it had
SECONDS = 60.0  # no more candidates drawn after this long
MAX_CANDIDATES = 1_000_000  # nor beyond this many in all (memory)


def spaced_points(locate, strata, pixels, wanted, rng, distance: float, transform, events, names: dict,
                  unit="map units") -> list:
    """``[(class, x, y), ...]``: up to ``wanted`` points a class (``pixels``: its pixel count), each at least
    ``distance`` from the others. ``locate(ranks, offsets)``: (class, priority, row, col) of the pixels with these
    ranks (the k-th pixel of each class in reading order), priorities counted from ``offsets``."""
    candidates = wanted + (np.maximum(wanted * (OVERSAMPLE - 1), 50) if distance else 0)
    ranks = [rng.choice(int(n), int(min(n, c)), replace=False) for n, c in zip(pixels, candidates)]
    found = locate(ranks, [0] * len(strata))
    started = time.monotonic()
    while True:
        accepted, short = _thin(found, strata, pixels, wanted, distance, transform)
        grow = [k for k in short if ranks[k].size < pixels[k]]
        room = MAX_CANDIDATES - sum(r.size for r in ranks)
        if not grow or room <= 0 or time.monotonic() - started > SECONDS or events.cancel_requested:
            break
        extra = [np.empty(0, dtype=np.int64) for _ in strata]
        for k in grow:
            more = min(int(pixels[k]), ranks[k].size * GROWTH) - ranks[k].size
            extra[k] = _more_ranks(rng, int(pixels[k]), ranks[k], max(min(more, room // len(grow)), 1))
        found += locate(extra, [r.size for r in ranks])
        ranks = [np.concatenate([r, e]) for r, e in zip(ranks, extra)]
    for k, taken in short.items():
        _warn_short(events, int(strata[k]), names, taken, int(wanted[k]), ranks[k].size, int(pixels[k]), distance,
                    unit)
    return accepted


def _thin(found, strata, pixels, wanted, distance, transform) -> tuple:
    """The points accepted (rarest class first, each class in draw order) and ``{k: points taken}`` of the classes
    that fell short."""
    by_class = {int(c): sorted((p for p in found if p[0] == c), key=lambda p: p[1]) for c in strata}
    accepted, cells, short = [], {}, {}
    for k in np.argsort(pixels, kind="stable"):
        class_id, need, taken = int(strata[k]), int(wanted[k]), 0
        for _, _, row, col in by_class[class_id]:
            if taken == need:
                break
            x, y = transform * (col + 0.5, row + 0.5)
            if distance > 0:
                cell = (int(x // distance), int(y // distance))
                near = (q for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                        for q in cells.get((cell[0] + dx, cell[1] + dy), ()))
                if any((x - qx) ** 2 + (y - qy) ** 2 < distance ** 2 for qx, qy in near):
                    continue
                cells.setdefault(cell, []).append((x, y))
            accepted.append((class_id, x, y))
            taken += 1
        if taken < need:
            short[int(k)] = taken
    return accepted, short


def _more_ranks(rng, n: int, have: np.ndarray, count: int) -> np.ndarray:
    """``count`` ranks of ``range(n)`` not in ``have``, in random order (fewer when fewer are left)."""
    if 2 * (have.size + count) >= n:  # most of the class: draw from what is left
        return rng.permutation(np.setdiff1d(np.arange(n, dtype=np.int64), have, assume_unique=True))[:count]
    out = np.empty(0, dtype=np.int64)
    while out.size < count:
        draw = rng.integers(n, size=2 * (count - out.size) + 16)
        draw = draw[np.sort(np.unique(draw, return_index=True)[1])]  # first of each, in the order drawn
        out = np.concatenate([out, draw[~np.isin(draw, have) & ~np.isin(draw, out)]])
    return out[:count]


def _warn_short(events, class_id, names, taken, need, tried, pixels, distance, unit) -> None:
    name = names[class_id]
    who = f"Class {class_id}" if name == f"class {class_id}" else f"Class {name} ({class_id})"
    apart = distance_text(distance, unit)
    if tried >= pixels:
        events.warning(f"{who}: only {taken} of {need} points could be placed at least {apart} apart: all its other "
                       f"pixels (of {pixels:,}) lie closer than that to a point already placed. Lower the minimum "
                       f"distance for a full sample.")
    else:
        events.warning(f"{who}: only {taken} of {need} points were placed at least {apart} apart, among {tried:,} "
                       f"of its {pixels:,} pixels tried before the search for more stopped (after {SECONDS:g} s or "
                       f"{MAX_CANDIDATES:,} candidates): more may fit at that distance. Lower the minimum distance "
                       f"for a full sample, or draw fewer points.")
