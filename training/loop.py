"""The training loop: ``train(config, events) -> outputs``.

AdamW with a one-cycle or warm-up + cosine learning rate, set per batch from the run's progress (the global
step, or the clock under a time limit, whichever is further), so a resumed run continues the same curve and
a time-limited run ends annealed however fast its epochs go. Class-weighted cross-entropy that ignores
unlabelled pixels; mixed precision on CUDA; the best checkpoint by validation mIoU; early stopping (once the
schedule is down to half its peak rate) that anneals the learning rate over a short tail before it stops;
cancel at the next batch (the best weights are still exported); ONNX export checked against torch; training
curves.
"""
import math
import time
from contextlib import nullcontext
from dataclasses import replace

import numpy as np
import torch

from landcover_plugin.core.chips.dataset import load_spec
from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.class_shares import learned_prior
from landcover_plugin.core.train.options import TrainConfig, duration_text

from . import checkpoint as ckpt
from . import distributed
from .choices import AUTO, check_training_pixels, choose_architecture, choose_epochs
from .dataset import ChipStore
from .device import amp_settings, memory_errors, select_device
from .finetune import FineTune, resolve_architecture
from .finish import finish_run
from .heldout import describe as describe_heldout
from .loaders import make_loaders
from .networks import build_network, leave_out_classes
from .objective import class_weights, evaluate, lr_factor, rate_has_fallen, schedule_factor, weighted_loss
from .refit import note_no_cross_validation, train_then_refit
from .run_lock import exclusive_run
from .step import train_step
from .writing import check_writable

NO_VALIDATION = {"loss": None, "accuracy": None, "miou": None, "iou": {}, "confusion": None}

__all__ = ["train", "choose_architecture", "class_weights", "evaluate", "lr_factor", "weighted_loss"]


def train(config: TrainConfig, events=None) -> dict:
    """Train on ``config.dataset_dir`` and export ``config.output``; returns the outputs (see finish.py).

    Raises BadInputError (bad dataset or settings) and OutOfMemoryError (with the fix in the message).
    A cancel (``events.cancel_requested``) is not an error: the outputs say ``cancelled: True``.
    """
    events = events if events is not None else RecordingEvents()
    config = config.validate().absolute()  # the paths it returns are valid from any folder
    if distributed.rank() == 0:  # the process that writes (rank 0 under torchrun): fail now, not after training
        check_writable(config)
    with exclusive_run(config) if distributed.takes_run_lock() else nullcontext():  # one run into a model at once
        return _launch_or_join(config, events)


def _launch_or_join(config, events) -> dict:
    if distributed.wants_launch(config):  # --nproc N: the same command on N processes, under torchrun
        return distributed.launch(config, events)
    group = distributed.join(config, events)  # under torchrun: this process is one rank of the training
    ended_well = False
    try:
        outputs = _train(config, events, group)
        group.finished()
        ended_well = True
        return outputs
    finally:
        group.close(wait_for_result=ended_well)


def _train(config, events, group) -> dict:
    spec = load_spec(config.dataset_dir)
    torch.manual_seed(config.seed)
    device = distributed.place(select_device(config.device, events, distributed.threads_for(config, group)),
                               group)
    split = spec.raw.get("split") or {}
    held_out = split.get("method") == "polygons" and any(c.split == "val" for c in spec.chips)
    refit = config.refit and not config.resume and held_out
    if held_out and not refit:
        note_no_cross_validation(config, split, events)
    with memory_errors(device, config.batch_size, spec.chip_size):
        if refit:
            outputs = train_then_refit(config, spec, device, events, split, _Training)
        else:
            outputs = _Training(config, spec, device, events).run()
    if outputs.get("HELDOUT"):
        events.info(describe_heldout(outputs["HELDOUT"]))
    return outputs


class _Training:
    def __init__(self, config: TrainConfig, spec, device, events, final_fit: bool = False, heldout: dict = None,
                 store: ChipStore = None, fold: dict = None, progress_span=(0.0, 1.0)):
        """``store``: the chips, when already read; ``fold``: one cross-validation fold (``phase`` for the metric
        events, ``train``/``val`` stores and chip indices) instead of the dataset's split; ``heldout``: the
        estimate made before a refit, or ``(confusion, split)`` to make it from the exported model."""
        self.config, self.spec, self.device, self.events = config, spec, device, events
        self.group = group = distributed.current()
        self.final_fit, self.heldout, self.progress_span = final_fit, heldout, progress_span
        self.interim = False  # True: a model a refit replaces (its tile agreement is not measured)
        # a refit trains at least the epochs its held-out estimate is of, whatever the time limit (see fit)
        self.min_epochs = 0
        self.store = store if store is not None else ChipStore(spec, config.cache_mb, events)
        self.val_store, self.phase, self.on_epoch = self.store, "refit" if final_fit else None, None
        self.train_idx = [i for i, c in enumerate(spec.chips) if c.split == "train"]
        self.val_idx = [i for i, c in enumerate(spec.chips) if c.split == "val"]
        if fold is not None:
            self.store, self.val_store, self.phase = fold["train"], fold["val"], fold["phase"]
            self.on_epoch = fold.get("on_epoch")  # (model, validation scores, validation loader) after each epoch
            self.train_idx, self.val_idx = fold["train_idx"], fold["val_idx"]
        self.names = spec.schema.names
        # a cross-validation fold's set-up (pixel counts, class weights, chip repetition) differs from the first
        # fold's by the polygons held out: the first fold's says it, the others' would repeat it (3 lines a fold)
        tell = self.phase is None or not self.phase.startswith("fold ") or self.phase.startswith("fold 1/")
        counts = check_training_pixels(self.store, self.train_idx, self.names, spec.folder, events, tell)
        if not self.val_idx and not final_fit:
            events.warning("The dataset has no validation chips: scores are measured on the training chips and "
                           "overstate quality. Export the chips with a validation fraction above 0.")
            self.val_idx = self.train_idx
        if final_fit:
            self.val_idx = []
        architecture = resolve_architecture(config.architecture, config, events)
        architecture = choose_architecture(architecture, counts, len(self.train_idx), spec.chip_size, events)
        self.config = config = replace(config, epochs=choose_epochs(config.epochs, counts, len(self.train_idx),
                                                                    spec.chip_size, events))
        self.network = {"architecture": architecture, "in_channels": spec.band_count,
                        "num_classes": len(self.names), "base_width": config.base_width}
        self.data = {"classes": spec.schema.to_list(), "band_names": spec.band_names, "mean": spec.mean,
                     "std": spec.std, "chip_size": spec.chip_size, "dtype": spec.dtype, "nodata": spec.nodata,
                     "crs": spec.crs, "resolution": spec.resolution}
        state = None
        if config.resume:
            state = ckpt.load(config.resume)
            ckpt.check_compatible(state, self.network, self.data, config.resume)
            if config.architecture != AUTO and (state["network"]["architecture"], state["network"]["base_width"]) \
                    != (config.architecture, config.base_width):
                events.warning(f"Resuming a {state['network']['architecture']} of base width "
                               f"{state['network']['base_width']}: the chosen architecture and width are ignored.")
            self.network = dict(state["network"])
        net = self.network
        self.model = build_network(net["architecture"], net["in_channels"], net["num_classes"], net["base_width"])
        leave_out_classes(self.model, net["num_classes"], np.flatnonzero(np.asarray(counts) == 0))
        self.finetune = FineTune(self.model, self.network, config, spec, events, state is None, device)
        if state is None and config.initial_weights:
            ckpt.load_initial_weights(self.model, config.initial_weights, events, self.data["classes"],
                                      tell_values=self.phase is None or self.phase.startswith("fold 1/"))
        self.model.to(device)
        self.optimizer = torch.optim.AdamW(self.finetune.param_groups(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        self.amp, self.amp_dtype, scaling = amp_settings(device, config.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=scaling)

        weights = class_weights(counts) if config.class_weights else np.ones(len(self.names))
        self.learned = learned_prior(counts, weights) if np.sum(counts) else None  # the class prior the loss teaches
        self.pixel_weight = torch.zeros(256, device=device)  # indexed by label value: 0 at IGNORE
        self.pixel_weight[:len(self.names)] = torch.as_tensor(weights, dtype=torch.float32)
        if tell:
            events.info("Class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in zip(self.names, weights))
                        + ("" if config.class_weights else " (class weighting off)"))

        loaders = make_loaders(self.store, self.val_store, self.train_idx, self.val_idx, config, device, group,
                               events, tell)
        self.sampler, self.batch, self.workers = loaders.sampler, loaders.batch, loaders.workers
        self.train_loader, self.val_loader, self.all_val_loader = loaders.train, loaders.val, loaders.all_val

        # stopped_by: what ended the epochs ("epochs", "early stopping", "time limit", "cancel"); the model card
        # records it with the time limit (a time-limited run otherwise read as all epochs trained)
        self.run_state = {"epoch": 0, "global_step": 0, "history": [], "best": None, "best_state": None,
                          "cancelled": False, "stopped_early": False, "since_best": 0, "anneal": None,
                          "stopped_by": "epochs", "time_limit_minutes": config.time_limit_minutes}
        if state is not None:
            ckpt.restore_run(self.run_state, state, self.model, self.optimizer, self.scaler, config, events,
                             group.is_main)
        self.net = group.wrap(self.model, find_unused=self.finetune.freeze > 0)  # what trains: DDP on several ranks

    # -- the epochs ---------------------------------------------------------------------------------
    def run(self) -> dict:
        """Train, then export the best weights (see finish.py)."""
        self.fit()
        return self.finish()

    def finish(self) -> dict:
        if not self.group.is_main:  # rank 0 exports; the others only need what a refit is planned from
            return distributed.follower_outputs(self.run_state, self.network)
        sample = _verify_sample(self.train_loader if self.final_fit else self.all_val_loader, self.config,
                                self.spec.chip_size)
        heldout, pending = (None, self.heldout) if isinstance(self.heldout, tuple) else (self.heldout, None)
        return finish_run(self.run_state, self.model, self.network, self.data, self.spec, self.config, self.device,
                          sample, self.events, heldout=heldout, curves=not self.final_fit, pending_heldout=pending,
                          val_loader=None if self.final_fit else self.all_val_loader, tile_agreement=not self.interim,
                          learned=self.learned)

    def fit(self) -> dict:
        """The epochs; returns the run state (history, best epoch, cancelled)."""
        config, run, events = self.config, self.run_state, self.events
        start = run["epoch"] + 1
        if start > config.epochs:
            events.warning(f"The checkpoint already finished epoch {run['epoch']} of {config.epochs}: nothing "
                           f"left to train. Raise the number of epochs to train further.")
        self.planned = config.epochs
        if run["anneal"]:  # resumed while early stopping was annealing
            self.planned = min(self.planned, run["anneal"]["until_epoch"])
        self.steps_per_epoch = len(self.train_loader)
        self.budget = config.time_limit_minutes * 60.0 if config.time_limit_minutes else None
        self.started, self.done, self.clock = time.perf_counter(), 0, 0.0
        self._plan_progress(start)
        events.info((f"{self.phase.capitalize()}: t" if self.phase and not self.final_fit else "T")
                    + f"raining {self.network['architecture']} (base width {self.network['base_width']}, "
                    f"{sum(p.numel() for p in self.model.parameters()) / 1e6:.2f} M parameters) on "
                    f"{len(self.train_idx)} train / {len(self.val_idx)} validation chips, batch size "
                    f"{config.batch_size}, epochs {start}..{config.epochs}"
                    + (f" or {duration_text(config.time_limit_minutes)}" if self.budget else "")
                    + f", {self.workers} loader workers" + (f", mixed precision {self.amp_dtype}" if self.amp else "")
                    + ".")
        epoch_seconds = []
        for epoch in range(start, self.planned + 1):
            if epoch > self.planned:
                break
            tic = time.perf_counter()
            train_loss = self._train_epoch(epoch)
            if train_loss is None:
                run["cancelled"], run["stopped_by"] = True, "cancel"
                events.warning(f"Cancelled during epoch {epoch}: that epoch is dropped; the best weights so far "
                               f"are exported.")
                break
            train_seconds = time.perf_counter() - tic
            self.group.share_buffers(self.model)
            val = NO_VALIDATION if self.final_fit else evaluate(
                self.model, self.val_loader, self.pixel_weight, self.names, self.device, self.amp, self.amp_dtype,
                should_stop=None if self.group.enabled else lambda: events.cancel_requested,  # ranks: per step
                on_batch=lambda: self._advance(f"epoch {epoch}/{self.planned}: validating"), reduce=self.group.sum_)
            if val is None:
                run["cancelled"], run["stopped_by"] = True, "cancel"
                events.warning(f"Cancelled while validating epoch {epoch}: exporting the best weights so far.")
                break
            if self.on_epoch is not None:
                self.on_epoch(self.model, val, self.all_val_loader)
            self._end_epoch(epoch, train_loss, train_seconds, val, tic)
            epoch_seconds.append(time.perf_counter() - tic)
            if self.budget and epoch < self.planned and self.group.any(
                    self._elapsed() + float(np.median(epoch_seconds[-3:])) > self.budget):
                if epoch >= self.min_epochs:
                    events.info(f"Time limit of {duration_text(config.time_limit_minutes)} reached after epoch "
                                f"{epoch} of {config.epochs}.")
                    run["stopped_by"] = "time limit"
                    break
                self._past_the_limit(epoch, epoch_seconds)
            if config.patience and run["anneal"] is None and run["since_best"] >= config.patience \
                    and epoch < self.planned \
                    and rate_has_fallen(self._schedule_progress(run["global_step"]), config.schedule):
                self._start_annealing(epoch, start)
        if run["stopped_by"] == "epochs" and run["stopped_early"]:
            run["stopped_by"] = "early stopping"
        if run.get("past_limit_from") is not None:
            run["past_limit_s"] = round(max(0.0, self._elapsed() - self.budget), 1)
        return run

    def _past_the_limit(self, epoch: int, epoch_seconds: list) -> None:
        """The time limit would stop a refit before ``min_epochs``: it trains on, and says so once."""
        run = self.run_state
        if run.get("past_limit_from") is not None:
            return
        run["past_limit_from"] = epoch
        each = float(np.median(epoch_seconds[-3:]))
        self.events.warning(
            f"The time limit is reached after epoch {epoch} of the training on all polygons (it had "
            f"{duration_text(self.config.time_limit_minutes)} of the limit left), but it trains on to epoch "
            f"{self.min_epochs}: the held-out estimate is of {self.min_epochs} epochs, and a model cut shorter could "
            f"map worse than the estimate says. At {each:.1f} s an epoch that is about "
            f"{duration_text(each * (self.min_epochs - epoch) / 60.0)} past the limit. Cancel to stop it: the model "
            f"is then its last finished epoch.")

    def _start_annealing(self, epoch: int, start: int) -> None:
        """Early stopping: validation mIoU stalled, so bring the learning rate down over a short tail
        (a cosine from the current rate) and stop; stopping at a high rate keeps noisy weights."""
        run, patience = self.run_state, self.config.patience
        tail = min(self.planned - epoch, max(2, -(-patience // 2)))
        run["anneal"] = {"from_step": run["global_step"], "steps": tail * self.steps_per_epoch,
                         "from_factor": self.lr / self.config.learning_rate, "until_epoch": epoch + tail}
        run["stopped_early"] = True
        self.planned = epoch + tail
        self._plan_progress(start)
        self.events.info(f"Early stopping after epoch {epoch}: validation mIoU has not improved for "
                         f"{run['since_best']} epochs (best {run['best']['val_miou']} at epoch "
                         f"{run['best']['epoch']}); annealing the learning rate over {tail} last epoch(s).")

    def _elapsed(self) -> float:
        """Seconds since the epochs began; on several ranks the clock they agreed on at the last step."""
        return self.clock if self.group.enabled else time.perf_counter() - self.started

    def _schedule_progress(self, step: int) -> float:
        """Where the run is in its schedule (0..1): by steps, or by time under a time limit, whichever
        is further, so the learning rate falls smoothly to its floor however fast the epochs go."""
        progress = step / max(1, self.config.epochs * self.steps_per_epoch)
        if self.budget:
            clock = self._elapsed() / self.budget
            if self.min_epochs:  # the clock may not end the schedule before the epochs the run must train
                clock = min(clock, step / (self.min_epochs * self.steps_per_epoch))
            progress = max(progress, clock)
        return min(progress, 1.0)

    def _lr_factor(self, step: int) -> float:
        anneal = self.run_state["anneal"]
        if anneal is None:
            return schedule_factor(self._schedule_progress(step), self.config.schedule)
        t = min(1.0, (step - anneal["from_step"]) / max(1, anneal["steps"]))
        floor = min(anneal["from_factor"], 1e-3)
        return floor + (anneal["from_factor"] - floor) * 0.5 * (1.0 + math.cos(math.pi * t))

    def _plan_progress(self, start: int) -> None:
        self.total_batches = max(1, (self.planned - start + 1) * (self.steps_per_epoch + len(self.val_loader)))

    def _advance(self, message: str) -> None:
        self.done += 1
        fraction = self.done / self.total_batches
        if self.budget:
            fraction = max(fraction, self._elapsed() / self.budget)
        low, high = self.progress_span
        self.events.progress(low + (high - low) * min(1.0, fraction), message)

    def _train_epoch(self, epoch: int):
        """One pass over the training chips; the mean loss, or None when cancelled."""
        config, device, run = self.config, self.device, self.run_state
        self.sampler.set_epoch(epoch)
        self.net.train()
        self.finetune.before_epoch(epoch)
        loss_sum = torch.zeros((), device=device)
        for batch, (images, labels) in enumerate(self.train_loader):
            cancel, self.clock = self.group.sync(self.events.cancel_requested, time.perf_counter() - self.started)
            if cancel:
                return None
            self.lr = config.learning_rate * self._lr_factor(run["global_step"])
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr * group.get("lr_scale", 1.0)
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True).long()
            # Dropout draws from torch's generator: seeded by (seed, step), a resumed run draws the same.
            torch.manual_seed(config.seed * 1_000_003 + run["global_step"] + 7_919 * self.group.rank)
            loss = train_step(self.net, self.optimizer, self.scaler, images, labels, self.pixel_weight,
                              self.amp, self.amp_dtype,
                              on_diverged=lambda value: self._diverged(epoch, f"batch {batch + 1}", value))
            loss_sum += loss.detach()
            run["global_step"] += 1
            self._advance(f"epoch {epoch}/{self.planned}: batch {batch + 1}/{self.steps_per_epoch}")
        return self.group.mean(float(loss_sum) / max(1, self.steps_per_epoch))

    def _diverged(self, epoch: int, where: str, loss: float) -> None:
        """A non-finite loss: the weights are ruined. Stop before they reach a checkpoint or a model."""
        last = self.config.checkpoint_dir / ckpt.LAST
        kept = (f"The last good checkpoint (epoch {self.run_state['epoch']}) is kept at '{last}'."
                if self.run_state["epoch"] and last.is_file() else "No epoch had finished, so no checkpoint was kept.")
        raise BadInputError(f"Training diverged in epoch {epoch} ({where}): the loss became {loss} at a learning "
                            f"rate of {self.lr:.3g}. Lower the learning rate (e.g. ten times, to "
                            f"{self.config.learning_rate / 10:.3g}) and train again. {kept} No model was written.")

    def _end_epoch(self, epoch, train_loss, train_seconds, val, tic) -> bool:
        """Record the epoch, keep the best weights, write checkpoints, emit the metric event."""
        run = self.run_state
        val_loss = val["loss"] if val["loss"] is not None else 0.0  # a refit has no validation
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            self._diverged(epoch, "validation", val_loss if math.isfinite(train_loss) else train_loss)
        chips = self.steps_per_epoch * self.batch * self.group.world if self.train_loader.drop_last \
            else len(self.sampler)
        row = {"epoch": epoch, "train_loss": round(train_loss, 6), "val_loss": val["loss"],
               "val_accuracy": val["accuracy"], "val_miou": val["miou"],
               **{f"val_iou_{n}": v for n, v in val["iou"].items()},
               "lr": float(f"{self.lr:.3g}"), "train_seconds": round(train_seconds, 3),
               "chips_per_second": round(chips / max(train_seconds, 1e-9), 2)}
        run["history"].append(row)
        run["epoch"] = epoch
        improved = self.final_fit or _is_better(row, run["best"])  # a refit keeps its last epoch
        run["since_best"] = 0 if improved else run["since_best"] + 1
        if improved:
            run["best"] = {k: row[k] for k in ("epoch", "val_miou", "val_accuracy", "val_loss")}
            run["best"]["val_iou"] = val["iou"]
            run["best"]["val_confusion"] = val["confusion"]
            run["best_state"] = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        snapshot = {"model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                    "optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                    "epoch": run["epoch"], "global_step": run["global_step"], "best": run["best"],
                    "history": run["history"], "network": self.network, "data": self.data,
                    "since_best": run["since_best"], "anneal": run["anneal"], "config": self.config.to_dict()}
        if self.group.is_main:  # rank 0 alone writes
            ckpt.save(snapshot, self.config.checkpoint_dir / ckpt.LAST)
            if improved:  # weights and metadata only: enough to export or to start from, small to write
                ckpt.save({k: v for k, v in snapshot.items() if k not in ("optimizer", "scaler")},
                          self.config.checkpoint_dir / ckpt.BEST)
        row["epoch_seconds"] = round(time.perf_counter() - tic, 3)  # training + validation + checkpoints
        values = {k: v for k, v in row.items() if k != "epoch" and not (self.final_fit and k.startswith("val_"))}
        self.events.metric(epoch, dict(values, phase=self.phase) if self.phase else values)
        return improved


def _is_better(row, best) -> bool:
    if best is None:
        return True
    score = row["val_miou"] if row["val_miou"] is not None else -1.0
    best_score = best["val_miou"] if best["val_miou"] is not None else -1.0
    return score > best_score + 1e-6 or (abs(score - best_score) <= 1e-6 and row["val_loss"] < best["val_loss"])


def _verify_sample(loader, config, chip_size):
    """Up to 4 real validation chips for the ONNX check (when the export tile is the chip size)."""
    if (config.export_tile_size or chip_size) != chip_size:
        return None
    images, _ = next(iter(loader))
    return images[:4].numpy()
