"""Self-supervised pretraining of a ResNet encoder on the scene being mapped: masked-image reconstruction.

No download and no labels: random tiles of the dataset's source raster (the one the chips were cut from,
standardised with the dataset's band mean and std, nodata set to 0 as the chips are) have square patches
hidden (set to 0, the band mean); the same architecture, with one output per band, learns to fill them in
(mean squared error over the hidden valid pixels only, SimMIM-style). After ``minutes`` of that its encoder
is copied into the network to be trained, which then fine-tunes it as it would ImageNet weights
(finetune.py: frozen first, then a lower learning rate). The decoder of the reconstruction net is dropped:
it learned to paint bands, not classes.

A run that trains twice (held-out polygons, then the refit on all) pretrains once: the encoder is kept in
memory for the same raster, architecture, band count, budget and seed.
"""
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.rasters import own_mask, read

from .dataset import _valid

TILE, PATCH, MASK_RATIO, BATCH, POOL = 64, 8, 0.5, 16, 512
_MEMO = {}


def scene_tiles(image_path, spec, count: int, tile: int, rng) -> np.ndarray:
    """``count`` random tiles (N, C, tile, tile) of standardised bands, nodata 0; tiles under half valid skipped."""
    mean = np.asarray(spec.mean, np.float32)[:, None, None]
    inv_std = (1.0 / np.asarray(spec.std, np.float32))[:, None, None]
    tiles, valid_share = [], []
    recorded = spec.raw.get("bands") or {}
    bands = recorded.get("source_bands") or list(range(1, spec.band_count + 1))  # the bands the chips hold
    with rasterio.open(image_path) as src:
        if src.count != (recorded.get("source_count") or spec.band_count):
            raise BadInputError(f"The chips' source raster '{image_path}' has {src.count} bands, where the chips "
                                f"were cut from {recorded.get('source_count') or spec.band_count}: it changed "
                                f"since the chips were exported. Export the chips again, or turn scene "
                                f"pretraining off.")
        mask = own_mask(src, bands)  # an alpha band or internal mask hides pixels, as in the chips
        tile = min(tile, src.width, src.height)
        for _ in range(count * 3):
            row, col = int(rng.integers(0, src.height - tile + 1)), int(rng.integers(0, src.width - tile + 1))
            window = Window(col, row, tile, tile)
            raw = read(src, bands, window=window)  # in the chips' pixel type (rasters.band_view)
            valid = _valid(raw, spec.nodata) & (mask.valid(window) if mask is not None else True)
            if valid.mean() < 0.5:
                continue
            image = (raw.astype(np.float32) - mean) * inv_std
            image[:, ~valid] = 0.0
            tiles.append(image)
            valid_share.append(valid)
            if len(tiles) == count:
                break
    if len(tiles) < 4:
        raise BadInputError(f"Too few valid tiles in '{image_path}' for scene pretraining (under half of each "
                            f"{tile} px tile is valid). Turn scene pretraining off for this raster.")
    return np.stack(tiles), np.stack(valid_share)


def _patch_mask(batch: int, size: int, generator, device) -> torch.Tensor:
    """(N, 1, size, size) float mask: 1 on hidden PATCH x PATCH squares (MASK_RATIO of them)."""
    cells = -(-size // PATCH)
    hidden = (torch.rand(batch, 1, cells, cells, generator=generator) < MASK_RATIO).float()
    return hidden.repeat_interleave(PATCH, 2).repeat_interleave(PATCH, 3)[..., :size, :size].to(device)


def pretrain_encoder(architecture: str, spec, base_width: int, minutes: float, device, events, seed: int = 0,
                     learning_rate: float = 1e-3, min_steps: int = 0, tile: int = TILE, batch: int = BATCH) -> tuple:
    """Pretrain ``architecture``'s encoder on the source raster for ``minutes`` (and at least ``min_steps``
    steps): (encoder state, info). The learning rate warms up, then follows a cosine to 0 at the end."""
    from .networks import build_network  # the networks import this package's modules

    image_path = (spec.raw.get("source") or {}).get("image")
    if not image_path or not Path(image_path).is_file():
        raise BadInputError(f"Scene pretraining reads the raster the chips were cut from, but '{image_path}' "
                            f"(recorded in dataset.json) is not there. Put it back, or turn scene pretraining off.")
    key = (str(image_path), architecture, spec.band_count, base_width, float(minutes), seed, min_steps, tile, batch)
    if key in _MEMO:
        events.info("Scene pretraining: reusing the encoder pretrained earlier in this run.")
        return _MEMO[key]
    rng = np.random.default_rng(seed)
    tiles, valid = scene_tiles(image_path, spec, POOL, tile, rng)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    net = build_network(architecture, spec.band_count, spec.band_count, base_width).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=1e-4)
    net.train()
    started, steps, losses = time.perf_counter(), 0, []
    budget = minutes * 60.0
    events.info(f"Scene pretraining of the {architecture} encoder for {minutes:g} min: masked-image reconstruction "
                f"({MASK_RATIO:.0%} of {PATCH} px patches hidden) on {len(tiles)} random {tiles.shape[-1]} px "
                f"tiles of '{Path(image_path).name}'" + (f", the first of the chip dataset's {len(spec.sources)} "
                                                         "rasters." if len(spec.sources) > 1 else "."))
    while (time.perf_counter() - started < budget or steps < min_steps) and not events.cancel_requested:
        pick = torch.randint(0, len(tiles), (min(batch, len(tiles)),), generator=generator)
        x = torch.from_numpy(tiles[pick.numpy()]).to(device)
        ok = torch.from_numpy(valid[pick.numpy()]).to(device).unsqueeze(1).float()
        flips = torch.randint(0, 4, (1,), generator=generator).item()
        x, ok = torch.rot90(x, flips, (2, 3)), torch.rot90(ok, flips, (2, 3))
        hidden = _patch_mask(x.shape[0], x.shape[-1], generator, device) * ok
        progress = (time.perf_counter() - started) / budget
        if min_steps:  # whichever end is further away sets the pace
            progress = min(progress, steps / min_steps)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate * min(1.0, 10 * progress) * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0)))
        out = net(x * (1 - hidden))
        loss = (((out - x) ** 2) * hidden).sum() / (hidden.sum() * x.shape[1]).clamp_min(1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        losses.append(float(loss.detach()))
        if steps % 20 == 0:
            events.progress(min(1.0, progress), f"scene pretraining: step {steps}, loss {np.mean(losses[-20:]):.3f}")
    if not steps:
        raise BadInputError("Scene pretraining made no step in its time budget. Give it more minutes.")
    first, last = float(np.mean(losses[:10])), float(np.mean(losses[-10:]))
    info = {"source": "scene", "file": Path(image_path).name, "method": "masked-image reconstruction",
            "minutes": round((time.perf_counter() - started) / 60.0, 2), "steps": steps,
            "loss_first": round(first, 4), "loss_last": round(last, 4), "encoder": net.encoder.name}
    events.info(f"Scene pretraining: {steps} steps in {info['minutes']:.1f} min; reconstruction loss of the hidden "
                f"pixels {first:.3f} -> {last:.3f} (1.0: no better than the band mean).")
    state = {k: v.detach().cpu().clone() for k, v in net.encoder.state_dict().items()}
    _MEMO.clear()
    _MEMO[key] = (state, info)
    return state, info
