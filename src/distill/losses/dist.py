"""DIST (Huang et al. 2022): inter- and intra-class Pearson relations of the softmax outputs."""
import mindspore as ms
from mindspore import ops

# added to the product of norms, as the reference does
PEARSON_EPS = 1e-8


def _norm(x):
    """Row-wise L2 norm whose gradient is 0 (not NaN) at an all-zero row."""
    sq = (x * x).sum(-1)
    nonzero = sq > 0
    # double where: the sqrt branch never sees 0, so its derivative stays finite
    return ops.where(nonzero, ops.sqrt(ops.where(nonzero, sq, ops.ones_like(sq))), ops.zeros_like(sq))


def _mean_pearson(a, b):
    """Mean over rows of the Pearson correlation of a[i] and b[i]."""
    a = a - a.mean(-1, keep_dims=True)
    b = b - b.mean(-1, keep_dims=True)
    return ((a * b).sum(-1) / (_norm(a) * _norm(b) + PEARSON_EPS)).mean()


def dist_loss(logits_student, logits_teacher, beta=1.0, gamma=1.0, tau=1.0):
    """``tau**2 * (beta * inter + gamma * intra)``; inter = 1 - mean row Pearson of softmax(z / tau),
    intra = the same on the transposed [C, B] matrices. Float32 scalar; teacher gets no gradient."""
    y_s = ops.softmax(ops.cast(logits_student, ms.float32) / tau, axis=-1)
    y_t = ops.softmax(ops.stop_gradient(ops.cast(logits_teacher, ms.float32)) / tau, axis=-1)
    inter = 1.0 - _mean_pearson(y_s, y_t)
    intra = 1.0 - _mean_pearson(y_s.T, y_t.T)
    return (tau ** 2) * (beta * inter + gamma * intra)
