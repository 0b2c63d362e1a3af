"""Which of a model's classes it can map.

The trainer shuts the output channels of classes without a training pixel (a -1e4 offset on their logits before
the softmax, training/networks.py): their probability is 0 on every pixel. A measure scaled by the number of
classes (the entropy's log K) must count only the others, or it can never reach its top: with 3 of 8 classes
trained, the entropy stayed at or below log 3 / log 8 = 53 %.

The card records the ids of those classes (``left_out_classes``, [] when none). For a model exported before
the card did, they are read from the graph (:func:`.fast_graph.unseen_channels`). Classes the model cannot map
stay in its class list (the analyst's list: the classified raster's legend and colours keep every class).
"""
import os

LEFT_OUT_KEY = "left_out_classes"


def mappable_channels(card: dict, path) -> list:
    """The output channels (0-based, in order) of the classes the model at ``path`` can map."""
    classes = card["classes"]
    if LEFT_OUT_KEY in card:
        left_out = {int(i) for i in card[LEFT_OUT_KEY] or []}
        shut = [k for k, c in enumerate(classes) if int(c["id"]) in left_out]
    else:
        shut = _shut_in_graph(path, len(classes))
    kept = [k for k in range(len(classes)) if k not in set(shut)]
    return kept or list(range(len(classes)))  # a graph that shuts every class: no measure can be scaled to none


def _shut_in_graph(path, channels: int) -> list:
    import onnx  # noqa: PLC0415 - only for models whose card does not say (exported before it did)

    from .fast_graph import unseen_channels  # noqa: PLC0415

    if not path or not os.path.isfile(path):
        return []
    try:
        model = onnx.load(os.fspath(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - onnxruntime ran it: a graph onnx cannot parse maps every class
        return []
    return unseen_channels(model, channels)
