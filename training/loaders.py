"""The DataLoaders of one training run: its epoch sampler, the training loader and the validation loaders.

With few training chips an epoch draws them again (a new augmentation each time, if on) to make
``MIN_STEPS_PER_EPOCH`` steps (:class:`.dataset.EpochSampler`; the Train algorithm's pre-flight check counts
the same steps). On several ranks the batch size is shared out among them, each rank validates its share of
the chips, and rank 0 also keeps a loader over every validation chip for the held-out estimate.
"""
from dataclasses import dataclass

from torch.utils.data import DataLoader

from landcover_plugin.core.train.preflight import MIN_STEPS_PER_EPOCH, repeats

from .dataset import ChipDataset, EpochSampler
from .device import default_workers


@dataclass
class Loaders:
    sampler: EpochSampler
    batch: int  # chips a step on this rank
    workers: int
    train: DataLoader
    val: DataLoader  # this rank's share of the validation chips
    all_val: DataLoader  # every validation chip (rank 0; the same loader on a single rank)


def steps_per_epoch(chips: int, batch_size: int) -> float:
    """Optimizer steps in an epoch over ``chips`` training chips (at least :data:`MIN_STEPS_PER_EPOCH`)."""
    return max(chips, MIN_STEPS_PER_EPOCH * batch_size) / batch_size


def make_loaders(store, val_store, train_idx: list, val_idx: list, config, device, group, events,
                 tell: bool = True) -> Loaders:
    """The training and validation loaders; ``tell``: say when few chips are repeated to fill an epoch."""
    workers = default_workers(device, store.cached) if config.num_workers is None else config.num_workers
    options = {"num_workers": workers, "pin_memory": device.type == "cuda", "persistent_workers": workers > 0}
    if workers > 0 and not store.cached:
        # Workers that read chips with GDAL start from a fresh interpreter: a forked one inherits GDAL's locks
        # as other threads (QGIS's, onnxruntime's, this store's readers) left them, and waited forever on one
        # in the test suite. Cached chips need no reading, and fork shares them without a copy.
        options["multiprocessing_context"] = "forkserver"
    sampler = EpochSampler(len(train_idx), config.seed, MIN_STEPS_PER_EPOCH * config.batch_size)
    batch = group.per_rank(config.batch_size)
    if tell and len(sampler) > len(train_idx):
        events.info(f"Few training chips ({len(train_idx)}) for batches of {config.batch_size}: each epoch "
                    f"draws {len(sampler)} chip samples ({MIN_STEPS_PER_EPOCH} steps), repeating chips "
                    f"{repeats(config.augment, config.colour_augment)}.")
    train = DataLoader(ChipDataset(store, train_idx, config.augment, config.colour_augment, config.seed),
                       batch_size=batch, sampler=group.sampler(sampler),
                       drop_last=len(sampler) >= 2 * config.batch_size, **options)
    val = DataLoader(ChipDataset(val_store, group.shard(val_idx)), batch_size=batch, shuffle=False, **options)
    all_val = val if not group.enabled or not group.is_main else DataLoader(
        ChipDataset(val_store, val_idx), batch_size=config.batch_size, shuffle=False, **options)
    return Loaders(sampler, batch, workers, train, val, all_val)
