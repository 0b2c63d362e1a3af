"""The weights a run starts from (initial weights), checked before anything is trained (QGIS-free, no torch).

The analyst's loop retrains from the previous iteration's model. Two ways of doing that lost it:
- the previous model itself (the ``.onnx``) given as initial weights failed after the chips were loaded with
  "not a PyTorch weights file", without saying which file holds its weights;
- a run into the previous model's path wrote its checkpoints into the folder the initial weights were taken from
  (``<model>_checkpoints``), replacing them (and the previous model) without a word: the next run from "the
  previous model" then started from this one.
"""
from pathlib import Path

from ..errors import BadInputError

CHECKPOINT_NAMES = ("refit/best.pt", "best.pt")  # where a model's weights are, by how it was trained


def checkpoint_of_model(model) -> Path:
    """The checkpoint a model of this trainer was exported from (its ``<model>_checkpoints`` folder), or None."""
    model = Path(model)
    folder = model.with_name(model.stem + "_checkpoints")
    return next((folder / name for name in CHECKPOINT_NAMES if (folder / name).is_file()), None)


def check_start_weights(config) -> None:
    """Refuse initial weights that are an ONNX model, or that this run would replace. ``config``: a TrainConfig."""
    if not config.initial_weights:
        return
    weights = Path(config.initial_weights)
    if weights.suffix.lower() == ".onnx":
        found = checkpoint_of_model(weights)
        where = (f"give its checkpoint '{found}' instead" if found else
                 f"give the 'best.pt' in its '{weights.stem}_checkpoints' folder instead (that folder is not "
                 f"beside it any more: train from the checkpoint of the run that wrote it)")
        raise BadInputError(f"The initial weights '{weights}' are an ONNX model, which training cannot start from: "
                            f"{where}. Nothing was trained.")
    resolved = weights.absolute().resolve()
    folder = config.checkpoint_dir.absolute().resolve()
    if folder in resolved.parents:
        raise BadInputError(f"The initial weights '{weights}' are in the checkpoints folder this run writes "
                            f"('{config.checkpoint_dir}'): the run would replace them, and with them the model "
                            f"'{config.output}' they belong to. Give the new model another file name (e.g. "
                            f"'{_next_name(config.output)}') to keep the previous one. Nothing was trained.")


def _next_name(output) -> str:
    output = Path(output)
    for number in range(2, 1000):
        candidate = output.with_name(f"{output.stem}_{number}{output.suffix}")
        if not candidate.exists():
            return str(candidate)
    return str(output.with_name(output.stem + "_new" + output.suffix))
