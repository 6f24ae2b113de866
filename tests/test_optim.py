"""The optimizers through the real fused step in GRAPH_MODE against their closed forms (plain NumPy).

``sgd`` must be ``torch.optim.SGD``: L2 decay in the gradient of the decay group only, dampening 0,
Nesterov ``p -= lr * (g + momentum * buf)`` when asked.
"""
import numpy as np
import pytest

from mindspore import Parameter, Tensor, nn, ops

from src.engine import DistillTrainStep, create_optimizer, param_groups

TARGET = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], np.float32)
SLOPE = np.array([0.3, -0.2, 0.7], np.float32)


class Quadratic(nn.Cell):
    """A stand-in student: loss = 0.5 * |w - TARGET|^2 + SLOPE . b (gradients w - TARGET and SLOPE)."""

    def __init__(self):
        super().__init__()
        self.weight = Parameter(Tensor(np.ones((2, 3), np.float32)), name="weight")
        self.bias = Parameter(Tensor(np.full((3,), 0.5, np.float32)), name="bias")

    def construct(self):
        return 0.5 * ((self.weight - Tensor(TARGET)) ** 2).sum() + (self.bias * Tensor(SLOPE)).sum()


class QuadraticDistiller(nn.Cell):
    def __init__(self):
        super().__init__()
        self.student = Quadratic()
        self.branches = nn.CellList()

    def construct(self, x):
        loss = self.student() + 0.0 * x.sum()
        return loss, ops.stack((loss,))


def closed_form(steps, lrs, momentum, nesterov, wd):
    """torch.optim.SGD on the quadratic: weight in the decay group, bias in the no-decay group."""
    w, b = np.ones((2, 3), np.float64), np.full((3,), 0.5, np.float64)
    bufs = [None, None]
    for t in range(steps):
        grads = [w - TARGET + wd * w, SLOPE.astype(np.float64)]
        out = []
        for i, (p, g) in enumerate(zip((w, b), grads)):
            bufs[i] = g.copy() if bufs[i] is None else momentum * bufs[i] + g
            p = p - lrs[t] * ((g + momentum * bufs[i]) if nesterov else bufs[i])
            out.append(p)
        w, b = out
    return w, b


pytestmark = pytest.mark.usefixtures("graph_mode")  # every test here runs in GRAPH_MODE


@pytest.mark.parametrize("nesterov", [True, False], ids=["nesterov", "plain"])
def test_sgd_is_torch_sgd_with_l2_on_the_decay_group_only(nesterov):
    steps, momentum, wd = 4, 0.9, 0.1
    lrs = [0.1, 0.05, 0.2, 0.1]  # a per-step schedule, as train.py passes
    d = QuadraticDistiller()
    groups = param_groups(d, wd)
    decay = [p.name for g in groups if g.get("weight_decay") for p in g["params"]]
    assert decay == ["student.weight"]
    step = DistillTrainStep(d, create_optimizer("sgd", groups, lrs, momentum=momentum, nesterov=nesterov))
    step.set_train(True)
    x = Tensor(np.zeros((1,), np.float32))
    for _ in range(steps):
        step(x)
    w, b = closed_form(steps, lrs, momentum, nesterov, wd)
    np.testing.assert_allclose(d.student.weight.asnumpy(), w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(d.student.bias.asnumpy(), b, rtol=1e-6, atol=1e-6)
    # Nesterov and plain momentum part visibly after two steps: the check above can tell them apart
    other_w, _ = closed_form(steps, lrs, momentum, not nesterov, wd)
    assert np.abs(other_w - w).max() > 1e-2


def test_nesterov_without_momentum_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="nesterov"):
        create_optimizer("sgd", param_groups(QuadraticDistiller(), 0.0), 0.1, momentum=0.0, nesterov=True)


def test_a_resume_state_of_the_former_momentum_optimizer_loads_into_sgd():
    from src.engine.trainer import momentum_state_as_sgd

    buf = np.arange(6, dtype=np.float32).reshape(2, 3)
    old = {"moments.student.weight": Parameter(Tensor(buf), name="moments.student.weight"),
           "student.weight": Parameter(Tensor(buf), name="student.weight")}
    new = momentum_state_as_sgd(old, {"student.weight", "accum.student.weight", "stat.student.weight"})
    assert sorted(new) == ["accum.student.weight", "stat.student.weight", "student.weight"]
    np.testing.assert_array_equal(new["accum.student.weight"].asnumpy(), buf)
    assert not new["stat.student.weight"].asnumpy().any()  # stepped already: no first-step special case
