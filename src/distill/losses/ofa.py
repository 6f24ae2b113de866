"""The OFA loss (docs/method.md): cross-entropy against teacher probabilities re-weighted by eps."""
import mindspore as ms
from mindspore import ops

from .labels import hard_label_mask


def ofa_loss(logits_student, logits_teacher, labels, eps=1.0, temperature=1.0):
    """Batch mean of ``-sum_c w_c * log_softmax(z_s / T)_c`` with ``w = (p_t + m)**eps - m``.

    logits_*: [B, C] (any float dtype, computed in float32); labels: int [B] or soft [B, C]
    (argmax taken); eps, temperature: Python floats. No T**2 and no normalisation of ``w``.
    The teacher gets no gradient. Returns a float32 scalar.
    """
    # float32 even under mixed precision: float16 log-probabilities lose the tail classes
    z_s = ops.cast(logits_student, ms.float32) / temperature
    z_t = ops.stop_gradient(ops.cast(logits_teacher, ms.float32)) / temperature
    p_t = ops.softmax(z_t, axis=-1)
    mask = hard_label_mask(labels, z_s.shape[-1])
    weight = ops.pow(p_t + mask, eps) - mask
    # log_softmax, not log(softmax): the reference's form is inf/NaN for |z| >~ 50 in float32
    per_sample = -(weight * ops.log_softmax(z_s, axis=-1)).sum(-1)
    return per_sample.mean()
