"""The RSD projector: maps the student's pooled feature to the teacher's width (training only).

Like the OFA exit branches it lives in the distiller, never in the student: the exported model is the
student alone.
"""
from mindspore import nn
from mindspore.common import initializer as init


def _linear(d_in, d_out):
    return nn.Dense(d_in, d_out, has_bias=False, weight_init=init.TruncatedNormal(0.02))


class RSDProjector(nn.Cell):
    """``[B, D_s] -> [B, D_t]``: Linear(D_s -> gamma*D_s, no bias) -> BatchNorm1d -> GELU -> Linear(-> D_t, no bias).

    The BatchNorm normalises over the batch in training, as the loss does. GELU is the exact (erf) form,
    PyTorch's default in the paper's code. Init as the OFA branches: Linear trunc-normal std 0.02, BN 1 / 0.
    """

    def __init__(self, student_dim, teacher_dim, gamma=2):
        super().__init__()
        hidden = int(student_dim) * gamma
        self.net = nn.SequentialCell([
            _linear(int(student_dim), hidden),
            nn.BatchNorm1d(hidden, momentum=0.9, gamma_init="ones", beta_init="zeros"),
            nn.GELU(approximate=False),
            _linear(hidden, int(teacher_dim)),
        ])

    def construct(self, x):
        return self.net(x)
