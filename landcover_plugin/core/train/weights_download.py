"""Download torchvision's ImageNet ResNet weights once, on request (Set up engine environment), never in training.

Standard library only (QGIS's Python runs it). torchvision's file names end in the first 8 hex digits of the
file's SHA-256; a download whose hash does not start with them is deleted, never kept. A file already there
with the right hash is not fetched again. Files go to ``folder`` under their published names, written under a
temporary name and renamed once checked, so an interrupted download leaves nothing that looks complete.
"""
import hashlib
import os
import urllib.request
from pathlib import Path

from ..errors import BadInputError
from ..output_folder import partial_path

BASE_URL = "https://download.pytorch.org/models/"
IMAGENET_RESNETS = {"resnet18": "resnet18-f37072fd.pth", "resnet34": "resnet34-b627a593.pth",
                    "resnet50": "resnet50-11ad3fa6.pth"}  # resnet50: torchvision's IMAGENET1K_V2


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def expected_prefix(file_name: str) -> str:
    return Path(file_name).stem.rsplit("-", 1)[1]


def download_imagenet_weights(folder, names=tuple(IMAGENET_RESNETS), log=print, should_stop=lambda: False,
                              timeout: float = 60.0) -> list:
    """Fetch the named ResNets' ImageNet weights into ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        file_name = IMAGENET_RESNETS[name]
        path = folder / file_name
        if path.is_file() and _sha256(path).startswith(expected_prefix(file_name)):
            log(f"{file_name}: already there, checksum verified ({path}).")
            paths.append(str(path))
            continue
        tmp = Path(partial_path(path))  # hidden, this process's own: two downloads never write one file
        log(f"Downloading {BASE_URL}{file_name} ...")
        try:
            with urllib.request.urlopen(BASE_URL + file_name, timeout=timeout) as response, open(tmp, "wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    if should_stop():
                        raise BadInputError("Weights download cancelled; run again to fetch the rest.")
                    out.write(block)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise BadInputError(f"Could not download {BASE_URL}{file_name} ({exc}). This machine must be online "
                                f"for this step; or download the file elsewhere and give it as 'Pretrained encoder "
                                f"weights' when training.") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        digest = _sha256(tmp)
        if not digest.startswith(expected_prefix(file_name)):
            tmp.unlink(missing_ok=True)
            raise BadInputError(f"The download of {file_name} is damaged (SHA-256 {digest[:12]}..., expected "
                                f"{expected_prefix(file_name)}...). Run the step again.")
        os.replace(tmp, path)
        log(f"{file_name}: {path.stat().st_size / 1e6:.0f} MB, checksum verified ({path}).")
        paths.append(str(path))
    return paths
