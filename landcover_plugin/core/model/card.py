"""The self-describing model: our ``landcover_card`` plus the keys the Deepness plugin reads.

DESIGN.md, "Model": the ONNX input is float32 NCHW with a static tile size and dynamic batch; the output
is softmax probabilities (N, K, H, W) where channel k is the k-th class of the card.

The trainer's card also holds ``left_out_classes``: the ids of the classes it had no training pixel of, whose
output channels it shut (probability 0: the model never maps them; [] when none; absent from cards written
before it; :mod:`.mappable`). They stay in ``classes``, the analyst's list.

Normalisation: we feed ``(x - mean_b) / std_b`` on raw pixel values. Deepness feeds
``(x / 255 - m) / s``, so we write ``m = mean_b / 255`` and ``s = std_b / 255``: the same numbers reach the net.
"""
import datetime as _dt
import json
import math

from ..errors import BadInputError
from ..schema import ClassSchema
from .metadata import card_resolution_m

CARD_KEY = "landcover_card"
CARD_SCHEMA_VERSION = 1
DEEPNESS_SCALE = 255.0
MAX_OVERLAP = 0.75  # of the tile: the Processing parameter's maximum; more computes each pixel many times over


def build_card(*, schema: ClassSchema, band_names, input_dtype: str, nodata, mean, std, tile_size: int,
               overlap: float, resolution, crs: str, architecture: str, metrics: dict,
               extra: dict = None, source_bands=None, source_count: int = None, source_choices=None) -> dict:
    """Our full model card (JSON-serialisable). ``source_bands``: the training raster's band numbers (1-based)
    the model's input bands are, in order; ``source_count``: that raster's band count (both from the chip
    dataset; classify reads those bands by default, see :mod:`..band_choice`); ``source_choices``: with several
    training rasters whose bands were chosen differently, each one's ``{"source_bands", "source_count"}``."""
    card = {
        "schema_version": CARD_SCHEMA_VERSION,
        "classes": schema.to_list(),
        "bands": {"count": len(band_names), "names": list(band_names)},
        "input_dtype": input_dtype,
        # NaN as "nan", as in dataset.json: a bare NaN is no JSON (json.dumps writes it; strict readers refuse it)
        "nodata": "nan" if isinstance(nodata, float) and math.isnan(nodata) else nodata,
        "mean": [float(v) for v in mean],
        "std": [float(v) for v in std],
        "tile_size": int(tile_size),
        "overlap": float(overlap),
        "resolution": [float(r) for r in resolution] if resolution is not None else None,
        "crs": crs,
        "architecture": architecture,
        "metrics": metrics,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if source_bands:
        card["bands"]["source_bands"] = [int(b) for b in source_bands]
        card["bands"]["source_count"] = int(source_count) if source_count else None
    if source_choices:
        card["bands"]["source_choices"] = [dict(choice) for choice in source_choices]
    if extra:
        card.update(extra)
    return card


def metadata_props(card: dict) -> dict:
    """All metadata_props (str -> str) for a card: Deepness keys plus ``landcover_card``."""
    resolution = card_resolution_m(card)
    props = {
        "model_type": "Segmentor",
        "class_names": json.dumps({str(k): c["name"] for k, c in enumerate(card["classes"])}),
        "tile_size": str(card["tile_size"]),
        "tiles_size": str(card["tile_size"]),
        "tiles_overlap": str(int(round(card["overlap"] * 100))),
        "standardization_mean": json.dumps([m / DEEPNESS_SCALE for m in card["mean"]]),
        "standardization_std": json.dumps([s / DEEPNESS_SCALE for s in card["std"]]),
        CARD_KEY: json.dumps(card),
    }
    if resolution:
        props["resolution"] = str(round(resolution * 100.0, 4))  # cm per pixel
    return props


def card_from_metadata(props: dict, input_shape, output_channels: int, overrides: dict = None,
                       output_index: int = 0) -> tuple:
    """Make a usable card from whatever metadata a model carries.

    Order of trust: our ``landcover_card``; else the Deepness keys; else ``overrides`` given by the
    user (``class_names``, ``mean``, ``std``). ``input_shape`` is the ONNX input shape (N, C, H, W).
    ``output_index``: which of the model's outputs is classified (Deepness gives a model of several outputs a
    list of ``class_names``, one per output). Returns ``(card, assumptions)`` where ``assumptions`` lists what
    was guessed, for the log.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v not in (None, "", [])}
    assumptions = []
    bands = input_shape[1] if isinstance(input_shape[1], int) else None
    tile = input_shape[2] if isinstance(input_shape[2], int) else None

    if CARD_KEY in props:
        card = json.loads(props[CARD_KEY])
        unused = [what for key, what in (("class_names", "class names"), ("mean", "mean"), ("std", "std"))
                  if key in overrides]
        if unused:  # the card was written with the model: it is trusted over parameters, and that is said
            assumptions.append(f"the model's card records its class names and normalisation: the "
                               f"{', '.join(unused)} given as parameters were not used")
    else:
        card = {"schema_version": CARD_SCHEMA_VERSION, "architecture": "unknown (foreign model)",
                "nodata": None, "resolution": None, "crs": None, "input_dtype": None}
        names = overrides.get("class_names")
        if names is None and "class_names" in props:
            names = _deepness_class_names(props["class_names"], output_index)
        if names is None:
            names = [f"class {k + 1}" for k in range(output_channels)]
            assumptions.append(f"no class names in the model: named them 'class 1'..'class {output_channels}'")
        if len(names) != output_channels:
            raise BadInputError(f"The model has {output_channels} output channels but {len(names)} class "
                                f"names were given ({', '.join(names)}). Give one name per output channel.")
        card["classes"] = ClassSchema.from_names(names).to_list()
        given = "mean" in overrides or "std" in overrides  # the user's normalisation: Deepness's is not read
        deepness_mean = [] if given else _deepness_values(props, "standardization_mean", 0.0)
        deepness_std = [] if given else _deepness_values(props, "standardization_std", 1.0)
        count = bands or _count_from_values(overrides.get("mean"), overrides.get("std"), deepness_mean)
        assumed_count = count is None
        count = count or 3
        if given:
            card["mean"] = _per_band(overrides.get("mean", [0.0]), count, "mean")
            card["std"] = _per_band(overrides.get("std", [1.0]), count, "std")
        elif "standardization_mean" in props or "standardization_std" in props:
            card["mean"] = _per_band([m * DEEPNESS_SCALE for m in deepness_mean], count, "standardization_mean")
            card["std"] = _per_band([s * DEEPNESS_SCALE for s in deepness_std], count, "standardization_std")
            for key, default in (("standardization_mean", 0), ("standardization_std", 1)):
                if key not in props:
                    assumptions.append(f"the model's metadata has no '{key}': used Deepness's default {default} "
                                       f"(after dividing pixel values by 255)")
        else:
            card["mean"], card["std"] = [0.0] * count, [DEEPNESS_SCALE] * count
            card["normalisation_assumed"] = True
            assumptions.append("no normalisation in the model: divided pixel values by 255")
        card["bands"] = {"count": count, "names": [f"band {b + 1}" for b in range(count)]}
        if assumed_count:  # a dynamic channel axis and no per-band values: the count is a guess
            card["bands"]["assumed"] = True
            assumptions.append("the model input does not fix its band count (dynamic channel axis) and its "
                               "metadata does not say it: assumed 3 bands")
        card["tile_size"] = tile or _tile_size(props)
        card["overlap"] = _number(props, "tiles_overlap", 15) / 100.0
        if not 0.0 <= card["overlap"] < 1.0:
            raise _bad_metadata("tiles_overlap", props["tiles_overlap"], "a percentage of the tile from 0 to below 100")
        if card["overlap"] > MAX_OVERLAP:
            assumptions.append(f"the model's metadata asks for tiles overlapping by {props['tiles_overlap']} %: used "
                               f"{100 * MAX_OVERLAP:g} %, the most the classifier runs")
            card["overlap"] = MAX_OVERLAP
        if "resolution" in props:
            metres = _number(props, "resolution", None, positive=True) / 100.0
            card["resolution"] = [metres, metres]
        card["metrics"] = {}
    if tile is not None and card["tile_size"] != tile:
        assumptions.append(f"the card says tile size {card['tile_size']} but the model input is {tile}: used {tile}")
        card["tile_size"] = tile
    if len(card["classes"]) != output_channels:
        raise BadInputError(f"The model card lists {len(card['classes'])} classes but the model has "
                            f"{output_channels} output channels: the model file is inconsistent.")
    return card, assumptions


def _bad_metadata(key: str, value, expected: str) -> BadInputError:
    shown = str(value) if len(str(value)) <= 80 else str(value)[:77] + "..."
    given = {"class_names": "the class names", "standardization_mean": "the normalisation (mean and std)",
             "standardization_std": "the normalisation (mean and std)"}
    instead = f", or give {given[key]} as parameters" if key in given else ""
    return BadInputError(f"The model's metadata key '{key}' is {shown!r}, but it must be {expected} (as the "
                         f"Deepness plugin reads it). Correct the key in the model file "
                         f"(onnx.helper.set_model_props){instead}.")


def _json(props: dict, key: str, expected: str):
    try:
        return json.loads(props[key])
    except ValueError:
        raise _bad_metadata(key, props[key], expected) from None


def _deepness_class_names(text: str, output_index: int = 0) -> list:
    """Names, in output-channel order, from Deepness's ``class_names``: ``{"0": "name", ...}``, a list of names,
    or a list of such dicts, one per model output (Deepness's form for a model with several outputs)."""
    expected = 'JSON such as {"0": "water", "1": "forest"} (or a list of names)'
    value = _json({"class_names": text}, "class_names", expected)
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        if output_index >= len(value):
            raise _bad_metadata("class_names", text, f"one dict of names per output (the classified output is "
                                                     f"number {output_index + 1})")
        value = value[output_index]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    if isinstance(value, dict) and value:
        try:
            keys = sorted(value, key=int)
        except ValueError:
            raise _bad_metadata("class_names", text, expected + ", keyed by output channel numbers") from None
        if all(isinstance(value[k], str) for k in keys):
            return [value[k] for k in keys]
    raise _bad_metadata("class_names", text, expected + ", one name per output channel")


def _deepness_values(props: dict, key: str, default: float) -> list:
    """A Deepness normalisation key: a list of numbers, or one number for every band; ``[default]`` if absent."""
    if key not in props:
        return [default]
    value = _json(props, key, "a JSON number or list of numbers, one per band")
    value = value if isinstance(value, list) else [value]
    if not value or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise _bad_metadata(key, props[key], "a JSON number or list of numbers, one per band")
    return value


def _number(props: dict, key: str, default, positive: bool = False):
    if key not in props:
        return default
    try:
        value = float(props[key])
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (positive and value <= 0):
        raise _bad_metadata(key, props[key], "a positive number" if positive else "a number")
    return value


def _tile_size(props: dict) -> int:
    """The tile of a model that takes any size: Deepness's ``tile_size``/``tiles_size``, else 512 px."""
    key = "tile_size" if "tile_size" in props else "tiles_size"
    size = _number(props, key, 512, positive=True)
    if size != int(size):
        raise _bad_metadata(key, props[key], "a whole number of pixels")
    return int(size)


def _count_from_values(*lists):
    """The band count that per-band values tell (the longest list of more than one value), or None."""
    lengths = [len(v) for v in lists if v and len(v) > 1]
    return max(lengths) if lengths else None


def _per_band(values, count: int, what: str) -> list:
    values = [float(v) for v in values]
    if len(values) == 1:
        return values * count
    if len(values) != count:
        raise BadInputError(f"{what} has {len(values)} values but the model takes {count} bands: "
                            f"give one value, or one per band.")
    return values
