"""Decoupled KD (Zhao et al. 2022): target-class KD plus non-target-class KD."""
import mindspore as ms
from mindspore import ops

from .labels import hard_label_mask

# the DKD paper masks the target logit by subtracting this before the non-target softmax
NON_TARGET_MASK = 1000.0
# drops the target class from a log-sum-exp exactly (exp underflows to 0) while staying finite
_DROP = 1e30


def _binary_log_probs(log_p, mask):
    """log [p_target, p_rest] from full log-probabilities, without forming 1 - p_target."""
    log_target = (log_p * mask).sum(-1)
    log_rest = ops.logsumexp(log_p - _DROP * mask, -1)
    return ops.stack([log_target, log_rest], axis=-1)


def _kl(log_p_t, log_p_s):
    """Batch mean of KL(p_t || p_s) from log-probabilities (finite where p_t underflows)."""
    return (ops.exp(log_p_t) * (log_p_t - log_p_s)).sum(-1).mean()


def dkd_loss(logits_student, logits_teacher, labels, alpha=1.0, beta=2.0, temperature=1.0):
    """``(alpha * TCKD + beta * NCKD) * T**2``, each KL a batch mean (float32 scalar).

    TCKD: KL between the binary [p_target, p_rest] distributions. NCKD: KL between softmaxes
    with the target logit lowered by 1000. labels: int [B] or soft [B, C] (argmax taken).
    """
    z_s = ops.cast(logits_student, ms.float32) / temperature
    z_t = ops.stop_gradient(ops.cast(logits_teacher, ms.float32)) / temperature
    mask = hard_label_mask(labels, z_s.shape[-1])
    log_p_s = ops.log_softmax(z_s, axis=-1)
    log_p_t = ops.log_softmax(z_t, axis=-1)
    tckd = _kl(_binary_log_probs(log_p_t, mask), _binary_log_probs(log_p_s, mask))
    nckd = _kl(ops.log_softmax(z_t - NON_TARGET_MASK * mask, axis=-1),
               ops.log_softmax(z_s - NON_TARGET_MASK * mask, axis=-1))
    return (alpha * tckd + beta * nckd) * (temperature ** 2)
