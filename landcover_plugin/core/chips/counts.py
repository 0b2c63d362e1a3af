"""Pixels per class of a chip dataset's chips, as dataset.json stores them and the export tells the analyst."""

RARE_SHARE = 0.01  # a class with under 1 % of the labelled training pixels is "very few"


def chip_pixels(chips, schema, split=None) -> dict:
    """``{"<id>": pixels}`` summed over the chips' class counts (of one split, or all): a pixel in two overlapping
    chips counts twice, as training sees it."""
    totals = {str(c.id): 0 for c in schema}
    for chip in chips:
        if split is None or chip["split"] == split:
            for key, value in chip["class_counts"].items():
                totals[str(key)] += value
    return totals


def class_summary(chips, schema, distinct) -> dict:
    """The chips per split and the distinct labelled pixels per class name (``distinct``: ``{"train": {"<id>":
    pixels}, "val": {...}}``, see :mod:`.distinct`), with the classes missing, rare, or absent from validation."""
    train, val = distinct["train"], distinct["val"]
    labelled_train = sum(train.values())
    names = {str(c.id): c.name for c in schema}
    n_val = sum(c["split"] == "val" for c in chips)
    return {
        "chips": len(chips), "train_chips": len(chips) - n_val, "val_chips": n_val,
        "class_pixels": {names[k]: train[k] + val.get(k, 0) for k in train},
        "train_class_pixels": {names[k]: v for k, v in train.items()},
        "val_class_pixels": {names[k]: v for k, v in val.items()},
        "missing_classes": [names[k] for k, v in train.items() if v == 0],
        "rare_classes": [names[k] for k, v in train.items() if 0 < v < RARE_SHARE * labelled_train],
        "missing_in_val": [names[k] for k, v in val.items() if v == 0] if n_val else [],
    }
