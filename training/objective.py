"""The objective and its measures: class-weighted loss, class weights, learning-rate schedule, evaluation."""
import math

import numpy as np
import torch
import torch.nn.functional as F

from .dataset import IGNORE
from .metrics import summarise


def weighted_loss(logits, labels, pixel_weight):
    """Class-weighted mean cross-entropy over labelled pixels; 0 (not NaN) when a batch has none."""
    safe = labels.clamp(max=logits.shape[1] - 1)
    per_pixel = F.cross_entropy(logits, safe, reduction="none")
    weight = pixel_weight[labels]
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1e-6)


@torch.no_grad()
def evaluate(model, loader, pixel_weight, names, device, amp=False, amp_dtype=torch.float32, should_stop=None,
             on_batch=None, reduce=None):
    """Loss, overall accuracy, mIoU, per-class IoU and the confusion matrix over ``loader``.

    Returns None when ``should_stop()`` turns true part way (a cancel); ``on_batch()`` follows progress;
    ``reduce(matrix, loss_sum, weight_sum)`` sums them in place over the processes of a distributed run (each
    scored its share of the chips), so the scores are those of all the chips.
    """
    model.eval()
    k = len(names)
    matrix = torch.zeros(k * k, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), device=device)
    weight_sum = torch.zeros((), device=device)
    for images, labels in loader:
        if should_stop is not None and should_stop():
            return None
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True).long()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            logits = model(images).float()
        weight = pixel_weight[labels]
        loss_sum += (F.cross_entropy(logits, labels.clamp(max=k - 1), reduction="none") * weight).sum()
        weight_sum += weight.sum()
        keep = labels != IGNORE
        matrix += torch.bincount(labels[keep] * k + logits.argmax(1)[keep], minlength=k * k)
        if on_batch is not None:
            on_batch()
    if reduce is not None:
        reduce(matrix, loss_sum, weight_sum)
    scores = summarise(matrix.view(k, k).cpu().numpy(), names)
    scores["loss"] = round(float(loss_sum / weight_sum.clamp_min(1e-6)), 6)
    scores["confusion"] = matrix.view(k, k).cpu().tolist()
    return scores


@torch.no_grad()
def heldout_pixels(model, loader, device, most: int = 200_000, most_values: int = 2_000_000):
    """``(probabilities, labels)`` of the labelled pixels of ``loader``: the model's class probabilities,
    (n, K) float16, and the labels, (n,) int16 (an evenly spaced subsample of at most ``most`` pixels and
    ``most_values`` probabilities). The held-out estimate takes them as they are, or weighed by the scene's class
    shares as Classify weighs them (heldout.py)."""
    model.eval()
    probabilities, found = [], []
    for images, labels in loader:
        probs = torch.softmax(model(images.to(device)).float(), dim=1)
        labels = labels.to(device).long()
        keep = labels != IGNORE
        probabilities.append(probs.permute(0, 2, 3, 1)[keep].half().cpu().numpy())
        found.append(labels[keep].short().cpu().numpy())
    probabilities, found = np.concatenate(probabilities), np.concatenate(found)
    most = max(1, min(most, most_values // max(1, probabilities.shape[1])))
    step = max(1, -(-found.size // most))
    return probabilities[::step], found[::step]


def class_weights(counts) -> np.ndarray:
    """Inverse square-root frequency, normalised so the average labelled pixel weighs 1, clipped to
    [0.1, 10]. A class with no training pixels gets 1 (it never appears in the loss anyway)."""
    counts = np.asarray(counts, dtype=np.float64)
    present = counts > 0
    weights = np.ones_like(counts)
    freq = counts[present] / counts[present].sum()
    raw = 1.0 / np.sqrt(freq)
    weights[present] = np.clip(raw / (freq * raw).sum(), 0.1, 10.0)
    return weights


def lr_factor(step: int, total: int, schedule: str) -> float:
    """Learning-rate multiplier at a global step of ``total`` steps (see :func:`schedule_factor`)."""
    return schedule_factor(min(step / max(1, total), 1.0), schedule)


# the learning-rate schedules: (share of the run warming up, starting factor, final factor)
SCHEDULE_SHAPES = {"onecycle": (0.3, 1 / 25, 1e-3), "cosine": (0.05, 0.1, 1e-2)}


def schedule_factor(progress: float, schedule: str) -> float:
    """Learning-rate multiplier at ``progress`` (0..1) through the run. ``onecycle``: cosine up from 1/25
    over the first 30 %, then cosine down to 1e-3. ``cosine``: linear warm-up over 5 %, then cosine to 1e-2."""
    warm, start, floor = SCHEDULE_SHAPES[schedule]
    if progress < warm:
        t = progress / warm
        return start + (1 - start) * (0.5 - 0.5 * math.cos(math.pi * t)) if schedule == "onecycle" \
            else start + (1 - start) * t
    t = (progress - warm) / (1 - warm)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def rate_has_fallen(progress: float, schedule: str, share: float = 0.5) -> bool:
    """Whether the schedule is past its peak and down to ``share`` of it: early stopping waits for this,
    because the best epoch at the peak rate is a noisy one (Zion dense labels, seeds 0-2: map mIoU 0.2562
    median against 0.2554 when stopping was allowed at the peak)."""
    return progress >= SCHEDULE_SHAPES[schedule][0] and schedule_factor(progress, schedule) <= share
