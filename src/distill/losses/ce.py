"""Ground-truth cross-entropy: label-smoothed for int labels, soft-target for mixup labels."""
import mindspore as ms
from mindspore import ops

from .labels import hard_label_mask


def cross_entropy(logits, labels, label_smoothing=0.1):
    """Batch-mean cross-entropy in float32.

    int labels [B]: target ``(1 - s) * one_hot + s / C``. soft labels [B, C]: ``-sum(y * log_softmax)``
    (mixup already smoothed them, so ``label_smoothing`` is not applied again). The choice uses
    ``labels.ndim``, static in GRAPH_MODE.
    """
    log_p = ops.log_softmax(ops.cast(logits, ms.float32), axis=-1)
    if labels.ndim == 2:
        target = ops.cast(labels, ms.float32)
    else:
        num_classes = log_p.shape[-1]
        target = hard_label_mask(labels, num_classes) * (1.0 - label_smoothing) \
            + label_smoothing / num_classes
    return -(target * log_p).sum(-1).mean()
