"""Downloading torchvision's ImageNet ResNet weights (Set up engine environment, on request): checksums from the
file names, nothing kept from a damaged or failed download. Offline here through file:// URLs of real files; the
real download is an online-only test (LANDCOVER_ONLINE_TESTS=1), skipped otherwise."""
import hashlib
import os

import pytest
import torch

from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.events import RecordingEvents
from landcover_plugin.core.train import weights_download
from training.encoder_weights import load_encoder_weights
from training.networks import build_network


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A folder served as the download site, holding one good file (named by its hash) and one damaged one."""
    site = tmp_path / "site"
    site.mkdir()
    good = site / "good.pth"
    torch.save({"conv1.weight": torch.ones(2, 3, 7, 7)}, good)
    good_name = f"resnet18-{hashlib.sha256(good.read_bytes()).hexdigest()[:8]}.pth"
    good.rename(site / good_name)
    (site / "resnet34-00000000.pth").write_bytes(b"not what was published")
    monkeypatch.setattr(weights_download, "BASE_URL", site.as_uri() + "/")
    monkeypatch.setattr(weights_download, "IMAGENET_RESNETS",
                        {"resnet18": good_name, "resnet34": "resnet34-00000000.pth", "resnet50": "resnet50-1.pth"})
    return site, good_name


def test_a_verified_download_is_kept_and_not_fetched_again(mirror, tmp_path):
    site, good_name = mirror
    lines = []
    paths = weights_download.download_imagenet_weights(tmp_path / "weights", ["resnet18"], lines.append)
    assert paths == [str(tmp_path / "weights" / good_name)]
    assert (tmp_path / "weights" / good_name).read_bytes() == (site / good_name).read_bytes()
    (site / good_name).unlink()  # the site is gone: the verified copy is enough
    weights_download.download_imagenet_weights(tmp_path / "weights", ["resnet18"], lines.append)
    assert "already there, checksum verified" in lines[-1]


def test_damaged_or_failed_downloads_leave_nothing(mirror, tmp_path):
    folder = tmp_path / "weights"
    with pytest.raises(BadInputError, match="resnet34-00000000.pth is damaged"):
        weights_download.download_imagenet_weights(folder, ["resnet34"], lambda _: None)
    with pytest.raises(BadInputError, match="Could not download .*resnet50-1.pth.*must be online"):
        weights_download.download_imagenet_weights(folder, ["resnet50"], lambda _: None)
    assert list(folder.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LANDCOVER_ONLINE_TESTS"), reason="online only: LANDCOVER_ONLINE_TESTS=1")
def test_the_real_imagenet_resnet18_downloads_and_loads_whole(tmp_path):
    (path,) = weights_download.download_imagenet_weights(tmp_path, ["resnet18"], lambda _: None)
    model = build_network("unet_resnet18", 4, 3, base_width=8)
    info = load_encoder_weights(model, path, ["blue", "green", "red", "nir"], RecordingEvents())
    assert info["loaded"] == 120 and info["new_in_encoder"] == [] and info["unused"] == ["fc.bias", "fc.weight"]
