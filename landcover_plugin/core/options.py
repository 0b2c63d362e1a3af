"""Options of the engine's commands: one dataclass per command, one field per option, defined once.

A field made with :func:`option` carries its command-line flag, help and choices, so that

* the engine's argparse is generated from the dataclass (:func:`add_arguments`, :func:`from_args`);
* the QGIS side builds the engine's argv from a filled dataclass (:func:`to_argv`) and takes its
  defaults, choices and help from the same fields (:func:`default_of`, :func:`choices_of`, :func:`help_of`);
* the Python API takes the dataclass itself (``classify_raster(ClassifyOptions(...))``).

Values that the command line writes as text (comma-separated numbers, JSON) are kept as that text in the
dataclass and parsed by the command, which reports a bad value as a clear error event rather than
argparse's usage message. Standard library only: QGIS's own Python imports the options modules.
"""
import argparse
import typing
from dataclasses import MISSING, field, fields

from .errors import BadInputError

DEVICES = ("auto", "cpu", "cuda")  # where a model trains or runs; "auto" = CUDA when the engine has it
DEVICE_LABELS = {"auto": "Automatic (GPU when available)", "cpu": "CPU", "cuda": "GPU (CUDA)"}
# Seeds: Processing's integers are C ints (a larger value reached the engine as another number), and numpy's
# legacy seeding takes at most 2**32 - 1; a sample's own seed is drawn below 2**31 too.
SEED_MAX = 2**31 - 1
WEEK_MINUTES = 7 * 24 * 60  # the longest time budget a run takes (a longer one reads as none at all)


def option(default=MISSING, *, help: str, flag: str = None, choices=None, positional: bool = False,
           cli: bool = True, metavar: str = None, to_text=None, nargs: str = None, minimum=None, maximum=None):
    """A dataclass field with its command-line form.

    ``flag`` defaults to ``--name-with-dashes``; a boolean that defaults to True takes a ``--no-...`` flag
    (give it as ``flag``). ``positional`` makes it a positional argument; ``cli=False`` keeps a field out of
    the command line (a library-only setting). ``to_text`` writes a value for the command line (default:
    lists comma-separated, other values as ``str``). ``nargs="*"``: a flag followed by several values (a list).
    ``minimum`` and ``maximum``: the range of a number the command accepts (both included), refused by
    :func:`check_bounds` and given to the Processing dialogs (:func:`bounds_of`), so both refuse the same values.
    """
    metadata = {"help": help, "flag": flag, "choices": tuple(choices) if choices else None,
                "positional": positional, "cli": cli, "metavar": metavar, "to_text": to_text, "nargs": nargs,
                "minimum": minimum, "maximum": maximum}
    if isinstance(default, (list, dict, set)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def cli_fields(options_class) -> list:
    return [f for f in fields(options_class) if f.metadata.get("cli", False)]


def flag_of(f) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def _value_type(options_class, f):
    hint = typing.get_type_hints(options_class)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Union and len(args) == 1:
        hint = args[0]
    return hint


def add_arguments(parser: argparse.ArgumentParser, options_class) -> None:
    """Add one argument per command-line field of ``options_class`` to ``parser``."""
    for f in cli_fields(options_class):
        kind = _value_type(options_class, f)
        meta = dict(f.metadata)
        meta["help"] = meta["help"].replace("%", "%%")  # argparse formats help text: "5 %" would break --help
        if meta["positional"]:
            parser.add_argument(f.name, help=meta["help"], metavar=meta["metavar"])
            continue
        flag = flag_of(f)
        if kind is bool:
            action = "store_false" if f.default is True else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, help=meta["help"])
            continue
        kwargs = {"dest": f.name, "help": meta["help"], "type": kind if kind in (int, float) else str}
        if meta["choices"]:
            kwargs["choices"] = meta["choices"]
        if f.default is MISSING and f.default_factory is MISSING:
            kwargs["required"] = True
        else:
            kwargs["default"] = default_of(options_class, f.name)
        if meta["metavar"]:
            kwargs["metavar"] = meta["metavar"]
        if meta["nargs"]:
            kwargs["nargs"] = meta["nargs"]
        parser.add_argument(flag, **kwargs)


def from_args(options_class, args: argparse.Namespace):
    """The options dataclass filled from parsed arguments (library-only fields keep their defaults)."""
    values = {}
    for f in cli_fields(options_class):
        value = getattr(args, f.name)
        if value == "" and f.default is None:  # an empty optional value means "not given"
            value = None
        values[f.name] = value
    return options_class(**values)


def to_argv(options) -> list:
    """The command-line arguments that :func:`from_args` turns back into ``options`` (as strings).

    Booleans appear as their flag when they differ from the default; ``None`` values are left out. A value goes
    with its flag as ``--flag=value``: argparse would take a separate value starting with a minus sign (an extent
    west of Greenwich, a negative mean) for another option.
    """
    argv, positional = [], []
    for f in cli_fields(type(options)):
        value = getattr(options, f.name)
        if value is None:
            continue
        if f.metadata["positional"]:
            positional.append(str(value))
        elif f.metadata["nargs"]:
            argv += [flag_of(f), *[_text(v) for v in value]]
        elif isinstance(value, bool):
            if value != f.default:
                argv.append(flag_of(f))
        else:
            argv.append(f"{flag_of(f)}={_text(value, f.metadata['to_text'])}")
    return positional + argv


def _text(value, to_text=None) -> str:
    if to_text is not None:
        return to_text(value)
    if isinstance(value, (list, tuple)):
        return ",".join(_text(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def default_of(options_class, name: str):
    f = _field(options_class, name)
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def choices_of(options_class, name: str) -> tuple:
    return _field(options_class, name).metadata.get("choices") or ()


def bounds_of(options_class, name: str) -> tuple:
    """``(minimum, maximum)`` of a number option (None where it has no bound)."""
    metadata = _field(options_class, name).metadata
    return metadata.get("minimum"), metadata.get("maximum")


def check_bounds(options) -> None:
    """Refuse a number outside its option's range, naming the option's flag, the range and the value given."""
    for f in fields(options):
        low, high = f.metadata.get("minimum"), f.metadata.get("maximum")
        value = getattr(options, f.name)
        if (low is None and high is None) or value is None or isinstance(value, bool):
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            name = flag_of(f) if f.metadata.get("cli", True) else f.name
            limits = " and ".join(part for part in (low is not None and f"at least {number_text(low)}",
                                                    high is not None and f"at most {number_text(high)}") if part)
            raise BadInputError(f"{name} must be {limits} (got {number_text(value)}): give a value in that range.")


def number_text(value) -> str:
    """A bound or a value as the analyst typed it: 2147483647, 0.9, 1e-07."""
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}"


def help_of(options_class, name: str) -> str:
    return _field(options_class, name).metadata.get("help", "")


def _field(options_class, name: str):
    for f in fields(options_class):
        if f.name == name:
            return f
    raise KeyError(f"{options_class.__name__} has no option '{name}'")


# -- values the command line writes as text ---------------------------------------------------------
def parse_floats(text, what: str, count: int = None):
    """Comma- (or semicolon-) separated numbers, a list of numbers, or None for empty."""
    if text is None or text == "":
        return None
    values = text if isinstance(text, (list, tuple)) else str(text).replace(";", ",").split(",")
    try:
        numbers = [float(v) for v in values if str(v).strip()]
    except ValueError as exc:
        raise BadInputError(f"{what} must be comma-separated numbers, got '{text}'.") from exc
    if count is not None and len(numbers) != count:
        raise BadInputError(f"{what} needs {count} comma-separated numbers, got '{text}'.")
    return numbers


def parse_names(text):
    """Comma-separated names (or a list of names); None when there are none."""
    if text is None or text == "":
        return None
    values = text if isinstance(text, (list, tuple)) else str(text).split(",")
    names = [str(n).strip() for n in values if str(n).strip()]
    return names or None


def parse_ints(text, what: str):
    """Comma-separated integers (or a list of them); None for empty."""
    if text is None or text == "":
        return None
    values = text if isinstance(text, (list, tuple)) else str(text).split(",")
    try:
        return [int(v) for v in values if str(v).strip()]
    except ValueError as exc:
        raise BadInputError(f"{what} must be comma-separated whole numbers, got '{text}'.") from exc
