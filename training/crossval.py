"""Polygon-grouped k-fold cross-validation before the refit (the held-out estimate when polygons are few).

Each fold trains the chosen network from scratch with early stopping on its held-out polygon groups (see
folds.py); the folds' confusion matrices at their best epochs are pooled, so every polygon is scored once by a
model that never saw it, and the refit trains the exported model on every polygon for the folds' median best
epoch count. The pooled matrix gives the held-out estimate (heldout.py) with the exported model's class shares.
"""
from dataclasses import replace

import numpy as np

from landcover_plugin.core.assess.metrics import metrics_from_confusion

from .curves import write_csv, write_png


def cross_validate(plan, config, spec, store, device, events, training_cls, minutes=None, progress_span=(0.0, 0.8)):
    """Run the folds. Returns ``(result, None)``, or ``(None, training)`` when cancelled (``training``: the fold
    that was running, to export its best weights). ``minutes``: the time for all folds together."""
    k = plan.folds
    names = spec.schema.names
    events.info(f"Estimating the map's accuracy by {k}-fold cross-validation over {plan.groups} polygon groups "
                f"(each held out once, by a model that never saw it); then training the exported model on all "
                f"polygons." + (" Not held out (a single polygon group): " + ", ".join(names[c] for c in
                                                                                      plan.unsplit_classes) + "."
                                 if plan.unsplit_classes else ""))
    confusion, best_epochs, first_history, architecture, epochs_run = None, [], None, config.architecture, 0
    low, high = progress_span
    for fold in range(k):
        train_labels, val_labels = plan.labels(store.labels, fold)
        train_idx = [int(i) for i in np.flatnonzero((train_labels != 255).any(axis=(1, 2)))]
        val_idx = [int(i) for i in np.flatnonzero((val_labels != 255).any(axis=(1, 2)))]
        part = replace(config, architecture=architecture, work_dir=str(config.checkpoint_dir / f"fold{fold + 1}"),
                       time_limit_minutes=minutes / k if minutes else None)
        span = (low + (high - low) * fold / k, low + (high - low) * (fold + 1) / k)
        training = training_cls(part, spec, device, events, store=store, progress_span=span, fold={
            "phase": f"fold {fold + 1}/{k}", "train": store.relabelled(train_labels),
            "val": store.relabelled(val_labels), "train_idx": train_idx, "val_idx": val_idx})
        architecture = training.network["architecture"]  # 'auto' decides once, on the first fold
        run = training.fit()
        if run["cancelled"] or run["best"] is None:
            return None, training
        matrix = np.asarray(run["best"]["val_confusion"], dtype=np.int64)
        confusion = matrix if confusion is None else confusion + matrix
        best_epochs.append(int(run["best"]["epoch"]))
        epochs_run += int(run["epoch"])
        if first_history is None:
            first_history = run["history"]
    pooled = metrics_from_confusion(confusion)
    events.info(f"Cross-validation: best epochs {', '.join(map(str, best_epochs))}; pooled over the held-out "
                f"polygons: overall accuracy {pooled['overall_accuracy']:.1%}, mIoU {pooled['mean_iou']:.1%} "
                f"(unweighted; the estimate below weights classes by their share of the map).")
    csv_path, png_path = config.curves_paths()
    write_csv(first_history, csv_path)
    write_png(first_history, png_path, title=f"{architecture} on {spec.folder.name}, fold 1 of {k}",
              best_epoch=best_epochs[0])
    split = {"method": "polygons", "cv_folds": k, "val_polygons": plan.groups,
             "unsplit_classes": [names[c] for c in plan.unsplit_classes]}
    return {"confusion": confusion, "split": split, "epochs": max(1, int(round(float(np.median(best_epochs))))),
            "fold_best_epochs": best_epochs, "architecture": architecture, "val_miou": pooled["mean_iou"],
            "val_accuracy": pooled["overall_accuracy"], "curves": (str(csv_path), str(png_path)),
            "epochs_run": epochs_run}, None
