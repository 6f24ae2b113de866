"""Classic knowledge distillation (Hinton et al.): KL(p_t || p_s) at temperature T, times T**2."""
import mindspore as ms
from mindspore import ops


def kd_loss(logits_student, logits_teacher, temperature=1.0):
    """Batch mean of ``KL(softmax(z_t / T) || softmax(z_s / T))`` times ``T**2`` (float32 scalar)."""
    log_p_s = ops.log_softmax(ops.cast(logits_student, ms.float32) / temperature, axis=-1)
    log_p_t = ops.log_softmax(
        ops.stop_gradient(ops.cast(logits_teacher, ms.float32)) / temperature, axis=-1)
    # log_p_t is finite even where p_t underflows to 0, so 0 * finite keeps the KL finite
    kl = (ops.exp(log_p_t) * (log_p_t - log_p_s)).sum(-1)
    return kl.mean() * (temperature ** 2)
