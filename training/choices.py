"""Choices made from the training data before any epoch: the architecture for ``auto``, the number of
epochs for 0 (automatic), and whether the training chips can train a classifier at all."""
import numpy as np

from landcover_plugin.core.errors import BadInputError

AUTO = "auto"
SPARSE_SHARE = 0.3  # labelled share of the training chips' pixels below which labels count as sparse
# Epochs for 0 (automatic). Dense labels: 60 (Zion's NLCD labels, map mIoU on the validation chips 0.2554, 0.2545 and
# 0.2555 at seeds 0-2 on the idle machine; 0.2517 with 30 at seed 0). Sparse labels: 30 (Zion's 40 polygons: OA
# 0.596 with 60 against 0.597 with 30, for 8.0 instead of 3.6 min of training).
AUTO_EPOCHS = {"dense": 60, "sparse": 30}


def labelled_share(counts, train_chips: int, chip_size: int) -> float:
    """Share of the training chips' pixels that are labelled."""
    return float(np.sum(counts)) / max(1, train_chips * chip_size * chip_size)


def choose_architecture(name: str, counts, train_chips: int, chip_size: int, events) -> str:
    """``auto``: ``pixel_context`` when labels are sparse (under SPARSE_SHARE of the training chips' pixels
    labelled, as with a few small polygons), else ``unet``. Other names are kept as they are."""
    if name != AUTO:
        return name
    share = labelled_share(counts, train_chips, chip_size)
    chosen = "pixel_context" if share < SPARSE_SHARE else "unet"
    why = "sparse labels: a per-pixel net, its probabilities averaged over 5x5 px" if share < SPARSE_SHARE \
        else "dense labels"
    events.info(f"Architecture 'auto': {share:.1%} of the training chips' pixels are labelled, so {chosen} ({why}).")
    return chosen


def choose_epochs(epochs: int, counts, train_chips: int, chip_size: int, events) -> int:
    """0 (automatic): ``AUTO_EPOCHS["sparse"]`` when labels are sparse (under SPARSE_SHARE of the training chips'
    pixels labelled), else ``AUTO_EPOCHS["dense"]``. Other counts are kept as they are."""
    if epochs:
        return epochs
    share = labelled_share(counts, train_chips, chip_size)
    kind = "sparse" if share < SPARSE_SHARE else "dense"
    events.info(f"Epochs 'automatic': {share:.1%} of the training chips' pixels are labelled ({kind} labels), so "
                f"{AUTO_EPOCHS[kind]} epochs at most (early stopping may end sooner).")
    return AUTO_EPOCHS[kind]


def check_training_pixels(store, train_idx, names, folder, events, tell: bool = True) -> np.ndarray:
    """The training chips' labelled pixels per class (as the loss sees them); refuses fewer than two classes, warns
    of a class without any; ``tell``: log the counts (not for every cross-validation fold but the first)."""
    if not train_idx:
        raise BadInputError(f"The chip dataset '{folder}' has no training chips (all are 'val'). Export the chips "
                            f"again with a validation fraction below 1.")
    counts = store.class_pixel_counts(train_idx)
    present = [n for n, c in zip(names, counts) if c > 0]
    if len(present) < 2:
        raise BadInputError(f"The training chips of '{folder}' hold labelled pixels of {len(present)} class(es) "
                            f"({', '.join(present) or 'none'}); a classifier needs at least two. Digitise training "
                            f"areas for more classes (and check their class field), then export the chips again.")
    missing = [n for n, c in zip(names, counts) if c == 0]
    if missing:
        events.warning(f"No training pixels for: {', '.join(missing)}. The model cannot learn a class it never "
                       f"sees, so it never maps it: digitise training areas for it, or drop it from the schema.")
    if tell:
        events.info("Training pixels per class (a pixel in overlapping chips counts once a chip, as the model sees "
                    "it; the export's log gives distinct pixels): " + ", ".join(f"{n} {int(c)}"
                                                                              for n, c in zip(names, counts)))
    return counts
