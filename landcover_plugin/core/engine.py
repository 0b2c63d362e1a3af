"""The engine's command line: ``python -m landcover_plugin.core.engine <command> [options]``.

Runs without QGIS. Each command is an options dataclass (its flags, defaults and help; see
:mod:`.options`) and a runner ``run(options, events) -> dict`` (the outputs). The table below names every
command's module; a runner's module is imported only when its command runs, so ``classify`` never pays for
importing torch, and building the parser (``--help`` included) imports no engine package at all.

Exit codes: 0 success, 1 internal error, 2 bad input, 3 out of memory, 4 cancelled.
Every failure also ends with one ``error`` event on stdout, so the QGIS side never has to guess.
"""
import argparse
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Callable

from . import options as opts
from .assess.options import AssessOptions
from .chips.options import ChipExportOptions
from .classify.options import ClassifyOptions
from .env_report import EnvReportOptions
from .errors import LandcoverError
from .events import Events
from .model.quantise_options import QuantiseOptions
from .sample.options import SampleOptions
from .selftest import SelftestOptions
from .suggest.options import SuggestOptions
from .train.options import TrainConfig


def _env_report():
    from .env_report import env_report
    return env_report


def _selftest():
    from .selftest import selftest
    return selftest


def _export_chips():
    from .chips.export import export_command
    return export_command


def _train():
    from training.loop import train  # the trainer (torch): a top-level package beside this one
    return train


def _classify():
    from .classify.run import classify_raster
    return classify_raster


def _quantise():
    from .model.quantise import quantise_model
    return quantise_model


def _assess():
    from .assess.assess import assess_accuracy
    return assess_accuracy


def _create_sample():
    from .sample.draw import create_sample
    return create_sample


def _suggest_areas():
    from .suggest.suggest import suggest_areas
    return suggest_areas


@dataclass(frozen=True)
class Command:
    options: type            # the options dataclass: flags, defaults, help
    load: Callable           # imports and returns ``run(options, events) -> dict``
    help: str


COMMANDS = {
    "env-report": Command(EnvReportOptions, _env_report, "report versions, GPU and execution providers"),
    "selftest": Command(SelftestOptions, _selftest, "check that the engine starts and reports progress"),
    "export-chips": Command(ChipExportOptions, _export_chips, "cut image and label chips into a chip dataset"),
    "train": Command(TrainConfig, _train, "train a segmentation network on a chip dataset and export ONNX"),
    "classify": Command(ClassifyOptions, _classify, "classify a raster with an ONNX model"),
    "assess": Command(AssessOptions, _assess, "assess a classified raster against reference data"),
    "create-sample": Command(SampleOptions, _create_sample,
                             "draw a stratified random sample of reference points from a classified raster"),
    "suggest-areas": Command(SuggestOptions, _suggest_areas,
                             "suggest places to digitise next where the model is unsure, spread over the map"),
    "quantise": Command(QuantiseOptions, _quantise, "write an int8 copy of a model, calibrated on its chip dataset"),
}

EXIT_CODES = {"internal": 1, "bad_input": 2, "out_of_memory": 3, "cancelled": 4}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m landcover_plugin.core.engine",
                                     description="Land-cover engine (QGIS-free).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, command in COMMANDS.items():
        opts.add_arguments(sub.add_parser(name, help=command.help, description=command.help), command.options)
    return parser


def command_argv(command: str, options) -> list:
    """The engine's argv for ``options`` (what the QGIS side runs): ``[command, *flags]``."""
    if not isinstance(options, COMMANDS[command].options):
        raise TypeError(f"'{command}' takes {COMMANDS[command].options.__name__}, not {type(options).__name__}")
    return [command, *opts.to_argv(options)]


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Events own the real stdout; anything else printed goes to stderr.
    with os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8") as stream:  # closed: no ResourceWarning
        real_stdout, sys.stdout = sys.stdout, sys.stderr
        try:
            return _run(argv, Events(stream=stream))
        finally:
            sys.stdout = real_stdout


def _enter_caller_folder() -> None:
    """Work in the folder of whoever started the engine (``LANDCOVER_CALLER_DIR``, set by the plugin's runner),
    so that relative paths in the command mean what they meant there: the runner starts the engine in the
    plugin's folder, never where QGIS happens to be (a stray module there must not shadow ours), and
    ``qgis_process run ... -- INPUT=scene.tif OUTPUT=map.tif`` in a data folder then read and wrote the wrong
    folder. The engine's own packages come from PYTHONPATH, so changing folder does not change what it imports."""
    folder = os.environ.get("LANDCOVER_CALLER_DIR")
    if folder and os.path.isdir(folder):
        os.chdir(folder)


def _run(argv, events) -> int:
    events.install_cancel_handler()
    args = build_parser().parse_args(argv)
    command = COMMANDS[args.command]
    _enter_caller_folder()
    try:
        run = command.load()
    except ImportError as exc:  # a package missing from the engine environment
        missing = getattr(exc, "name", None) or str(exc)
        events.error(f"The engine environment ({sys.executable}) cannot import '{missing}' needed by "
                     f"'{args.command}'. Run the 'Set up engine environment' algorithm, or install the "
                     f"project's requirements into that Python.", "internal")
        traceback.print_exc()
        return EXIT_CODES["internal"]
    try:
        outputs = run(opts.from_args(command.options, args), events)
    except LandcoverError as exc:
        events.error(exc.message, exc.kind)
        return EXIT_CODES.get(exc.kind, 1)
    except MemoryError:
        traceback.print_exc()
        events.error("Ran out of memory. Use a smaller batch size or tile size, or free memory and retry.",
                     "out_of_memory")
        return EXIT_CODES["out_of_memory"]
    except Exception as exc:  # noqa: BLE001 - the last line of defence: report, never die silently
        traceback.print_exc()
        events.error(f"Internal error in '{args.command}': {type(exc).__name__}: {exc}. "
                     f"The engine's log (stderr) has the details.", "internal")
        return EXIT_CODES["internal"]
    events.result(outputs or {})
    return 0


if __name__ == "__main__":
    sys.exit(main())
