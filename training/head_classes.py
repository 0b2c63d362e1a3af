"""Initial weights from an earlier model of this trainer, with its classes: the output head follows the classes by
name, not by position.

An analyst retrains from the previous iteration's model after adding polygons. Class ids come from the labels
(text names are numbered in sorted order), so adding a class (or dropping one) moves the others to other output
channels: by position, a head of the same size put one class's weights on another's channel (a silently wrong
start), and a head of another size was dropped whole (the earlier classes started from nothing). Every network
here ends in a 1x1 convolution ``head`` whose output channels are ``members x classes`` (members > 1 only for the
per-pixel net's side-by-side MLPs), so its rows can be carried class by class.
"""
import torch


def is_head(key: str) -> bool:
    return key.split(".")[-2:-1] == ["head"] and key.rsplit(".", 1)[-1] in ("weight", "bias")


def carry_head(state: dict, own: dict, theirs: list, ours: list) -> tuple:
    """``state`` with its head tensors rebuilt for the classes ``ours`` (the dataset's, in channel order) from
    those of ``theirs`` (the checkpoint's), matched by name: each of our classes the checkpoint has gets its rows,
    the others keep ``own``'s (the model's random start). Returns (state, note for the log; '' when the classes
    are the same in the same order or no head could be carried)."""
    names_theirs, names_ours = [c["name"] for c in theirs], [c["name"] for c in ours]
    if names_theirs == names_ours:
        return state, ""
    source = {name: i for i, name in enumerate(names_theirs)}
    pairs = [(i, source[name]) for i, name in enumerate(names_ours) if name in source]
    state = dict(state)
    carried = False
    for key, tensor in list(state.items()):
        if not is_head(key) or key not in own or not isinstance(tensor, torch.Tensor):
            continue
        target = own[key]
        if tensor.shape[0] % len(theirs) or target.shape[0] % len(ours) or tensor.shape[1:] != target.shape[1:]:
            state.pop(key)  # not a head of these classes: left to the random start
            continue
        members = tensor.shape[0] // len(theirs)
        if members != target.shape[0] // len(ours):
            state.pop(key)
            continue
        rows_theirs = tensor.reshape(members, len(theirs), *tensor.shape[1:])
        rows = target.detach().clone().reshape(members, len(ours), *target.shape[1:])
        for ours_index, theirs_index in pairs:
            rows[:, ours_index] = rows_theirs[:, theirs_index]
        state[key] = rows.reshape(target.shape)
        carried = True
    if not carried:
        return state, ""
    new = [n for n in names_ours if n not in source]
    gone = [n for n in names_theirs if n not in names_ours]
    note = (f"The initial weights' classes ({', '.join(names_theirs)}) are matched to this dataset's by name: "
            f"{', '.join(names_ours[i] for i, _ in pairs) or 'none'} start from their earlier weights")
    if new:
        note += f"; new here (random start): {', '.join(new)}"
    if gone:
        note += f"; not in this dataset (left out): {', '.join(gone)}"
    return state, note + "."


def numbering_note(theirs: list, ours: list) -> str:
    """A warning when the classes' values (ids) differ between the initial weights' run and this dataset: a class
    of both under another value, or a value of both naming another class. The head follows the names, but this
    model's map then gives other values than the earlier map. '' when every value means what it meant."""
    ids_theirs = {c["name"].lower(): int(c["id"]) for c in theirs}
    names_theirs = {int(c["id"]): c["name"] for c in theirs}
    moved = [f"{c['name']} {ids_theirs[c['name'].lower()]} -> {c['id']}" for c in ours
             if ids_theirs.get(c["name"].lower(), int(c["id"])) != int(c["id"])]
    reused = [f"{c['id']} was {names_theirs[int(c['id'])]}, is now {c['name']}" for c in ours
              if int(c["id"]) in names_theirs and names_theirs[int(c["id"])].lower() != c["name"].lower()]
    if not moved and not reused:
        return ""
    return ("The class values differ from those of the initial weights' run: "
            + "; ".join(([f"moved {', '.join(moved)}"] if moved else []) + ([f"value {', value '.join(reused)}"]
                                                                            if reused else []))
            + ". The weights follow the classes by name, but this model's map gives them other values than the "
              "earlier map, so the two maps cannot be compared or differenced value by value (a reclassification "
              "or reference points by value change meaning). To keep the earlier values, export the chips again "
              "with 'Class list to keep' (engine: --keep-classes) set to the earlier model, its dataset.json or "
              "its classes JSON, and train on those chips.")
