"""Turn integer or soft labels into a one-hot class mask, inside a graph."""
import mindspore as ms
from mindspore import ops


def hard_label_mask(labels, num_classes):
    """One-hot float32 mask [B, C] of the label class; soft labels [B, C] use their argmax.

    Int-vs-soft is decided by ``labels.ndim``, which is static in GRAPH_MODE, so this traces.
    """
    if labels.ndim == 2:
        # mixup/cutmix targets: the mask marks the dominant class
        labels = ops.argmax(labels, dim=-1)
    elif labels.ndim != 1:
        raise ValueError(f"labels must be int [B] or soft [B, C], got rank {labels.ndim}")
    classes = ops.arange(num_classes, dtype=ms.int32)
    return ops.cast(ops.expand_dims(ops.cast(labels, ms.int32), -1) == classes, ms.float32)
