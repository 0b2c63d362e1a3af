"""The engine's command line: ``python -m landcover_plugin.core.engine <command> [options]``.

Runs without QGIS. Each command is a module with ``add_arguments(parser)`` and
``run(args, events) -> dict`` (the outputs). Commands are listed explicitly below and imported
only when chosen, so ``classify`` never pays for importing torch.

Exit codes: 0 success, 1 internal error, 2 bad input, 3 out of memory, 4 cancelled.
Every failure also ends with one ``error`` event on stdout, so the QGIS side never has to guess.
"""
import argparse
import importlib
import os
import sys
import traceback

from .errors import LandcoverError
from .events import Events

COMMANDS = {
    "env-report": ("landcover_plugin.core.env_report", "report versions, GPU and execution providers"),
    "selftest": ("landcover_plugin.core.selftest", "check that the engine starts and reports progress"),
    "export-chips": ("landcover_plugin.core.chip_export", "cut image and label chips into a chip dataset"),
    "train": ("training.cli", "train a segmentation network on a chip dataset and export ONNX"),
    "classify": ("landcover_plugin.core.classify", "classify a raster with an ONNX model"),
    "assess": ("landcover_plugin.core.accuracy_cli", "assess a classified raster against reference data"),
}

EXIT_CODES = {"internal": 1, "bad_input": 2, "out_of_memory": 3, "cancelled": 4}


def build_parser(command_modules: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m landcover_plugin.core.engine",
                                     description="Land-cover engine (QGIS-free).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        module = command_modules.get(name)
        if module is not None:
            module.add_arguments(sub_parser)
    return parser


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Events own the real stdout; anything else printed goes to stderr.
    events = Events(stream=os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8"))
    sys.stdout = sys.stderr
    events.install_cancel_handler()

    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    modules = {}
    try:
        if chosen:
            modules[chosen] = importlib.import_module(COMMANDS[chosen][0])
    except ImportError as exc:  # a package missing from the engine environment
        missing = getattr(exc, "name", None) or str(exc)
        events.error(f"The engine environment ({sys.executable}) cannot import '{missing}' needed by "
                     f"'{chosen}'. Run the 'Set up engine environment' algorithm, or install the "
                     f"project's requirements into that Python.", "internal")
        traceback.print_exc()
        return EXIT_CODES["internal"]

    args = build_parser(modules).parse_args(argv)
    try:
        outputs = modules[args.command].run(args, events)
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
