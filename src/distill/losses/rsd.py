"""The RSD loss (Redundancy Suppression Distillation, Zhang et al., ICCV 2025): a cross-correlation to identity.

Both features are standardised over the batch; the [D, D] cross-correlation of teacher and (projected)
student features is pulled to the identity: the diagonal to 1 (each student dimension carries its teacher
dimension), the off-diagonal to 0 with weight ``kappa`` (no redundant copies of it elsewhere).
"""

import mindspore as ms
from mindspore import ops

STD_EPS = 1e-5    # added to the batch std, as in the paper's code
# Variance floor inside the square root: sqrt'(0) is inf, and a feature constant over the batch would give
# 0 * inf = NaN in the gradient (it does in the reference). sqrt(1e-20) = 1e-10 is invisible beside STD_EPS.
_VAR_FLOOR = 1e-20


def _standardise(feat):
    """``(f - mean_batch f) / (std_batch f + 1e-5)`` with the biased (1/B) standard deviation."""
    centred = feat - feat.mean(axis=0, keep_dims=True)
    var = (centred * centred).mean(axis=0, keep_dims=True)
    return centred / (ops.sqrt(ops.maximum(var, _VAR_FLOOR)) + STD_EPS)


def rsd_loss(feat_student, feat_teacher, kappa=0.01):
    """``sum_ij w_ij (C_ij - I_ij)^2`` with ``C = n(f_t)^T n(f_s) / B``, ``w_ii = 1`` and ``w_ij = kappa``.

    feat_student: [B, D] (the student's feature already projected to the teacher's width);
    feat_teacher: [B, D], a constant target (no gradient); any float dtype, computed in float32.
    ``n`` standardises every dimension over the batch, so the value depends on the batch: under data
    parallel each device computes it on its own batch. Needs B >= 2. Returns a float32 scalar.
    """
    if feat_student.ndim != 2 or feat_student.shape != feat_teacher.shape:
        raise ValueError(f"rsd_loss needs student and teacher features of the same shape [B, D], "
                         f"got {feat_student.shape} and {feat_teacher.shape}")
    batch, dim = feat_student.shape
    if batch < 2:
        raise ValueError(f"rsd_loss standardises over the batch and needs at least 2 samples, got {batch}")
    n_s = _standardise(ops.cast(feat_student, ms.float32))
    n_t = _standardise(ops.stop_gradient(ops.cast(feat_teacher, ms.float32)))
    corr = ops.matmul(n_t.T, n_s) / batch
    eye = ops.eye(dim, dim, ms.float32)
    weight = kappa + (1.0 - kappa) * eye
    diff = corr - eye
    return (weight * diff * diff).sum()
