"""The trainer's parts: networks, metrics (checked against scikit-learn), chip samples, weights, schedule."""
import json

import numpy as np
import pytest
import rasterio
import torch

from landcover_plugin.core.assess.metrics import metrics_from_confusion
from landcover_plugin.core.chips.dataset import load_spec
from landcover_plugin.core.chips.export import export_chips
from landcover_plugin.core.chips.options import ChipExportOptions
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.train.options import TrainConfig
from training.dataset import IGNORE, ChipDataset, ChipStore, augment
from training.loop import class_weights, lr_factor, train
from training.metrics import summarise
from training.networks import available_architectures, build_network


@pytest.fixture(scope="module")
def eolearn_chips(tmp_path_factory, shared_data):
    """13-band float32 Sentinel-2 chips with NaN pixels, labelled by the eo-learn LULC raster."""
    folder = tmp_path_factory.mktemp("eolearn") / "chips"
    export_chips(ChipExportOptions(shared_data / "eolearn" / "sentinel2_13band_composite.tif", folder,
                                   labels_raster=shared_data / "eolearn" / "lulc.tif", chip_size=32, stride=16,
                                   val_fraction=0.25))
    return folder


@pytest.mark.parametrize("name", ["unet", "deeplabv3plus"])
@pytest.mark.parametrize("bands,size", [(7, 32), (13, 30), (4, 45), (3, 8)])  # 8 px: 1 px deepest maps
def test_networks_take_any_band_count_and_size(name, bands, size):
    torch.manual_seed(0)
    net = build_network(name, bands, 5, base_width=8)
    x = torch.randn(2, bands, size, size, requires_grad=True)
    out = net(x)
    assert out.shape == (2, 5, size, size)
    out[:, 2].sum().backward()
    assert x.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_architecture_registry():
    assert {"unet", "deeplabv3plus"} <= set(available_architectures())


def test_metrics_agree_with_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    reference = rng.integers(0, 4, 5000)
    predicted = np.where(rng.random(5000) < 0.7, reference, rng.integers(0, 4, 5000))
    reference[:300] = IGNORE
    keep = reference != IGNORE
    matrix = sklearn_metrics.confusion_matrix(reference[keep], predicted[keep], labels=range(4))
    scores = metrics_from_confusion(matrix)  # the trainer's scores (training.metrics.summarise) come from here
    assert scores["overall_accuracy"] == pytest.approx(
        sklearn_metrics.accuracy_score(reference[keep], predicted[keep]))
    jaccard = sklearn_metrics.jaccard_score(reference[keep], predicted[keep], labels=range(4), average=None)
    np.testing.assert_allclose(scores["iou"], jaccard)
    assert scores["mean_iou"] == pytest.approx(jaccard.mean())
    assert summarise(matrix, "abcd")["miou"] == pytest.approx(jaccard.mean(), abs=1e-6)
    # A class absent from both reference and prediction does not count in the mean.
    small = summarise(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0]]), ["a", "b", "c"])
    assert small["miou"] == pytest.approx((0.5 + 0.5) / 2) and small["iou"]["c"] is None


def test_samples_are_standardised_with_nodata_set_to_zero_and_ignored(eolearn_chips):
    spec = load_spec(eolearn_chips)
    store = ChipStore(spec)
    meta = json.loads((eolearn_chips / "dataset.json").read_text())
    ids = [c["id"] for c in meta["classes"]]
    found_nan = False
    for index, chip in enumerate(meta["chips"]):
        with rasterio.open(eolearn_chips / chip["image"]) as src:
            raw = src.read().astype(np.float64)
        with rasterio.open(eolearn_chips / chip["label"]) as src:
            label = src.read(1)
        image, target = store.sample(index)
        nodata = ~np.isfinite(raw).all(axis=0)
        found_nan |= bool(nodata.any())
        expected = (raw - np.asarray(meta["mean"])[:, None, None]) / np.asarray(meta["std"])[:, None, None]
        np.testing.assert_allclose(image[:, ~nodata], expected[:, ~nodata], rtol=1e-5, atol=1e-4)
        assert (image[:, nodata] == 0).all() and (target[nodata] == IGNORE).all()
        channel = np.full(256, IGNORE)
        channel[ids] = np.arange(len(ids))
        np.testing.assert_array_equal(target[~nodata], channel[label[~nodata]])
    assert found_nan, "the eo-learn chips should include NaN pixels"


def test_augmentation_moves_image_and_label_together():
    rng = np.random.default_rng(0)
    label = rng.integers(0, 4, (16, 16)).astype(np.uint8)
    image = np.stack([label * 10.0, label * -1.0]).astype(np.float32)  # the label is readable from the image
    seen = set()
    for seed in range(40):
        out_image, out_label = augment(image, label, np.random.default_rng(seed))
        np.testing.assert_array_equal(out_image[0], out_label * 10.0)
        seen.add(out_label.tobytes())
    assert len(seen) == 8  # the 8 symmetries of the square


def test_augmentation_is_reproducible_per_epoch_and_chip(eolearn_chips):
    store = ChipStore(load_spec(eolearn_chips))
    dataset = ChipDataset(store, range(len(store.spec.chips)), augment=True, colour_augment=True, seed=5)
    a, b, c = dataset[(1, 2)], dataset[(1, 2)], dataset[(2, 2)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.isfinite(a[0]).all()


def test_colour_augmentation_is_what_another_date_does_to_the_raw_values(eolearn_chips):
    """Each augmented chip's raw values (standardisation undone) are a gain and an offset of the chip's own, as
    another date's light and haze make them: gains over 1 +- 0.2 across chips, offsets within 10 % of the band's
    mean (the noise added on top is small)."""
    store = ChipStore(load_spec(eolearn_chips))
    dataset = ChipDataset(store, [0], augment=False, colour_augment=True, seed=3)
    image, _ = store.sample(0)
    mean, std = store.mean[:, 0, 0], 1.0 / store.inv_std[:, 0, 0]
    valid = ~(image == 0.0).all(axis=0)
    raw = image * std[:, None, None] + mean[:, None, None]
    gains = []
    for epoch in range(40):
        jittered = dataset[(epoch, 0)][0].numpy() * std[:, None, None] + mean[:, None, None]
        for band in range(0, raw.shape[0], 4):
            gain, offset = np.polyfit(raw[band][valid], jittered[band][valid], 1)
            assert 0.8 * 0.97 - 0.01 <= gain <= 1.2 * 1.03 + 0.01
            assert abs(offset) <= 0.1 * abs(mean[band]) + 0.05 * std[band]
            gains.append(gain)
    assert max(gains) - min(gains) > 0.25  # a jitter of the standardised values alone spanned 0.9-1.1


def test_class_weights_favour_rare_classes_and_average_to_one():
    counts = np.array([1000, 100, 10, 0])
    weights = class_weights(counts)
    assert weights[0] < weights[1] < weights[2] and weights[3] == 1.0
    share = counts[:3] / counts[:3].sum()
    assert (share * weights[:3]).sum() == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
def test_learning_rate_schedule_rises_then_falls(schedule):
    factors = [lr_factor(step, 100, schedule) for step in range(101)]
    peak = int(np.argmax(factors))
    assert 0 < peak < 50 and max(factors) == pytest.approx(1.0, abs=0.01)
    assert factors[0] < 0.2 and factors[-1] < 0.02
    assert all(b <= a + 1e-12 for a, b in zip(factors[peak:], factors[peak + 1:]))


def test_training_on_float_chips_with_nan_stays_finite(eolearn_chips, tmp_path):
    events = RecordingEvents()
    out = train(TrainConfig(dataset_dir=str(eolearn_chips), output=str(tmp_path / "m.onnx"), epochs=2,
                            batch_size=8, base_width=8, architecture="deeplabv3plus", patience=0, device="cpu",
                            colour_augment=True), events)
    for metric in events.of_type("metric"):
        assert np.isfinite(metric["values"]["train_loss"]) and np.isfinite(metric["values"]["val_loss"])
    assert out["onnx_max_abs_diff"] < 1e-4 and out["architecture"] == "deeplabv3plus"
    # labels from a raster (lulc.tif): the held-out line's advice was to 'Digitise more polygons of these classes'
    (heldout,) = [e["message"] for e in events.of_type("log") if e["message"].startswith("Held-out estimate")]
    assert "Most confused" in heldout and "labels raster" in heldout and "polygons" not in heldout, heldout


def test_streaming_from_disk_with_workers_gives_the_same_run_as_in_memory(eolearn_chips, tmp_path):
    spec = load_spec(eolearn_chips)
    cached, streamed = ChipStore(spec), ChipStore(spec, cache_mb=0)
    assert cached.cached and not streamed.cached
    for index in range(len(spec.chips)):
        for a, b in zip(cached.sample(index), streamed.sample(index)):
            np.testing.assert_array_equal(a, b)
    runs = []
    for settings in ({"num_workers": 0}, {"num_workers": 2, "cache_mb": 0}):
        events = RecordingEvents()
        train(TrainConfig(dataset_dir=str(eolearn_chips), output=str(tmp_path / f"{len(runs)}.onnx"), epochs=1,
                          batch_size=8, base_width=8, patience=0, device="cpu", **settings), events)
        runs.append([m["values"] for m in events.of_type("metric")])
        assert ("from disk" in " ".join(e["message"] for e in events.of_type("log"))) == ("cache_mb" in settings)
    for ours, theirs in zip(*runs):
        for key in ("train_loss", "val_loss", "val_miou"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6)
