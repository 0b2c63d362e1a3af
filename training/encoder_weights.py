"""Pretrained ResNet weights into the encoder of a ``*_resnet*`` network, with a report of what loaded.

Files: a torchvision ``.pth`` (``conv1.weight``, ``layer1.0.conv1.weight``, ``fc.weight`` ...), timm's ResNets
(the same names), and checkpoints that nest or prefix them: ``state_dict`` / ``model`` / ``teacher`` ...
dicts, prefixes such as ``module.``, ``backbone.``, ``encoder.``, ``module.encoder_q.`` (SSL4EO-S12 MoCo) or
``backbone.backbone.resnet.`` (SatlasPretrain). The prefix is found, not listed: the one under which most
encoder names exist. Read with ``weights_only`` (no code in the file runs); nothing is ever downloaded.

The first convolution is adapted to the dataset's bands: a 3-band (RGB) filter bank is mapped onto the bands
whose names say red, green or blue (or Sentinel-2's B04, B03, B02); every other band gets the mean of the
three filters; the whole is scaled by 3 / band count so a layer's response keeps its size. Three bands with no
colour names are taken as red, green, blue in that order. A filter bank for as many bands as the dataset's is
taken as it is (e.g. SSL4EO-S12's 13 Sentinel-2 bands: the order must be the same). Any other count: the mean
filter for every band, scaled likewise. Everything is logged and returned for the model card.
"""
import hashlib
import re
from pathlib import Path

import torch

from landcover_plugin.core.errors import BadInputError

from .checkpoint import read_safely
from .resnet import DEPTHS

NESTED = ("state_dict", "model", "teacher", "student", "model_state", "net", "network", "weights", "params")
MARKER = "layer1.0.conv1.weight"
MOMENTUM_COPIES = ("encoder_k", "momentum", "target")
COLOURS = (("red", re.compile(r"\bred\b(?!.*edge)|^b04$"), 0),  # (name, pattern, RGB filter index)
           ("green", re.compile(r"\bgreen\b|^b03$"), 1), ("blue", re.compile(r"\bblue\b|^b02$"), 2))


def sha256_of(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_state(path) -> dict:
    """The tensors of a weights file, nested dicts unwrapped (not yet prefix-stripped)."""
    state = read_safely(path, "The encoder weights file", "Give a .pth/.pt state dict of a ResNet encoder "
                        "(e.g. torchvision's resnet50-*.pth, or an SSL4EO-S12 / SatlasPretrain ResNet); a checkpoint "
                        "holding other Python objects must be saved again as its state dict only, where it was "
                        "made.")
    for _ in range(3):
        if not isinstance(state, dict) or any(isinstance(v, torch.Tensor) for v in state.values()):
            break
        state = next((state[k] for k in NESTED if isinstance(state.get(k), dict)), state)
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise BadInputError(f"'{path}' holds no tensors of weights. Give a ResNet state dict (.pth), such as "
                            f"torchvision's resnet18/34/50 files or an SSL4EO-S12 / SatlasPretrain ResNet.")
    return tensors


def strip_prefix(tensors: dict, names) -> tuple:
    """(the prefix, the tensors under it without it): the prefix under which most of ``names`` exist."""
    prefixes = {k[:-len(MARKER)] for k in tensors if k.endswith(MARKER)} or {""}
    # a tie (MoCo's query and key encoders, BYOL's online and target ones): the one fine-tuning starts from
    prefix = max(sorted(prefixes), key=lambda p: (sum(p + n in tensors for n in names),
                                                  not any(m in p for m in MOMENTUM_COPIES)))
    return prefix, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def resnet_of(tensors: dict):
    """The ResNet a (prefix-stripped) state dict is: 'resnet18', 'resnet34', 'resnet50', or None."""
    blocks = []
    for stage in range(1, 5):
        found = {int(m.group(1)) for k in tensors for m in [re.match(rf"layer{stage}\.(\d+)\.", k)] if m}
        blocks.append(max(found) + 1 if found else 0)
    kind = "bottleneck" if "layer1.0.conv3.weight" in tensors else "basic"
    return next((name for name, spec in DEPTHS.items() if spec == (kind, tuple(blocks))), None)


def band_colours(band_names: list) -> dict:
    """{band index: RGB filter index} for the bands whose names say red, green or blue."""
    mapping = {}
    for _, pattern, rgb in COLOURS:
        hits = [i for i, n in enumerate(band_names) if pattern.search(str(n).strip().lower())]
        if len(hits) == 1 and hits[0] not in mapping:
            mapping[hits[0]] = rgb
    if not mapping and len(band_names) == 3:
        mapping = {0: 0, 1: 1, 2: 2}
    return mapping


def adapt_first_conv(weight: torch.Tensor, band_names: list) -> tuple:
    """``weight`` (out, their bands, k, k) -> (out, len(band_names), k, k) and a sentence saying how."""
    bands, theirs = len(band_names), int(weight.shape[1])
    if theirs == bands and theirs != 3:
        return weight.clone(), f"its {theirs}-band filters taken as they are (the bands must be in the same order)"
    mean = weight.mean(dim=1)
    if theirs != 3:
        return (mean.unsqueeze(1).repeat(1, bands, 1, 1) * (theirs / bands),
                f"the mean of its {theirs} band filters for each of the {bands} bands, scaled by {theirs}/{bands}")
    mapping = band_colours(band_names)
    out = torch.stack([weight[:, mapping[i]] if i in mapping else mean for i in range(bands)], dim=1) * (3 / bands)
    colour = {0: "red", 1: "green", 2: "blue"}
    matched = ", ".join(f"band {i + 1} '{band_names[i]}' <- {colour[c]}" for i, c in sorted(mapping.items()))
    others = [str(i + 1) for i in range(bands) if i not in mapping]
    text = (f"RGB filters mapped: {matched or 'none (no band is named red, green or blue)'}"
            + (f"; band(s) {', '.join(others)} get the mean RGB filter" if others else "")
            + (f"; scaled by 3/{bands}" if bands != 3 else ""))
    return out, text


def load_encoder_weights(model, path, band_names: list, events) -> dict:
    """Fill ``model.encoder`` from ``path``; log and return what loaded, what is new, and the file's identity."""
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise BadInputError("Pretrained encoder weights need an architecture with a ResNet encoder "
                            "(unet_resnet18/34/50 or deeplabv3plus_resnet18/34/50).")
    own = encoder.state_dict()
    prefix, tensors = strip_prefix(read_state(path), own)
    theirs = resnet_of(tensors)
    if theirs is None or "conv1.weight" not in tensors:
        raise BadInputError(f"'{path}' does not hold a ResNet-18/34/50 in torchvision's layout (no "
                            f"'{prefix}{MARKER}' and the blocks per stage of a known ResNet). Give a torchvision, "
                            f"timm, SSL4EO-S12 or SatlasPretrain ResNet-18/34/50 state dict.")
    if theirs != encoder.name:
        raise BadInputError(f"'{path}' holds a {theirs} but the chosen architecture has a {encoder.name} encoder. "
                            f"Choose unet_{theirs} or deeplabv3plus_{theirs}.")
    loaded, new, adapted = {}, [], ""
    for name, value in own.items():
        if name == "conv1.weight":
            loaded[name], adapted = adapt_first_conv(tensors[name].float(), band_names)
        elif name in tensors and tensors[name].shape == value.shape:
            loaded[name] = tensors[name].to(value.dtype)
        else:
            new.append(name)
    encoder.load_state_dict(loaded, strict=False)
    unused = sorted(k for k in tensors if k not in own)
    decoder = len(model.state_dict()) - len(own)
    info = {"file": Path(path).name, "sha256": sha256_of(path), "encoder": theirs, "prefix": prefix,
            "loaded": len(loaded), "new_in_encoder": new, "new_outside_encoder": decoder, "unused": unused[:20],
            "unused_count": len(unused),
            "first_conv": adapted}
    events.info(f"Encoder weights '{Path(path).name}' (sha256 {info['sha256'][:12]}..., a {theirs}"
                + (f", under the prefix '{prefix}'" if prefix else "") + f"): loaded {len(loaded)} of {len(own)} "
                f"encoder tensors; first convolution: {adapted}. New (random start): "
                + (f"{len(new)} encoder tensor(s) ({', '.join(new[:5])}) and " if new else "")
                + f"the {decoder} decoder and head tensors."
                + (f" Not used from the file: {', '.join(unused[:6])}" + (" ..." if len(unused) > 6 else "") + "."
                   if unused else ""))
    return info
