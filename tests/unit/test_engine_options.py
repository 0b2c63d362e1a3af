"""The engine's options: one dataclass per command generates its argparse, the QGIS side's argv and the
Python API. Released flags stay: analysts' scripts and batch files call them."""
import argparse
from dataclasses import fields

import pytest

from landcover_plugin.core import options as opts
from landcover_plugin.core.classify.options import ClassifyOptions
from landcover_plugin.core.engine import COMMANDS, build_parser, command_argv
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.train.options import TrainConfig

# Every flag each command had when it was released (v0.1); new flags may be added, none renamed or removed.
RELEASED_FLAGS = {
    "env-report": {"--require"},
    "selftest": {"--seconds"},
    "export-chips": {"--image", "--output", "--labels-vector", "--labels-layer", "--class-field", "--fids",
                     "--labels-raster", "--schema", "--chip-size", "--stride", "--min-labelled", "--val-fraction",
                     "--seed"},
    "train": {"--output", "--architecture", "--epochs", "--batch-size", "--learning-rate", "--weight-decay",
              "--schedule", "--device", "--no-class-weights", "--no-augment", "--colour-augment", "--patience",
              "--resume", "--initial-weights", "--seed", "--base-width", "--workers", "--threads", "--no-amp",
              "--time-limit-minutes", "--export-tile-size", "--overlap", "--work-dir"},
    "classify": {"--raster", "--model", "--output", "--extent", "--mask", "--overlap", "--batch-size", "--device",
                 "--threads", "--class-names", "--mean", "--std", "--resample", "--confidence", "--overwrite",
                 "--class-shares"},
    "quantise": {"--model", "--dataset", "--output", "--calibration-chips", "--check-chips", "--overwrite"},
    "assess": {"--classified", "--reference-vector", "--class-field", "--layer", "--reference-raster", "--classes",
               "--output-folder", "--html", "--table", "--json", "--block-size"},
    "create-sample": {"--classified", "--output", "--size", "--target-se", "--users-accuracy", "--allocation",
                      "--min-per-class", "--min-distance", "--seed", "--classes", "--layer-name", "--block-size",
                      "--overwrite"},
    "suggest-areas": {"--output", "--uncertainty", "--classified", "--confidence", "--raster", "--model",
                      "--measure", "--count", "--min-distance", "--size", "--class-field", "--class-values",
                      "--layer-name", "--seed", "--block-size", "--overwrite"},
}


def flags_of(command: str) -> set:
    parser = argparse.ArgumentParser()
    opts.add_arguments(parser, COMMANDS[command].options)
    return {s for action in parser._actions for s in action.option_strings} - {"-h", "--help"}


@pytest.mark.parametrize("command", sorted(RELEASED_FLAGS))
def test_released_flags_are_all_still_there(command):
    missing = RELEASED_FLAGS[command] - flags_of(command)
    assert not missing, f"'{command}' lost released flags {sorted(missing)}: add, never rename"


def test_every_command_is_in_the_table_with_a_light_options_class():
    assert set(COMMANDS) == set(RELEASED_FLAGS)
    for command in COMMANDS.values():
        assert all(f.metadata.get("help") for f in fields(command.options)), command.options.__name__


def test_classify_options_round_trip_through_the_command_line():
    options = ClassifyOptions(raster="in.tif", model="m.onnx", output="out.tif", extent=[1.5, 2.0, 3.25, 4.0],
                              overlap=30.0, batch_size=2, device="cpu", class_names=["a", "b"], resample=True,
                              confidence="c.tif", overwrite=True)
    argv = command_argv("classify", options)
    assert argv[:1] == ["classify"] and "--resample" in argv and "--threads" not in argv
    back = opts.from_args(ClassifyOptions, build_parser().parse_args(argv))
    assert back.extent == "1.5,2.0,3.25,4.0" and opts.parse_floats(back.extent, "extent", 4) == [1.5, 2.0, 3.25, 4.0]
    assert opts.parse_names(back.class_names) == ["a", "b"]
    for name in ("raster", "model", "output", "overlap", "batch_size", "device", "resample", "confidence",
                 "overwrite", "mean", "std", "mask", "threads"):
        assert getattr(back, name) == getattr(options, name), name


def test_values_starting_with_a_minus_sign_come_back():
    options = ClassifyOptions(raster="in.tif", model="m.onnx", output="out.tif", extent=[-113.5, -20.0, -112.25, 4.0],
                              mean=[-12.5, 3.0], std=[1.0, 2.0])
    back = opts.from_args(ClassifyOptions, build_parser().parse_args(command_argv("classify", options)))
    assert opts.parse_floats(back.extent, "extent", 4) == [-113.5, -20.0, -112.25, 4.0]
    assert opts.parse_floats(back.mean, "mean") == [-12.5, 3.0]


def test_train_defaults_come_back_unchanged_and_booleans_flip_by_their_flag():
    config = TrainConfig(dataset_dir="chips", output="m.onnx", augment=False, amp=False, colour_augment=True,
                         time_limit_minutes=2.5)
    argv = command_argv("train", config)
    assert argv[1] == "chips" and {"--no-augment", "--no-amp", "--colour-augment"} <= set(argv)
    assert "--no-class-weights" not in argv and "--resume" not in argv
    back = opts.from_args(TrainConfig, build_parser().parse_args(argv))
    assert back == config


def test_empty_optional_values_mean_not_given():
    back = opts.from_args(TrainConfig, build_parser().parse_args(["train", "d", "--output", "m.onnx",
                                                                  "--resume", ""]))
    assert back.resume is None


def test_a_command_refuses_the_wrong_options_class():
    with pytest.raises(TypeError, match="ClassifyOptions"):
        command_argv("classify", TrainConfig(dataset_dir="d", output="m.onnx"))


def test_text_values_give_clear_errors():
    with pytest.raises(BadInputError, match="extent needs 4"):
        opts.parse_floats("1,2,3", "extent", 4)
    with pytest.raises(BadInputError, match="mean must be comma-separated numbers"):
        opts.parse_floats("1,x", "mean")
    assert opts.parse_floats("1;2", "mean") == [1.0, 2.0] and opts.parse_floats("", "mean") is None
    with pytest.raises(BadInputError, match="whole numbers"):
        opts.parse_ints("1,2.5", "Feature ids")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_prints_its_help(command, capsys):
    """``<command> --help`` is what an analyst scripting the engine reads first: a help text with a per cent sign
    in it ('under 30 % of the chips') once broke argparse's formatting of train, create-sample and suggest-areas."""
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    shown = capsys.readouterr().out
    assert done.value.code == 0 and f"engine {command}" in shown
    assert "%%" not in shown  # the text reads as written, not escaped twice
    if command == "train":
        assert "under 30 % of the chips' pixels" in shown
