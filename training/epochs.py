"""The epochs of one training: ``EpochLoop``, the base of loop.py's ``_Training``, which sets up what they use.

The learning rate is set per batch from the run's progress (the global step, or the clock under a time limit,
whichever is further), so a resumed run continues the same curve and a time-limited run ends annealed however
fast its epochs go. The best checkpoint by validation mIoU; early stopping (once the schedule is down to half
its peak rate) anneals the learning rate over a short tail before it stops; a refit trains at least the epochs
its held-out estimate is of, past the time limit if it must (and says so); cancel at the next batch; a loss
that is not finite stops the run before it reaches a checkpoint or a model.

What ``_Training.__init__`` gives an ``EpochLoop``: ``config``, ``events``, ``device``, ``group`` (distributed),
``model`` and ``net`` (what trains: the model, or DDP around it), ``optimizer``, ``scaler``, ``amp``,
``amp_dtype``, ``finetune``, ``pixel_weight``, ``names``, ``network``, ``data``, the loaders (``train_loader``,
``val_loader``, ``all_val_loader``, ``sampler``, ``batch``, ``workers``), ``train_idx``/``val_idx``, ``phase``,
``on_epoch``, ``final_fit``, ``min_epochs``, ``progress_span`` and ``run_state``.
"""
import math
import time

import numpy as np
import torch

from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.train.options import duration_text

from . import checkpoint as ckpt
from .device import gpu_memory_note
from .objective import evaluate, rate_has_fallen, schedule_factor
from .step import train_step

NO_VALIDATION = {"loss": None, "accuracy": None, "miou": None, "iou": {}, "confusion": None}


class EpochLoop:
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
        if self.device.type == "cuda":
            events.info(gpu_memory_note(self.device, config.batch_size))
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
        improved = self.final_fit or is_better(row, run["best"])  # a refit keeps its last epoch
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


def is_better(row, best) -> bool:
    if best is None:
        return True
    score = row["val_miou"] if row["val_miou"] is not None else -1.0
    best_score = best["val_miou"] if best["val_miou"] is not None else -1.0
    return score > best_score + 1e-6 or (abs(score - best_score) <= 1e-6 and row["val_loss"] < best["val_loss"])
