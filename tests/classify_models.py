"""Small torch segmentation nets for the classifier's tests, exported to ONNX as the trainer does.

Importable from any test (``tests/`` is on ``sys.path`` through its conftest). Nets are plain torch
(convolutions + softmax in the graph), exported with ``dynamo=False``, static tile, dynamic batch.
"""
import json

import numpy as np
import onnx
import rasterio
import torch

from landcover_plugin.core.model.card import build_card, metadata_props
from landcover_plugin.core.schema import ClassSchema


def tiny_net(bands: int, classes: int, seed: int = 0, softmax: bool = True) -> torch.nn.Module:
    """Two 3x3 convolutions (a 5x5 receptive field, so tile edges matter) and a 1x1 head."""
    torch.manual_seed(seed)
    layers = [torch.nn.Conv2d(bands, 16, 3, padding=1), torch.nn.ReLU(),
              torch.nn.Conv2d(16, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, classes, 1)]
    if softmax:
        layers.append(torch.nn.Softmax(dim=1))
    return torch.nn.Sequential(*layers).eval()


def export(net: torch.nn.Module, path, bands: int, tile: int, props: dict = None) -> str:
    """Export ``net`` with a static ``tile`` and a dynamic batch; ``props`` become metadata_props."""
    torch.onnx.export(net, torch.zeros(1, bands, tile, tile), str(path), input_names=["image"],
                      output_names=["probabilities"],
                      dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
                      dynamo=False)
    if props:
        model = onnx.load(str(path))
        onnx.helper.set_model_props(model, {k: str(v) for k, v in props.items()})
        onnx.save(model, str(path))
    return str(path)


class SceneFirst(torch.nn.Module):
    """``net`` with a per-image score as its first output and the map second, as some models made elsewhere have."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x):
        scores = self.net(x)
        return scores.mean(dim=(2, 3)), scores


def export_foreign(net: torch.nn.Module, path, props: dict = None, *, outputs=("y",), any_size: bool = False,
                   bands: int = 4, tile: int = 64) -> str:
    """Export ``net`` as a model made elsewhere: input 'x', ``outputs`` named, a dynamic batch (and any tile size
    with ``any_size``); ``props`` (Deepness keys, as strings) become metadata_props as they are."""
    axes = {0: "b", 2: "h", 3: "w"} if any_size else {0: "b"}
    torch.onnx.export(net.eval(), torch.zeros(1, bands, tile, tile), str(path), input_names=["x"],
                      output_names=list(outputs), dynamic_axes={name: axes for name in ("x", *outputs)},
                      dynamo=False)
    if props is not None:
        model = onnx.load(str(path))
        onnx.helper.set_model_props(model, props)
        onnx.save(model, str(path))
    return str(path)


def card_for(names, *, mean, std, tile, input_dtype, resolution=None, crs=None, nodata=None, overlap=0.25):
    schema = ClassSchema.from_names(names)
    return build_card(schema=schema, band_names=[f"band {b + 1}" for b in range(len(mean))],
                      input_dtype=input_dtype, nodata=nodata, mean=mean, std=std, tile_size=tile, overlap=overlap,
                      resolution=resolution, crs=crs, architecture="tiny test net", metrics={})


def tiny_model_for_chips(dataset: dict, path, tile: int = 32) -> str:
    """A :func:`tiny_net`, untrained, with the card the trainer writes for the chip dataset ``dataset`` (the
    content of its dataset.json: classes, band names and statistics, source bands): for tests of how a model's
    bands are read, not of its labels."""
    bands = dataset["bands"]
    card = build_card(schema=ClassSchema.from_list(dataset["classes"]), band_names=bands["names"],
                      input_dtype=bands["dtype"], nodata=dataset["nodata"], mean=dataset["mean"], std=dataset["std"],
                      tile_size=tile, overlap=0.25, resolution=dataset["resolution"], crs=dataset["crs"],
                      architecture="tiny test net", metrics={}, source_bands=bands["source_bands"],
                      source_count=bands["source_count"])
    return export(tiny_net(bands["count"], len(dataset["classes"])), path, bands["count"], tile, metadata_props(card))


def band_stats(path) -> tuple:
    """Per-band mean and std over valid pixels (NaN and nodata left out)."""
    with rasterio.open(path) as src:
        data = src.read(masked=True).astype("float64")
    data = np.ma.masked_invalid(data)
    return [float(v) for v in data.mean(axis=(1, 2))], [float(v) for v in data.std(axis=(1, 2))]


def untrained_model(image, path, names, *, tile: int, input_dtype: str, **card) -> str:
    """A :func:`tiny_net` for ``image``'s bands and ``names``' classes, untrained, exported to ``path`` with a card
    of ``image``'s band statistics (``card``: more of :func:`card_for`'s settings): for tests of what the
    classifier does around a model, not of its labels."""
    mean, std = band_stats(image)
    props = metadata_props(card_for(names, mean=mean, std=std, tile=tile, input_dtype=input_dtype, **card))
    return export(tiny_net(len(mean), len(names)), path, len(mean), tile, props)


def train_on_zion(zion_dir, steps: int = 30, seed: int = 0) -> tuple:
    """A tiny net trained for a few seconds on the Zion image against NLCD: (net, names, mean, std)."""
    image_path, labels_path = zion_dir / "landsat8_2015_b2345.tif", zion_dir / "nlcd2011_8class.tif"
    names = [c["name"] for c in json.loads((zion_dir / "classes.json").read_text())["classes"]]
    mean, std = band_stats(image_path)
    with rasterio.open(image_path) as src:
        image = src.read().astype(np.float32)
    with rasterio.open(labels_path) as src:
        labels = src.read(1).astype(np.int64)
    image = (image - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    target = np.where(labels == 255, -100, labels - 1)
    net = tiny_net(4, len(names), seed, softmax=False).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=0.01)
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny steps: one thread is faster, and does not straggle on a busy machine
    try:
        _train(net, optimiser, image, target, rng, steps)
    finally:
        torch.set_num_threads(threads)
    return torch.nn.Sequential(*net, torch.nn.Softmax(dim=1)).eval(), names, mean, std


def _train(net, optimiser, image, target, rng, steps):
    for _ in range(steps):
        rows = rng.integers(0, image.shape[1] - 64, 8)
        cols = rng.integers(0, image.shape[2] - 64, 8)
        x = torch.from_numpy(np.stack([image[:, r:r + 64, c:c + 64] for r, c in zip(rows, cols)]))
        y = torch.from_numpy(np.stack([target[r:r + 64, c:c + 64] for r, c in zip(rows, cols)]))
        loss = torch.nn.functional.cross_entropy(net(x), y, ignore_index=-100)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()


def torch_probabilities(net, path, mean, std, nodata=None) -> np.ndarray:
    """The reference: the whole raster through ``net`` at once (no tiles), invalid pixels fed as 0."""
    with rasterio.open(path) as src:
        data = src.read().astype(np.float32)
        nodata = src.nodata if nodata is None else nodata
    invalid = ~np.isfinite(data).all(axis=0)
    if nodata is not None and np.isfinite(nodata):
        invalid |= (data == nodata).any(axis=0)
    x = (data - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    x[:, invalid] = 0.0
    with torch.no_grad():
        return net(torch.from_numpy(x)[None])[0].numpy()
