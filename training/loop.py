"""The training: ``train(config, events) -> outputs``, and ``_Training``, which sets one training up.

``train`` takes the run lock, launches or joins the processes of a distributed run, and trains once, or
twice (held-out polygons, then a refit on all: refit.py). ``_Training`` reads the chips and sets up the
network (chosen by choices.py; a pretrained or scene-pretrained encoder by finetune.py), AdamW with a
one-cycle or warm-up + cosine learning rate, class-weighted cross-entropy that ignores unlabelled pixels,
mixed precision on CUDA, the loaders and a resumed run's state; its epochs are epochs.py's ``EpochLoop``;
finish.py exports the best weights (ONNX checked against torch), the card and the training curves.
"""
from contextlib import nullcontext, suppress
from dataclasses import replace

import numpy as np
import torch

from landcover_plugin.core.chips.dataset import load_spec
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.model.class_shares import learned_prior
from landcover_plugin.core.train.options import TrainConfig

from . import checkpoint as ckpt
from . import distributed
from .choices import AUTO, check_training_pixels, choose_architecture, choose_epochs
from .dataset import ChipStore
from .device import amp_settings, memory_errors, select_device
from .epochs import EpochLoop
from .finetune import FineTune, resolve_architecture
from .finish import finish_run
from .heldout import describe as describe_heldout
from .loaders import make_loaders
from .networks import build_network, leave_out_classes
from .objective import class_weights, evaluate, lr_factor, weighted_loss
from .refit import note_no_cross_validation, train_then_refit
from .run_lock import exclusive_run
from .writing import check_writable

__all__ = ["train", "choose_architecture", "class_weights", "evaluate", "lr_factor", "weighted_loss"]


def train(config: TrainConfig, events=None) -> dict:
    """Train on ``config.dataset_dir`` and export ``config.output``; returns the outputs (see finish.py).

    Raises BadInputError (bad dataset or settings) and OutOfMemoryError (with the fix in the message).
    A cancel (``events.cancel_requested``) is not an error: the outputs say ``cancelled: True``.
    """
    events = events if events is not None else RecordingEvents()
    config = config.validate().absolute()  # the paths it returns are valid from any folder
    new_folder = not config.checkpoint_dir.exists()
    try:
        if distributed.rank() == 0:  # the process that writes (rank 0 under torchrun): fail now, not after training
            check_writable(config)
        with exclusive_run(config) if distributed.takes_run_lock() else nullcontext():  # one run into a model at once
            return _launch_or_join(config, events)
    except BaseException:
        if new_folder:  # a run that failed before its first checkpoint leaves no empty checkpoints folder behind
            with suppress(OSError):
                config.checkpoint_dir.rmdir()  # only when empty: a checkpoint written is kept
        raise


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


class _Training(EpochLoop):
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


def _verify_sample(loader, config, chip_size):
    """Up to 4 real validation chips for the ONNX check (when the export tile is the chip size)."""
    if (config.export_tile_size or chip_size) != chip_size:
        return None
    images, _ = next(iter(loader))
    return images[:4].numpy()
