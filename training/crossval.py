"""Polygon-grouped k-fold cross-validation before the refit (the held-out estimate when polygons are few).

Each fold trains the chosen network from scratch without its held-out polygon groups (see folds.py) and scores
them after every epoch. The folds' scores are pooled epoch by epoch, so every polygon is scored once by a model
that never saw it; the epoch with the lowest pooled held-out loss (cross-entropy: a proper score, smoother than
mIoU on a few polygons) is the epoch count of the refit that trains the exported model on every polygon, and its
pooled matrix and held-out pixels' probabilities make the estimate (heldout.py). One fold's best mIoU epoch is noise: on
the Zion sparse polygons a fold peaked at epoch 4, and a refit that short mapped 0.09 worse than one of 7-30.
"""
from dataclasses import replace

import numpy as np

from landcover_plugin.core.assess.metrics import metrics_from_confusion
from landcover_plugin.core.train.options import duration_text

from .curves import write_curves
from .dataset import IGNORE
from .distributed import current
from .metrics import summarise
from .objective import heldout_pixels

MOST_PIXELS = 50_000  # held-out pixels' probabilities kept per fold and epoch
MOST_VALUES = 400_000  # and at most this many probabilities (float16: 800 kB a fold and epoch)
FEW_EPOCHS = 10  # folds the time limit stops before this many epochs are warned of (4-5 failed; 11 did well)


def cross_validate(plan, config, spec, store, device, events, training_cls, minutes=None, progress_span=(0.0, 0.8)):
    """Run the folds. Returns ``(result, None)``, or ``(None, training)`` when cancelled (``training``: the fold
    that was running, to export its best weights). ``minutes``: the time for all folds together."""
    k, names = plan.folds, spec.schema.names
    unsplit = [names[c] for c in plan.unsplit_classes]
    events.info(f"Estimating the map's accuracy by {k}-fold cross-validation over {plan.groups} polygon groups "
                f"(each held out once, by a model that never saw it); then training the exported model on all "
                f"polygons." + (f" Not held out (a single polygon group): {', '.join(unsplit)}." if unsplit else ""))
    folds, architecture, epoch_count = [], config.architecture, config.epochs
    low, high = progress_span
    for fold in range(k):
        train_labels, val_labels = plan.labels(store.labels, fold)
        part = replace(config, architecture=architecture, epochs=epoch_count, patience=0,
                       work_dir=str(config.checkpoint_dir / f"fold{fold + 1}"),
                       time_limit_minutes=minutes / k if minutes else None)
        epochs = []  # per epoch: (confusion, (probabilities, labels) of held-out pixels, loss)

        def on_epoch(model, val, loader, epochs=epochs):
            epochs.append((np.asarray(val["confusion"], dtype=np.int64),
                           heldout_pixels(model, loader, device, MOST_PIXELS, MOST_VALUES), float(val["loss"])))

        training = training_cls(part, spec, device, events, store=store, progress_span=(
            low + (high - low) * fold / k, low + (high - low) * (fold + 1) / k), fold={
            "phase": f"fold {fold + 1}/{k}", "train": store.relabelled(train_labels),
            "val": store.relabelled(val_labels), "train_idx": _holding(train_labels),
            "val_idx": _holding(val_labels), "on_epoch": on_epoch})
        # 'auto' and automatic epochs decide once, on the first fold
        architecture, epoch_count = training.network["architecture"], training.config.epochs
        run = training.fit()
        if run["cancelled"] or not epochs:
            return None, training
        folds.append({"epochs": epochs, "history": run["history"], "stopped_by": run["stopped_by"]})
    pooled = _pool(folds, config, spec, architecture, unsplit, plan, events)
    pooled["planned"] = epoch_count
    _warn_if_cut_short(pooled, config, events)
    return pooled, None


def _warn_if_cut_short(pooled: dict, config, events) -> None:
    """A warning in the analyst's terms where the time limit stopped every fold before :data:`FEW_EPOCHS` epochs (and
    before half the planned count). Each fold logs 'Time limit of <its share> reached', which reads as if a smaller
    limit had been set; and the model trained on all polygons gets as few epochs. On the Zion sparse polygons 4
    minutes gave a ResNet-18 U-Net 4-5 epochs a fold, and the scene-pretrained one's map lost forest, the scene's main
    class; the demo's 1 minute gives rstoolbox's per-pixel net 11 a fold and a good map."""
    ran, planned = pooled["fold_epochs"], pooled["planned"]
    if pooled["stopped_by"] != "time limit" or max(ran) >= min(FEW_EPOCHS, planned / 2):
        return
    counts = f"{min(ran)}" if min(ran) == max(ran) else f"{min(ran)}-{max(ran)}"
    events.warning(f"The time limit ({duration_text(config.time_limit_minutes)}) stopped each cross-validation "
                   f"fold after {counts} epochs (of up to {planned}): it is shared by the {len(ran)} folds and the "
                   f"training on all polygons, which gets little more. So short a training can leave classes "
                   f"unlearnt: if the held-out estimate is low or a class is missing from the map, train again with "
                   f"a longer time limit (or none).")


def _pool(folds, config, spec, architecture, unsplit, plan, events) -> dict:
    """The epoch with the lowest pooled held-out loss (over the epochs every fold reached; each fold's loss
    weighted by its held-out pixels; ties: the later) and its pooled confusion matrix and held-out pixels."""
    reached = min(len(f["epochs"]) for f in folds)
    pooled = [sum(f["epochs"][e][0] for f in folds) for e in range(reached)]
    scores = [metrics_from_confusion(m) for m in pooled]
    losses = [sum(f["epochs"][e][2] * f["epochs"][e][0].sum() for f in folds) / max(1, pooled[e].sum())
              for e in range(reached)]
    best = min(range(reached), key=lambda e: (round(losses[e], 4), -e))
    pixels = tuple(np.concatenate([f["epochs"][best][1][i] for f in folds]) for i in range(2))
    events.info(f"Cross-validation: the pooled held-out loss is lowest after epoch {best + 1} of {reached} "
                f"({losses[best]:.3f}; there the held-out polygons' own pixels score overall accuracy "
                f"{scores[best]['overall_accuracy']:.1%}, mIoU {scores[best]['mean_iou']:.1%}; the estimate below "
                f"is for the map).")
    csv_path, png_path = config.curves_paths()
    history = [_pooled_row(e, folds, matrix, loss, spec.schema.names) for e, (matrix, loss)
               in enumerate(zip(pooled, losses))]
    if current().is_main:  # in a distributed run, rank 0 writes
        write_curves(history, (csv_path, png_path), f"{architecture} on {spec.folder.name}: {len(folds)}-fold "
                                                     f"cross-validation", best + 1, events)
    row = history[best]  # what the model card records as the validation figures of the refit's epoch count
    selected = {"epoch": best + 1, "val_miou": row["val_miou"], "val_accuracy": row["val_accuracy"],
                "val_loss": row["val_loss"], "val_iou": summarise(pooled[best], spec.schema.names)["iou"],
                "val_confusion": pooled[best].tolist(),
                "val_source": f"{len(folds)}-fold cross-validation: the held-out pixels of every fold pooled, at "
                              f"epoch {best + 1} (the lowest pooled held-out loss)"}
    return {"confusion": pooled[best], "heldout_pixels": pixels, "epochs": best + 1, "best": selected,
            "architecture": architecture, "val_miou": round(_finite(scores[best]["mean_iou"]), 6),
            "val_accuracy": round(scores[best]["overall_accuracy"], 6), "curves": (str(csv_path), str(png_path)),
            "epochs_run": sum(len(f["history"]) for f in folds), "fold_epochs": [len(f["epochs"]) for f in folds],
            "stopped_by": "time limit" if any(f["stopped_by"] == "time limit" for f in folds) else "epochs",
            "split": {"method": "polygons", "cv_folds": len(folds), "val_polygons": plan.groups,
                      "unsplit_classes": unsplit}}


def _pooled_row(epoch: int, folds, matrix, loss: float, names) -> dict:
    """One row of the curves: every score (mIoU, per-class IoU, accuracy, loss) from the folds' pooled held-out
    pixels, the training loss the folds' mean; the learning rate and timings are fold 1's."""
    scores = summarise(matrix, names)
    train_loss = float(np.mean([f["history"][epoch]["train_loss"] for f in folds]))
    return dict(folds[0]["history"][epoch], train_loss=round(train_loss, 6), val_loss=round(loss, 6),
                val_accuracy=scores["accuracy"], val_miou=round(_finite(scores["miou"]), 6),
                **{f"val_iou_{n}": v for n, v in scores["iou"].items()})


def _holding(labels) -> list:
    """Indices of the chips with a labelled pixel."""
    return [int(i) for i in np.flatnonzero((labels != IGNORE).any(axis=(1, 2)))]


def _finite(value) -> float:
    return -1.0 if value is None or not np.isfinite(value) else float(value)
