"""Which raster bands a step reads, and in which order: export's band selection, classify's band mapping.

A chip dataset records the source bands it was cut from (``bands.source_bands``, 1-based, in the order the
chips hold them, and ``bands.source_count``, how many bands the source raster had); the trainer copies
them into the model card. Classify then feeds the model raster bands in the card's order:

1. the bands the user gives (``--bands`` / *Bands*), one per band the model takes;
2. else the raster's bands named as the model's bands, when every band the model takes has a name (the training
   raster's band descriptions, not 'band k') found on exactly one band of this raster (names compared without
   case): a raster stacked in another order, or with more bands, is read right whatever its band numbers;
3. else the card's source bands, when the raster looks like the training source (as many bands as it had,
   or another count than the model takes) and holds every one of them; a model trained on several rasters whose
   bands were chosen differently (``bands.source_choices``, e.g. bands 1-4 of a 4-band raster and 2-5 of a 7-band
   one) reads a raster by the choice of the training raster with as many bands;
4. else the raster's bands but its alpha band, when that leaves the n bands the model takes (an RGBA raster, e.g.
   a web map layer saved for the engine, under a model of three unnamed bands such as a Deepness model);
5. else bands 1..n when the raster has exactly the n bands the model takes;
6. else a clear error naming the bands the model expects and the fix.

Band names the raster and the model share that end up fed to another of the model's bands (bands given, or a
raster naming only some of them) are reported by :func:`name_mismatch_warning`. Names in another convention
('B4' against 'red') say nothing either way.

Standard library only: the QGIS side uses it to check a dialog's values before the run.
"""
import re

from .errors import BadInputError

COLOUR_NAMES = ("red", "green", "blue")  # colour interpretations that name a band (see band_kinds.band_names)
# Names by position say nothing of what a band holds: chip export's 'band k' for a band without a description,
# and drivers' own ('Layer_1' in ERDAS Imagine files, 'Band_1')
_UNNAMED = re.compile(r"(band|layer)[ _]?\d+")
_SENSOR_BAND = re.compile(r"^b0*(\d+a?)$")


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


def band_label(names, index: int) -> str:
    """The model's band ``index`` (0-based) as ``band 6``, with its name beside it where it has one of its own
    (``band 6 'thermal'``)."""
    label = f"band {index + 1}"
    name = names[index] if index < len(names) else None
    return f"{label} '{name}'" if name and name != label else label


def source_bands_of(card_bands: dict):
    """The training source's band numbers in the model's order, or None when the card does not record them."""
    bands = card_bands.get("source_bands")
    count = int(card_bands.get("count") or 0)
    if not bands or len(bands) != count:
        return None
    return [int(b) for b in bands]


def source_choices(card_bands: dict) -> list:
    """Each training raster's choice of bands, ``[(band numbers in the model's order, that raster's band count),
    ...]``, distinct, the card's ``source_bands`` first; [] when the card records none."""
    first = source_bands_of(card_bands)
    choices = [(first, card_bands.get("source_count"))] if first else []
    count = int(card_bands.get("count") or 0)
    for entry in card_bands.get("source_choices") or ():
        bands = [int(b) for b in entry.get("source_bands") or ()]
        choice = (bands, entry.get("source_count"))
        if len(bands) == count and choice not in choices:
            choices.append(choice)
    return choices


def recorded_choices(band_records) -> list:
    """The ``source_choices`` a model card records for a chip dataset's rasters (their ``bands`` records, the first
    raster's first): each distinct choice of source bands, or [] when they all chose alike (one raster, or rasters
    read by the same band numbers)."""
    choices = []
    for bands in band_records:
        entry = {"source_bands": [int(b) for b in (bands or {}).get("source_bands") or ()],
                 "source_count": (bands or {}).get("source_count")}
        if entry["source_bands"] and entry not in choices:
            choices.append(entry)
    return choices if len(choices) > 1 else []


def describe_choices(choices) -> str:
    """``bands 1, 2, 3, 4 of a 4-band raster; bands 2, 3, 4, 5 of a 7-band raster``."""
    return "; ".join(f"bands {', '.join(map(str, bands))}" + (f" of a {count}-band raster" if count else "")
                     for bands, count in choices)


def describe_model_bands(card_bands: dict) -> str:
    """``3 bands, in this order: 1 'band 4' (source band 4), 2 ...``: what a model expects, for help and logs."""
    names = model_band_names(card_bands)
    source = source_bands_of(card_bands)
    parts = []
    for k, name in enumerate(names):
        origin = f" (source band {source[k]})" if source and name != f"band {source[k]}" else ""
        parts.append(f"{k + 1} '{name}'{origin}")
    return f"{_bands(len(names))}, in this order: " + ", ".join(parts)


def bands_by_name(card_bands: dict, raster_names) -> list:
    """The raster bands (1-based) named as the model's bands, in the model's order; None unless every band the
    model takes has a name that exactly one band of the raster has (``raster_names``: the raster's band
    descriptions, None or '' where a band has none)."""
    keys = [_key(name) for name in raster_names or ()]
    wanted = [_key(name) for name in model_band_names(card_bands)]
    if not keys or not all(wanted):
        return None
    chosen = []
    for name in wanted:
        found = [number for number, key in enumerate(keys, 1) if key == name]
        if len(found) != 1:
            return None
        chosen.append(found[0])
    return chosen if len(set(chosen)) == len(chosen) else None


def name_mismatch_warning(indexes, card_bands: dict, raster_names):
    """A warning when a raster band that bears one of the model's band names is fed to another of its bands (or
    a band it does not take is fed where the raster names the right one elsewhere); None when the names agree
    or are in conventions that share no name."""
    model_keys = [_key(name) for name in model_band_names(card_bands)]
    raster_keys = [_key(name) for name in raster_names or ()]
    if not any(key in raster_keys for key in model_keys if key):
        return None  # no name in common: nothing to compare
    wrong = []
    for position, (number, wanted) in enumerate(zip(indexes, model_keys), 1):
        fed = raster_keys[number - 1] if number <= len(raster_keys) else ""
        if fed == wanted or not fed or not (fed in model_keys or (wanted and wanted in raster_keys)):
            continue
        where = [n for n, key in enumerate(raster_keys, 1) if key and key == wanted]
        right = f"; the raster's band {where[0]} is named '{raster_names[where[0] - 1]}'" if where else ""
        wrong.append(f"raster band {number} '{raster_names[number - 1]}' is fed to the model's band {position} "
                     f"'{model_band_names(card_bands)[position - 1]}'{right}")
    if not wrong:
        return None
    fix = bands_by_name(card_bands, raster_names)
    advice = (f"Choose Bands {' '.join(map(str, fix))} (the bands named as the model's), or leave Bands empty"
              if fix else "Choose the raster bands that hold what the model's bands hold, in its order")
    return (f"The raster's band names do not match the model's bands they are fed to: {'; '.join(wrong)}. The "
            f"classes will be wrong if the names are right. {advice}.")


def choose_bands(raster_count: int, card_bands: dict, given=None, raster_names=None, alpha=None) -> tuple:
    """``(band numbers to read, in the model's order, how they were chosen)`` for a raster of ``raster_count``
    bands and a model whose card says ``card_bands``; ``raster_names``: the raster's band names (None or '' where
    a band has none); ``alpha``: the raster's alpha band that masks it, if any; a :class:`BadInputError` when no
    sound choice exists."""
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
    named = bands_by_name(card_bands, list(raster_names or ())[:raster_count])
    if named:
        return named, "the raster's bands named as the model's"
    choices = source_choices(card_bands)
    if len({tuple(bands) for bands, _ in choices}) > 1:
        fitting = {tuple(bands) for bands, count in choices if count == raster_count and max(bands) <= raster_count}
        if len(fitting) == 1:
            return list(fitting.pop()), f"the bands of the training raster of {_bands(raster_count)}, recorded in " \
                                        f"the model"
        if fitting:
            raise BadInputError(f"The model was trained on rasters of {_bands(raster_count)} whose bands were chosen "
                                f"differently ({describe_choices(choices)}): which ones this raster holds cannot be "
                                f"told. Give Bands (--bands): the raster bands that hold the model's "
                                f"{describe_model_bands(card_bands)}.")
    elif choices:  # one choice of bands, maybe from rasters of several band counts
        source = choices[0][0]
        if max(source) <= raster_count and (raster_count in {c for _, c in choices} or raster_count != needed):
            return source, "the training source's bands, recorded in the model"
    if alpha and raster_count - 1 == needed:
        return [b for b in range(1, raster_count + 1) if b != alpha], "the raster's bands but its alpha band"
    if raster_count == needed:
        return list(range(1, needed + 1)), "the raster's bands in their order"
    if raster_count < needed:  # no choice of bands can help: do not suggest numbers the raster lacks
        raise BadInputError(f"The raster has too few bands for the model ({raster_count} of {needed}): the model "
                            f"takes {describe_model_bands(card_bands)}. Classify a raster that holds all the bands "
                            f"the model was trained on, or use a model trained on this raster's bands.")
    source = source_bands_of(card_bands)
    source_count = card_bands.get("source_count")
    if len({tuple(bands) for bands, _ in choices}) > 1:
        hint = f"the model learnt from {describe_choices(choices)}: give the bands of this raster that hold those"
    elif source and max(source) <= raster_count:
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


def _key(name) -> str:
    """A band name as compared: lower case, single spaces, a sensor band's number without leading zeros ('B02'
    and 'B2', as Sentinel-2 bands are named by SNAP and by Earth Engine); '' for none and for names by position."""
    key = " ".join(str(name or "").lower().split())
    return "" if _UNNAMED.fullmatch(key) else _SENSOR_BAND.sub(r"b\1", key)


def _bands(count: int) -> str:
    return f"{count} band" if count == 1 else f"{count} bands"
