"""Training speed: our trainer's epoch against a bare torch loop over the same chips, CPU (and GPU when present).

Ours: ``training.loop.train`` as the engine runs it (DataLoader, seeded augmentation, class-weighted loss,
validation, checkpoints each epoch). Bare: the same network, AdamW settings, batch size and number of steps
over the same chips preloaded as standardised tensors (no DataLoader, no augmentation), then a no-grad pass
over the validation chips. Ours and bare alternate in rounds of two epochs each; the first epoch of each
is a warm-up and left out of the medians.
"""
import time

import numpy as np
import torch
import torch.nn.functional as F

from landcover_plugin.core.chips.dataset import load_spec
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.train.options import TrainConfig
from training.dataset import IGNORE, ChipStore
from training.loop import class_weights, train
from training.networks import build_network

from .assets import zion_chips
from .common import figure, median, paired_ratio, profile_call, target

EPOCH_TARGET = 1.2


def run(settings) -> dict:
    chip, stride = (128, 128) if settings.quick else (128, 64)
    dataset = zion_chips(settings, chip, stride)
    rounds = max(3, settings.runs) if not settings.quick else 1
    figures, details, profiles = [], {}, {}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        rows, bare = [], []
        for _ in range(rounds):  # interleaved, so that other load on the machine hits both alike
            rows += ours(settings, dataset, device, 2)[1:]
            bare += bare_loop(dataset, device, 2)[1:]
        train_s = [r["train_seconds"] for r in rows]
        epoch_s = [r["epoch_seconds"] for r in rows]
        bare_train = [b["train_seconds"] for b in bare]
        bare_epoch = [b["train_seconds"] + b["val_seconds"] for b in bare]
        chips_per_epoch = bare[0]["chips"]
        rate = [chips_per_epoch / s for s in train_s]
        bare_rate = [chips_per_epoch / s for s in bare_train]
        epoch_ratio = paired_ratio(epoch_s, bare_epoch)
        train_ratio = paired_ratio(train_s, bare_train)
        name = device.upper()
        figures += [
            figure(f"training.{device}.chips_per_s", f"Training speed on {name} (training pass)", median(rate),
                   "chips/s", runs=rate,
                   baseline={"label": "bare torch loop, same tensors in memory", "value": median(bare_rate),
                             "unit": "chips/s", "runs": bare_rate},
                   ratio=train_ratio, target=target(train_ratio, "<=", EPOCH_TARGET, "x")),
            figure(f"training.{device}.epoch_s", f"Epoch time on {name} (training + validation + checkpoint)",
                   median(epoch_s), "s", runs=epoch_s,
                   baseline={"label": "bare torch training pass + no-grad validation pass",
                             "value": median(bare_epoch), "unit": "s", "runs": bare_epoch},
                   ratio=epoch_ratio, target=target(epoch_ratio, "<=", EPOCH_TARGET, "x")),
        ]
        details[device] = {"ours": rows, "bare": bare}
        if epoch_ratio > EPOCH_TARGET or train_ratio > EPOCH_TARGET:
            _, profiles[f"training on {device}"] = profile_call(lambda: ours(settings, dataset, device, 2))
    if "cuda" not in devices:
        figures.append(figure("training.cuda", "Training on GPU", None, "",
                              note="no GPU on this machine; see the GPU check below"))
    spec = load_spec(dataset)
    what = (f"U-Net base width 16, batch 16, AdamW, Zion {chip} px chips stride {stride} "
            f"({sum(c.split == 'train' for c in spec.chips)} train / {sum(c.split == 'val' for c in spec.chips)} "
            f"val); {rounds} rounds of (ours 2 epochs, bare 2 epochs), each figure a median over the rounds' second "
            f"epochs (the first is a warm-up); torch threads {torch.get_num_threads()}")
    return {"what": what, "figures": figures, "details": details, "profiles": profiles}


def ours(settings, dataset, device: str, epochs: int) -> list:
    out = settings.folder("training") / f"speed_{device}.onnx"
    config = TrainConfig(dataset_dir=str(dataset), output=str(out), epochs=epochs, device=device, patience=0)
    events = RecordingEvents()
    train(config, events)
    return [e["values"] for e in events.events if e["event"] == "metric"]


def bare_loop(dataset, device: str, epochs: int, batch_size: int = 16) -> list:
    """The floor: the same work with nothing around it. Returns per-epoch seconds."""
    defaults = TrainConfig(dataset_dir=str(dataset), output="x.onnx")
    spec = load_spec(dataset)
    store = ChipStore(spec, defaults.cache_mb)
    train_idx = [i for i, c in enumerate(spec.chips) if c.split == "train"]
    val_idx = [i for i, c in enumerate(spec.chips) if c.split == "val"] or train_idx
    dev = torch.device(device)
    x_train, y_train = _tensors(store, train_idx, dev)
    x_val, _ = _tensors(store, val_idx, dev)
    counts = store.class_pixel_counts(train_idx)
    weight = torch.as_tensor(class_weights(counts), dtype=torch.float32, device=dev)
    torch.manual_seed(0)
    model = build_network("unet", spec.band_count, len(spec.schema), defaults.base_width).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=defaults.learning_rate, weight_decay=defaults.weight_decay)
    amp = dev.type == "cuda" and defaults.amp
    amp_dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16
    n = len(train_idx)
    steps = n // batch_size if n >= 2 * batch_size else -(-n // batch_size)
    rows = []
    for epoch in range(epochs):
        order = torch.from_numpy(np.random.default_rng(epoch).permutation(n)).to(dev)
        _sync(dev)
        tick = time.perf_counter()
        model.train()
        for step in range(steps):
            index = order[step * batch_size:(step + 1) * batch_size]
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp):
                logits = model(x_train[index])
            loss = F.cross_entropy(logits.float(), y_train[index], weight=weight, ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(dev)
        train_seconds = time.perf_counter() - tick
        tick = time.perf_counter()
        model.eval()
        with torch.no_grad(), torch.autocast(dev.type, dtype=amp_dtype, enabled=amp):
            for start in range(0, len(val_idx), batch_size):
                model(x_val[start:start + batch_size]).argmax(1)
        _sync(dev)
        rows.append({"train_seconds": train_seconds, "val_seconds": time.perf_counter() - tick,
                     "steps": steps, "chips": steps * batch_size if n >= 2 * batch_size else n})
    return rows


def _tensors(store, indices, device):
    images, labels = zip(*(store.sample(i) for i in indices))
    x = torch.from_numpy(np.stack(images)).to(device)
    y = torch.from_numpy(np.stack(labels).astype(np.int64)).to(device)
    return x, y


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
