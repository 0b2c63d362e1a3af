"""Which raster bands a step reads, and in which order: export's band selection, classify's band mapping.

A chip dataset records the source bands it was cut from (``bands.source_bands``, 1-based, in the order the
chips hold them, and ``bands.source_count``, how many bands the source raster had); the trainer copies
them into the model card. Classify then feeds the model raster bands in the card's order:

1. the bands the user gives (``--bands`` / *Bands*), one per band the model takes;
2. else the card's source bands, when the raster looks like the training source (as many bands as it had,
   or another count than the model takes) and holds every one of them;
3. else bands 1..n when the raster has exactly the n bands the model takes;
4. else a clear error naming the bands the model expects and the fix.

Standard library only: the QGIS side uses it to check a dialog's values before the run.
"""
from .errors import BadInputError


def parse_bands(value, what: str = "Bands"):
    """Band numbers from the command line or the API: a list (of ints or digit strings, each maybe
    comma-separated) or comma-separated text; None when empty."""
    if value is None or value == "" or value == []:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    numbers = []
    for item in items:
        for part in str(item).replace(";", ",").split(","):
            if part.strip():
                try:
                    numbers.append(int(part))
                except ValueError as exc:
                    raise BadInputError(f"{what} must be band numbers (1 = the first band), got '{part.strip()}'."
                                        ) from exc
    return numbers or None


def check_band_numbers(bands, count: int, what: str = "raster") -> list:
    """``bands`` checked against a raster of ``count`` bands: each 1..count, none twice."""
    bands = [int(b) for b in bands]
    outside = [b for b in bands if not 1 <= b <= count]
    if outside:
        missing = (f"band {outside[0]} does not exist" if len(outside) == 1 else
                   f"bands {', '.join(map(str, outside))} do not exist")
        raise BadInputError(f"The {what} has {_bands(count)}, numbered 1 to {count}; {missing}. Choose bands 1 to "
                            f"{count}.")
    twice = sorted({b for b in bands if bands.count(b) > 1})
    if twice:
        raise BadInputError(f"Band(s) {', '.join(map(str, twice))} chosen more than once; choose each band "
                            f"once, in the order wanted.")
    return bands


def model_band_names(card_bands: dict) -> list:
    """The names of the bands a model takes, in its order (``band k`` where the card names none)."""
    count = int(card_bands.get("count") or len(card_bands.get("names") or []))
    names = list(card_bands.get("names") or [])
    return names if len(names) == count else [f"band {k + 1}" for k in range(count)]


def source_bands_of(card_bands: dict):
    """The training source's band numbers in the model's order, or None when the card does not record them."""
    bands = card_bands.get("source_bands")
    count = int(card_bands.get("count") or 0)
    if not bands or len(bands) != count:
        return None
    return [int(b) for b in bands]


def describe_model_bands(card_bands: dict) -> str:
    """``3 bands, in this order: 1 'band 4' (source band 4), 2 ...``: what a model expects, for help and logs."""
    names = model_band_names(card_bands)
    source = source_bands_of(card_bands)
    parts = []
    for k, name in enumerate(names):
        origin = f" (source band {source[k]})" if source and name != f"band {source[k]}" else ""
        parts.append(f"{k + 1} '{name}'{origin}")
    return f"{_bands(len(names))}, in this order: " + ", ".join(parts)


def choose_bands(raster_count: int, card_bands: dict, given=None) -> tuple:
    """``(band numbers to read, in the model's order, how they were chosen)`` for a raster of ``raster_count``
    bands and a model whose card says ``card_bands``; a :class:`BadInputError` when no sound choice exists."""
    names = model_band_names(card_bands)
    needed = len(names)
    given = parse_bands(given)
    if given is not None:
        check_band_numbers(given, raster_count)
        if len(given) != needed:
            raise BadInputError(f"{_bands(len(given))} given ({', '.join(map(str, given))}) but the model "
                                f"takes {describe_model_bands(card_bands)}. Give {needed} raster band numbers, "
                                f"one for each of the model's bands, in that order.")
        return given, "as given"
    source = source_bands_of(card_bands)
    source_count = card_bands.get("source_count")
    if source and max(source) <= raster_count and (raster_count == source_count or raster_count != needed):
        return source, "the training source's bands, recorded in the model"
    if raster_count == needed:
        return list(range(1, needed + 1)), "the raster's bands in their order"
    if raster_count < needed:  # no choice of bands can help: do not suggest numbers the raster lacks
        raise BadInputError(f"The raster has too few bands for the model ({raster_count} of {needed}): the model "
                            f"takes {describe_model_bands(card_bands)}. Classify a raster that holds all the bands "
                            f"the model was trained on, or use a model trained on this raster's bands.")
    if source and max(source) <= raster_count:
        hint = f"e.g. {' '.join(map(str, source))}, the training source's bands"
    elif source:  # '1 2 3 4' would read the wrong bands: say which ones the model learnt from
        of = f" of a {source_count}-band raster" if source_count else ""
        hint = (f"the model learnt from bands {', '.join(map(str, source))}{of}: give the bands of this raster "
                f"that hold those")
    else:
        hint = f"e.g. {' '.join(map(str, range(1, needed + 1)))}"
    raise BadInputError(f"The raster has {_bands(raster_count)} but the model takes {describe_model_bands(card_bands)}"
                        f". Choose which raster bands to feed it, in that order (Bands / --bands, {hint}), or "
                        f"classify a raster with the bands the model was trained on.")


def _bands(count: int) -> str:
    return f"{count} band" if count == 1 else f"{count} bands"
