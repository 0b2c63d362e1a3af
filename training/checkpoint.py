"""Checkpoints: written atomically, read safely (``weights_only``), self-contained enough to export.

A checkpoint is a dict: ``model`` (state dict), ``optimizer``, ``scaler``, ``epoch`` (last finished,
1-based), ``global_step``, ``best`` (epoch and metrics of the best epoch so far), ``history`` (one row
per epoch), ``network`` (architecture, in_channels, num_classes, base_width) and ``data`` (classes,
band names, mean/std, chip size, dtype, nodata, crs, resolution).
"""
import copy
import pickle
from pathlib import Path

import torch

from landcover_plugin.core.errors import BadInputError
from landcover_plugin.core.output_folder import replaced_in_place

from .head_classes import carry_head, numbering_note
from .writing import disk_errors

FORMAT = "landcover-checkpoint"
LAST, BEST = "last.pt", "best.pt"


def save(state: dict, path) -> Path:
    """Write ``path`` under a temporary name, then rename it; a failed write (a full disk) is a BadInputError
    naming the file, and leaves no partial file."""
    path = Path(path)
    with disk_errors("the checkpoint", path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # hidden and this run's own; through Python's file: a failed write raises OSError with its reason
        with replaced_in_place(path) as tmp, open(tmp, "wb") as handle:
            torch.save(dict(state, format=FORMAT), handle)
    return path


def read_safely(path, what: str, fix: str):
    """``torch.load`` with ``weights_only`` (no code in the file runs); a file it cannot read is a BadInputError
    that says why in our words and gives ``fix``. PyTorch's own text is left out: it advises loading with
    ``weights_only=False``, which runs any code the file holds, and asks to file an issue with PyTorch."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except OSError as exc:
        raise BadInputError(f"{what} '{path}' cannot be opened ({exc.strerror or exc}). {fix}") from exc
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's input problem
        raise BadInputError(f"{what} '{path}' {_why_unreadable(path, exc)}. {fix}") from exc


def _why_unreadable(path, exc) -> str:
    """Why torch.load could not read a file: not a PyTorch file at all, one holding other Python objects than
    tensors (readable only by running code from it), or a damaged one."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError:
        head = b""
    # torch.save writes a zip archive (a bare pickle, protocol 2+, before PyTorch 1.6)
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        return "is not a PyTorch weights file (one written by torch.save)"
    if isinstance(exc, pickle.UnpicklingError):
        return ("is a PyTorch file that holds Python objects other than tensors and plain values, which cannot be "
                "read safely (reading them would run code from the file)")
    return f"is a damaged or incomplete PyTorch file ({type(exc).__name__})"


def load(path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / LAST
    if not path.is_file():
        raise BadInputError(f"The checkpoint '{path}' does not exist. Choose the '{LAST}' file of an earlier run "
                            f"(in its '<model>_checkpoints' folder).")
    state = read_safely(path, "The checkpoint", "Choose a checkpoint written by this trainer (its 'last.pt').")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BadInputError(f"'{path}' is not a checkpoint of this trainer. To start from its weights, "
                            f"give it as initial weights instead of resuming from it.")
    return state


def best_beside(resume_path):
    """The ``best.pt`` written next to a ``last.pt`` (or inside a checkpoint folder), if there is one."""
    path = Path(resume_path)
    best = (path if path.is_dir() else path.parent) / BEST
    return best if best.is_file() else None


def check_compatible(state: dict, network: dict, data: dict, path) -> None:
    """A resumed run must train the same class schema (ids, names, order), on the same bands (count and
    per-band statistics) it was started with: otherwise the map's legend or its inputs silently change.
    A different start is what initial weights are for, and those may come from anything."""
    if "optimizer" not in state:
        raise BadInputError(f"'{path}' holds the best epoch's weights only, not the optimiser state a run resumes "
                            f"from. Resume from '{LAST}' in the same folder, or give this file as initial weights.")
    theirs, ours = state.get("data", {}), data
    problems = schema_differences(theirs.get("classes", []), ours["classes"])
    if len(theirs.get("band_names", [])) != len(ours["band_names"]):
        problems.append(f"it takes {len(theirs.get('band_names', []))} bands, "
                        f"the dataset has {len(ours['band_names'])}")
    else:
        problems += _statistics_differences(theirs, ours)
    if state.get("network", {}).get("num_classes") != network["num_classes"]:
        problems.append("its class count differs")
    if problems:
        raise BadInputError(f"Cannot resume from '{path}': {'; '.join(problems)}. Resume only with the chip "
                            f"dataset the run was started on, or start a new run with it as initial weights.")


def schema_differences(theirs: list, ours: list) -> list:
    """What differs between a checkpoint's classes and the dataset's: ids, or names of the same id."""
    if [c["id"] for c in theirs] != [c["id"] for c in ours]:
        return [f"its classes differ from the dataset's (ids {_ids(theirs)} vs {_ids(ours)})"]
    renamed = [f"{a['id']}: '{a['name']}' vs '{b['name']}'" for a, b in zip(theirs, ours) if a["name"] != b["name"]]
    return [f"its class names differ from the dataset's ({', '.join(renamed)})"] if renamed else []


def _ids(classes) -> str:
    return ",".join(str(c["id"]) for c in classes)


def _statistics_differences(theirs: dict, ours: dict, rtol: float = 1e-3) -> list:
    """Per-band mean/std that differ by more than ``rtol`` (the same chips give the same numbers)."""
    problems = []
    for key in ("mean", "std"):
        a, b = theirs.get(key), ours.get(key)
        if a is None or b is None or len(a) != len(b):
            continue
        bands = [i + 1 for i, (x, y) in enumerate(zip(a, b))
                 if abs(float(x) - float(y)) > rtol * max(abs(float(x)), abs(float(y)), 1e-9)]
        if bands:
            problems.append(f"its band {key} differs from the dataset's in band(s) {', '.join(map(str, bands))} "
                            f"({', '.join(f'{float(a[i - 1]):.4g} vs {float(b[i - 1]):.4g}' for i in bands[:4])})")
    return problems


def load_initial_weights(model: torch.nn.Module, path, events, classes: list = None, tell_values: bool = True) -> None:
    """Copy every tensor whose name and shape match (so a head for other classes is simply skipped). From a
    checkpoint of this trainer, which names its classes, the head's rows follow ``classes`` (the dataset's, in
    channel order) by name (training/head_classes.py); with ``tell_values`` (once a run, not in every fold) a
    warning says when the classes' values differ from the checkpoint's."""
    state = read_safely(path, "The initial weights file", "Give a PyTorch state dict (.pt/.pth, saved with "
                        "torch.save(model.state_dict(), path)) or a checkpoint of this trainer.")
    note = values_note = ""
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        theirs = (state.get("data") or {}).get("classes")
        state = state["model"]
        if classes and theirs:
            state, note = carry_head(state, model.state_dict(), theirs, classes)
            values_note = numbering_note(theirs, classes) if tell_values else ""
    elif isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise BadInputError(f"'{path}' holds no state dict of weights. Give a .pt file saved with "
                            f"torch.save(model.state_dict(), path) or a checkpoint of this trainer.")
    own = model.state_dict()
    matched = {k: v for k, v in state.items()
               if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape}
    if not matched:
        raise BadInputError(f"No tensor of '{path}' fits the chosen architecture (names or shapes differ). "
                            f"Choose the architecture and band count the weights were trained with.")
    model.load_state_dict(matched, strict=False)
    skipped = len(own) - len(matched)
    events.info(f"Initial weights: loaded {len(matched)} of {len(own)} tensors from '{path}'"
                + (f"; {skipped} kept their random start (names or shapes differ)." if skipped else "."))
    if note:
        events.info(note)
    if values_note:
        events.warning(values_note)


def restore_run(run, state, model, optimizer, scaler, config, events, writes: bool = True) -> None:
    """Resume: load ``state`` (a last.pt) into the model, optimizer and scaler and the run state ``run``; the best
    weights come from the best.pt beside it (copied into this run's checkpoints when ``writes``)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    run.update(epoch=int(state["epoch"]), global_step=int(state["global_step"]),
               history=list(state.get("history") or []), best=state.get("best"),
               since_best=int(state.get("since_best", 0)), anneal=state.get("anneal"))
    best_path = best_beside(config.resume)
    best = load(best_path) if best_path is not None and run["best"] else None
    if best is not None and best.get("epoch") == run["best"]["epoch"]:
        run["best_state"] = best["model"]
        if writes and best_path.resolve() != (config.checkpoint_dir / BEST).resolve():
            save(best, config.checkpoint_dir / BEST)
    elif run["best"] and run["best"]["epoch"] == run["epoch"]:
        run["best_state"] = copy.deepcopy(state["model"])
    events.info(f"Resumed from '{config.resume}' after epoch {run['epoch']} (best val mIoU "
                f"{run['best']['val_miou'] if run['best'] else 'n/a'}); continuing at epoch {run['epoch'] + 1}.")
