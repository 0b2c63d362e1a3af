"""What to expect of a training run before it starts, from the chip dataset's ``dataset.json`` alone.

Read by the Train algorithm before the engine starts (no torch): a batch as large as the training set makes
every step see the same chips (16 chips in batches of 16: 3 epochs reached a validation mIoU of 0.14, against
0.74 in batches of 2), and a handful of validation chips makes every score noisy.
"""
import json
from pathlib import Path

FEW_VAL_CHIPS = 5
MIN_BATCHES = 2  # fewer full batches of different chips than this in an epoch: the batch size is reduced...
BATCHES_PER_EPOCH = 4  # ...to make this many
MIN_STEPS_PER_EPOCH = 16  # with few chips an epoch repeats them to make this many steps (training/loaders.py)


def chip_counts(dataset_dir) -> tuple:
    """(training chips, validation chips) of a chip dataset; (None, None) when it cannot be read."""
    try:
        spec = json.loads((Path(dataset_dir) / "dataset.json").read_text(encoding="utf-8"))
        splits = [chip.get("split") for chip in spec.get("chips") or []]
    except (OSError, ValueError, AttributeError, TypeError):
        return None, None
    return splits.count("train"), splits.count("val")


def fitted_batch_size(batch_size: int, train_chips) -> int:
    """The batch size to use: the chosen one, or, when the training chips fill fewer than MIN_BATCHES of
    its batches, one that makes BATCHES_PER_EPOCH batches of different chips."""
    if not train_chips or batch_size * MIN_BATCHES <= train_chips:
        return batch_size
    return max(1, min(batch_size, train_chips // BATCHES_PER_EPOCH))


def advice(batch_size: int, train_chips, val_chips) -> tuple:
    """(batch size to use, warnings for the log)."""
    warnings = []
    fitted = fitted_batch_size(batch_size, train_chips)
    if fitted != batch_size:
        warnings.append(f"Batch size {batch_size} is too large for {train_chips} training chips: every step "
                        f"would see nearly the same chips. Using batches of {fitted} instead, so an epoch holds "
                        f"at least {BATCHES_PER_EPOCH} different batches. Export more chips (a smaller stride or "
                        f"chip size, more training areas) to train with larger batches.")
    if val_chips is not None and 0 < val_chips < FEW_VAL_CHIPS:
        warnings.append(f"Only {val_chips} validation chip(s): the validation scores, the best epoch and early "
                        f"stopping rest on very few pixels and jump from epoch to epoch. Export with a larger "
                        f"validation share, or digitise more training areas.")
    return fitted, warnings


def repeats(augment: bool, colour_augment: bool = False) -> str:
    """How an epoch's repeated chips differ, by the augmentation settings (as training/dataset.py draws them)."""
    if augment:
        return "with other flips and rotations" + (" and colours" if colour_augment else "")
    if colour_augment:
        return "with other colours (flips and rotations off)"
    return "unchanged (augmentation off)"


def plan(batch_size: int, train_chips, augment: bool = True, colour_augment: bool = False) -> str:
    """What an epoch will be, for the log before the run ('' when the dataset cannot be read)."""
    if not train_chips:
        return ""
    steps = max(train_chips // batch_size, MIN_STEPS_PER_EPOCH)
    repeated = steps * batch_size > train_chips
    return (f"Expect {steps} steps of {batch_size} chips per epoch ({train_chips} training chips"
            + (f", repeated {repeats(augment, colour_augment)}" if repeated else "")
            + "); after the first epoch, each epoch's line in the log gives the time left.")
