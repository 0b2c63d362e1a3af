"""The training loop: ``train(config, events) -> outputs``.

AdamW with a one-cycle or warm-up + cosine learning rate (set per batch from the global step, so a
resumed run continues the same curve), class-weighted cross-entropy that ignores unlabelled pixels,
mixed precision on CUDA, the best checkpoint by validation mIoU, early stopping, cancel at the next
batch (the best weights are still exported), ONNX export checked against torch, training curves.
"""
import copy
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents

from . import checkpoint as ckpt
from .config import TrainConfig
from .dataset import IGNORE, ChipDataset, ChipStore, EpochSampler
from .dataset_spec import load_spec
from .device import amp_settings, default_workers, memory_errors, select_device
from .finish import finish_run
from .metrics import summarise
from .networks import build_network


def train(config: TrainConfig, events=None) -> dict:
    events = events if events is not None else RecordingEvents()
    config.validate()
    spec = load_spec(config.dataset_dir)
    torch.manual_seed(config.seed)
    device = select_device(config.device, events, config.threads)
    store = ChipStore(spec, config.cache_mb, events)
    train_idx = [i for i, c in enumerate(spec.chips) if c.split == "train"]
    val_idx = [i for i, c in enumerate(spec.chips) if c.split == "val"]
    names = spec.schema.names
    counts = _check_training_pixels(store, train_idx, names, spec.folder, events)
    if not val_idx:
        events.warning("The dataset has no validation chips: scores are measured on the training chips and "
                       "overstate quality. Export the chips with a validation fraction above 0.")
        val_idx = train_idx
    network = {"architecture": config.architecture, "in_channels": spec.band_count,
               "num_classes": len(names), "base_width": config.base_width}
    data = {"classes": spec.schema.to_list(), "band_names": spec.band_names, "mean": spec.mean, "std": spec.std,
            "chip_size": spec.chip_size, "dtype": spec.dtype, "nodata": spec.nodata, "crs": spec.crs,
            "resolution": spec.resolution}

    state = None
    if config.resume:
        state = ckpt.load(config.resume)
        ckpt.check_compatible(state, network, data, config.resume)
        if state["network"]["architecture"] != config.architecture or \
                state["network"]["base_width"] != config.base_width:
            events.warning(f"Resuming a {state['network']['architecture']} (base width "
                           f"{state['network']['base_width']}); the chosen architecture is ignored.")
        network = dict(state["network"])
    model = build_network(network["architecture"], network["in_channels"], network["num_classes"],
                          network["base_width"])
    if state is None and config.initial_weights:
        ckpt.load_initial_weights(model, config.initial_weights, events)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    amp, amp_dtype, scaling = amp_settings(device, config.amp)
    scaler = torch.amp.GradScaler("cuda", enabled=scaling)

    weights = class_weights(counts) if config.class_weights else np.ones(len(names))
    pixel_weight = torch.zeros(256, device=device)  # indexed by label, 0 at IGNORE
    pixel_weight[:len(names)] = torch.as_tensor(weights, dtype=torch.float32)
    events.info("Class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in zip(names, weights))
                + ("" if config.class_weights else " (class weighting off)"))

    workers = default_workers(device, store.cached) if config.num_workers is None else config.num_workers
    sampler = EpochSampler(len(train_idx), config.seed)
    loader_options = {"num_workers": workers, "pin_memory": device.type == "cuda",
                      "persistent_workers": workers > 0}
    train_loader = DataLoader(ChipDataset(store, train_idx, config.augment, config.colour_augment, config.seed),
                              batch_size=config.batch_size, sampler=sampler,
                              drop_last=len(train_idx) >= 2 * config.batch_size, **loader_options)
    val_loader = DataLoader(ChipDataset(store, val_idx), batch_size=config.batch_size, shuffle=False,
                            **loader_options)

    run = {"epoch": 0, "global_step": 0, "history": [], "best": None, "best_state": None,
           "cancelled": False, "stopped_early": False}
    if state is not None:
        _restore(run, state, model, optimizer, scaler, config, events)
    start = run["epoch"] + 1
    if start > config.epochs:
        events.warning(f"The checkpoint already finished epoch {run['epoch']} of {config.epochs}: "
                       f"nothing left to train. Raise the number of epochs to train further.")
    planned = config.epochs
    steps_per_epoch = len(train_loader)
    batches_total = max(1, (config.epochs - start + 1) * (steps_per_epoch + len(val_loader)))
    done = 0
    events.info(f"Training {network['architecture']} (base width {network['base_width']}, "
                f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters) on {len(train_idx)} "
                f"train / {len(val_idx)} validation chips, batch size {config.batch_size}, epochs {start}.."
                f"{config.epochs}, {workers} loader workers" + (f", mixed precision {amp_dtype}" if amp else "") + ".")
    since_best = 0
    with memory_errors(device, config.batch_size, spec.chip_size):
        for epoch in range(start, config.epochs + 1):
            if epoch > planned:
                break
            tic = time.perf_counter()
            sampler.set_epoch(epoch)
            model.train()
            loss_sum = torch.zeros((), device=device)
            for batch, (images, labels) in enumerate(train_loader):
                if events.cancel_requested:
                    run["cancelled"] = True
                    break
                lr = config.learning_rate * lr_factor(run["global_step"], planned * steps_per_epoch, config.schedule)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True).long()
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                    logits = model(images)
                loss = weighted_loss(logits.float(), labels, pixel_weight)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                loss_sum += loss.detach()
                run["global_step"] += 1
                done += 1
                events.progress(done / batches_total, f"epoch {epoch}/{planned}: batch {batch + 1}/{steps_per_epoch}")
            if run["cancelled"]:
                events.warning(f"Cancelled during epoch {epoch}: that epoch is dropped, the best weights so far "
                               f"are exported.")
                break
            train_seconds = time.perf_counter() - tic
            val = evaluate(model, val_loader, pixel_weight, names, device, amp, amp_dtype, events,
                           lambda: done / batches_total, f"epoch {epoch}/{planned}: validating")
            done += len(val_loader)
            if val is None:
                run["cancelled"] = True
                events.warning(f"Cancelled while validating epoch {epoch}: exporting the best weights so far.")
                break
            row = {"epoch": epoch, "train_loss": round(float(loss_sum) / max(1, steps_per_epoch), 6),
                   "val_loss": val["loss"], "val_accuracy": val["accuracy"], "val_miou": val["miou"],
                   **{f"val_iou_{n}": v for n, v in val["iou"].items()},
                   "lr": float(f"{lr:.3g}"), "train_seconds": round(train_seconds, 3),
                   "chips_per_second": round(steps_per_epoch * config.batch_size / max(train_seconds, 1e-9), 2),
                   "epoch_seconds": round(time.perf_counter() - tic, 3)}
            run["history"].append(row)
            run["epoch"] = epoch
            events.metric(epoch, row)
            improved = _is_better(row, run["best"])
            if improved:
                run["best"] = {k: row[k] for k in ("epoch", "val_miou", "val_accuracy", "val_loss")}
                run["best"]["val_iou"] = val["iou"]
                run["best_state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                since_best = 0
            else:
                since_best += 1
            snapshot = _snapshot(run, model, optimizer, scaler, network, data, config)
            ckpt.save(snapshot, config.checkpoint_dir / ckpt.LAST)
            if improved:
                ckpt.save(snapshot, config.checkpoint_dir / ckpt.BEST)
            if config.time_limit_minutes and epoch == start:
                planned = _plan_epochs(config, epoch, time.perf_counter() - tic, events)
                batches_total = max(1, (planned - start + 1) * (steps_per_epoch + len(val_loader)))
            if config.patience and since_best >= config.patience and epoch < planned:
                run["stopped_early"] = True
                events.info(f"Early stopping after epoch {epoch}: validation mIoU has not improved for "
                            f"{since_best} epochs (best {run['best']['val_miou']} at epoch {run['best']['epoch']}).")
                break
    sample = _verify_sample(val_loader, config, spec.chip_size)
    return finish_run(run, model, network, data, spec, config, device, sample, events)


def weighted_loss(logits, labels, pixel_weight):
    """Class-weighted mean cross-entropy over labelled pixels; 0 (not NaN) when a batch has none."""
    safe = labels.clamp(max=logits.shape[1] - 1)
    per_pixel = F.cross_entropy(logits, safe, reduction="none")
    weight = pixel_weight[labels]
    return (per_pixel * weight).sum() / weight.sum().clamp_min(1e-6)


@torch.no_grad()
def evaluate(model, loader, pixel_weight, names, device, amp, amp_dtype, events=None, fraction=None,
             message=""):
    """Loss, overall accuracy, mIoU and per-class IoU; None when cancelled part way."""
    model.eval()
    k = len(names)
    matrix = torch.zeros(k * k, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), device=device)
    weight_sum = torch.zeros((), device=device)
    for images, labels in loader:
        if events is not None and events.cancel_requested:
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
        if events is not None and fraction is not None:
            events.progress(fraction(), message)
    scores = summarise(matrix.view(k, k).cpu().numpy(), names)
    scores["loss"] = round(float(loss_sum / weight_sum.clamp_min(1e-6)), 6)
    scores["confusion"] = matrix.view(k, k).cpu().tolist()
    return scores


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
    """Learning-rate multiplier at a global step. ``onecycle``: cosine up from 1/25 over the first 30 %,
    then cosine down to 1e-3. ``cosine``: linear warm-up over 5 %, then cosine down to 1e-2."""
    total = max(1, total)
    progress = min(step / total, 1.0)
    if schedule == "onecycle":
        warm, start, floor = 0.3, 1 / 25, 1e-3
    else:
        warm, start, floor = 0.05, 0.1, 1e-2
    if progress < warm:
        t = progress / warm
        return start + (1 - start) * (0.5 - 0.5 * math.cos(math.pi * t)) if schedule == "onecycle" \
            else start + (1 - start) * t
    t = (progress - warm) / (1 - warm)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def _check_training_pixels(store, train_idx, names, folder, events) -> np.ndarray:
    if not train_idx:
        raise BadInputError(f"The chip dataset '{folder}' has no training chips (all are 'val'). Export the chips "
                            f"again with a validation fraction below 1.")
    counts = store.class_pixel_counts(train_idx)
    present = [n for n, c in zip(names, counts) if c > 0]
    if len(present) < 2:
        raise BadInputError(f"The training chips of '{folder}' hold labelled pixels of "
                            f"{len(present)} class(es) ({', '.join(present) or 'none'}); a classifier needs at "
                            f"least two. Digitise training areas for more classes (and check their class field), "
                            f"then export the chips again.")
    missing = [n for n, c in zip(names, counts) if c == 0]
    if missing:
        events.warning(f"No training pixels for {', '.join(missing)}: the model cannot learn "
                       f"{'this class' if len(missing) == 1 else 'these classes'}. Digitise training areas for "
                       f"{'it' if len(missing) == 1 else 'them'} or drop {'it' if len(missing) == 1 else 'them'} "
                       f"from the schema.")
    events.info("Training pixels per class: " + ", ".join(f"{n} {int(c)}" for n, c in zip(names, counts)))
    return counts


def _is_better(row, best) -> bool:
    if best is None:
        return True
    score = row["val_miou"] if row["val_miou"] is not None else -1.0
    best_score = best["val_miou"] if best["val_miou"] is not None else -1.0
    return score > best_score + 1e-6 or (abs(score - best_score) <= 1e-6 and row["val_loss"] < best["val_loss"])


def _snapshot(run, model, optimizer, scaler, network, data, config) -> dict:
    return {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "epoch": run["epoch"],
            "global_step": run["global_step"], "best": run["best"], "history": run["history"],
            "network": network, "data": data, "config": config.to_dict()}


def _restore(run, state, model, optimizer, scaler, config, events) -> None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    run.update(epoch=int(state["epoch"]), global_step=int(state["global_step"]),
               history=list(state.get("history") or []), best=state.get("best"))
    best_path = ckpt.best_beside(config.resume)
    best = ckpt.load(best_path) if best_path is not None and run["best"] else None
    if best is not None and best.get("epoch") == run["best"]["epoch"]:
        run["best_state"] = best["model"]
        if best_path.resolve() != (config.checkpoint_dir / ckpt.BEST).resolve():
            ckpt.save(best, config.checkpoint_dir / ckpt.BEST)
    elif run["best"]:
        run["best_state"] = copy.deepcopy(state["model"]) if run["best"]["epoch"] == run["epoch"] else None
    events.info(f"Resumed from '{config.resume}' after epoch {run['epoch']} (best val mIoU "
                f"{run['best']['val_miou'] if run['best'] else 'n/a'}); continuing at epoch {run['epoch'] + 1}.")


def _plan_epochs(config, epoch, seconds, events) -> int:
    budget = config.time_limit_minutes * 60.0
    planned = max(epoch, min(config.epochs, int(budget // max(seconds, 1e-9))))
    if planned < config.epochs:
        events.info(f"Time limit {config.time_limit_minutes:g} min: an epoch takes {seconds:.1f} s, so training "
                    f"plans {planned} epochs instead of {config.epochs} (the learning-rate schedule follows).")
    return planned


def _verify_sample(loader, config, chip_size):
    tile = config.export_tile_size or chip_size
    if tile != chip_size:
        return None
    images, _ = next(iter(loader))
    return images[:4].numpy()
