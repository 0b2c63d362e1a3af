"""The training curves: a CSV with one row per epoch and a PNG plot (matplotlib, Agg backend)."""
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the headless backend

from landcover_plugin.core.output_folder import replaced_in_place  # noqa: E402 - hidden, this run's own


def write_curves(history: list, paths, title: str, best_epoch, events) -> None:
    """The CSV and the plot; a failed write (a full disk) is a warning: the model beside them is what matters."""
    try:
        write_csv(history, paths[0])
        write_png(history, paths[1], title=title, best_epoch=best_epoch)
    except OSError as exc:
        events.warning(f"Could not write the training curves '{paths[0]}' ({getattr(exc, 'strerror', None) or exc}):"
                       f" the model is not affected. Free space on that disk to keep the curves of the next run.")


def write_csv(history: list, path) -> Path:
    path = Path(path)
    columns = []
    for row in history:
        columns += [key for key in row if key not in columns]
    with replaced_in_place(path, ".csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in history:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    return path


def write_png(history: list, path, title: str = "Training curves", best_epoch: int = None) -> Path:
    path = Path(path)
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, score_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("train_loss", "train loss"), ("val_loss", "validation loss")):
        _plot(loss_axis, epochs, history, key, label)
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss (cross-entropy)")
    loss_axis.set_title("Loss")
    for key, label in (("val_accuracy", "validation overall accuracy"), ("val_miou", "validation mIoU")):
        _plot(score_axis, epochs, history, key, label)
    score_axis.set_ylim(0, 1)
    score_axis.set_xlabel("epoch")
    score_axis.set_title("Validation scores")
    for axis in (loss_axis, score_axis):
        if best_epoch:
            axis.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="best", fontsize="small")
        else:
            axis.text(0.5, 0.5, "no finished epoch", ha="center", va="center", transform=axis.transAxes)
    figure.suptitle(title)
    figure.tight_layout()
    try:
        with replaced_in_place(path, ".png") as tmp:
            figure.savefig(tmp, format="png", dpi=100)
    finally:
        plt.close(figure)
    return path


def _plot(axis, epochs, history, key, label):
    points = [(e, row[key]) for e, row in zip(epochs, history) if row.get(key) is not None]
    if points:
        axis.plot(*zip(*points), marker="o", markersize=3, label=label)
