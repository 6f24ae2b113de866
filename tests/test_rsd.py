"""RSD: the loss against its float64 formula and gradient, the projector, the distillers in GRAPH_MODE, config."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops

from src.config import load_config
from src.distill import DISTILLERS, build_distiller
from src.distill.losses import rsd_loss
from src.distill.projector import RSDProjector
from src.engine import DistillTrainStep, create_optimizer, param_groups
from src.engine.builders import build_run_distiller
from src.checkpoint import load_model_checkpoint, save_atomic
from src.engine.trainer import student_params
from src.models import create_model


# ---------------------------------------------------------------- float64 reference (written from the paper)

def standardise64(f, eps=1e-5):
    c = f - f.mean(0)
    sigma = np.sqrt((c * c).mean(0))
    return c / (sigma + eps), c, sigma


def rsd64(fs, ft, kappa):
    """Value and d/d fs of ``sum w (C - I)^2``, ``C = n(ft)^T n(fs) / B`` (diagonal weight 1, else kappa)."""
    b, d = fs.shape
    ns, cs, sig = standardise64(fs)
    nt, _, _ = standardise64(ft)
    corr = nt.T @ ns / b
    weight = np.full((d, d), kappa) + (1 - kappa) * np.eye(d)
    value = float((weight * (corr - np.eye(d)) ** 2).sum())
    g_corr = 2 * weight * (corr - np.eye(d))
    g_n = nt @ g_corr / b                       # d value / d n(fs)      [B, D]
    s = sig + 1e-5
    # through n = c / (sigma + eps), sigma = sqrt(mean c^2): (g - mean g) / s - c * sum(g c) / (s^2 B sigma)
    grad = (g_n - g_n.mean(0)) / s - cs * (g_n * cs).sum(0) / (s * s * b * sig)
    return value, grad


CASES = [  # batch, dim, kappa, feature scale
    (2, 1, 0.01, 1.0),
    (4, 5, 0.0, 1.0),
    (8, 16, 0.01, 3.0),
    (16, 7, 1.0, 0.1),
    (33, 64, 0.5, 1.0),
    (64, 192, 0.01, 10.0),
]


def features(batch, dim, scale, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((dim, dim)) / np.sqrt(dim)  # correlated dimensions: off-diagonal terms matter
    fs = (rng.standard_normal((batch, dim)) @ mix + rng.standard_normal(dim)) * scale
    ft = 0.7 * fs + 0.5 * rng.standard_normal((batch, dim)) * scale
    return fs.astype(np.float32), ft.astype(np.float32)


def test_reference_gradient_matches_finite_differences():
    """The float64 gradient the tests trust is itself checked against central differences."""
    fs, ft = features(5, 3, 1.0)
    fs, ft = fs.astype(np.float64), ft.astype(np.float64)
    _, grad = rsd64(fs, ft, 0.3)
    numeric = np.zeros_like(fs)
    for idx in np.ndindex(*fs.shape):
        plus, minus = fs.copy(), fs.copy()
        plus[idx] += 1e-6
        minus[idx] -= 1e-6
        numeric[idx] = (rsd64(plus, ft, 0.3)[0] - rsd64(minus, ft, 0.3)[0]) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("batch,dim,kappa,scale", CASES, ids=[f"B{b}-D{d}-k{k}-s{s}" for b, d, k, s in CASES])
def test_rsd_loss_and_gradient_match_float64_formula(batch, dim, kappa, scale):
    fs, ft = features(batch, dim, scale, seed=batch * dim)
    expected, expected_grad = rsd64(fs.astype(np.float64), ft.astype(np.float64), kappa)
    value = rsd_loss(Tensor(fs), Tensor(ft), kappa)
    assert value.dtype == ms.float32 and value.shape == ()
    np.testing.assert_allclose(float(value.asnumpy()), expected, rtol=2e-5)
    grad_s, grad_t = ms.grad(lambda s, t: rsd_loss(s, t, kappa), grad_position=(0, 1))(Tensor(fs), Tensor(ft))
    scale_g = np.abs(expected_grad).max()
    assert scale_g > 0
    np.testing.assert_allclose(grad_s.asnumpy(), expected_grad, rtol=1e-4, atol=1e-4 * scale_g)
    assert not grad_t.asnumpy().any()  # the teacher feature is a constant target


def test_identical_standardised_features_give_zero_diagonal_loss():
    # f_t an affine copy of f_s per dimension, dimensions uncorrelated: C is ~I and the loss ~0
    b = 64
    raw = np.random.default_rng(3).standard_normal((b, 4))
    fs = np.linalg.qr(raw - raw.mean(0))[0].astype(np.float32)  # centred, orthogonal columns
    ft = (fs * np.array([2.0, 0.5, 3.0, 1.0], np.float32) + 1.0).astype(np.float32)
    value = float(rsd_loss(Tensor(fs), Tensor(ft), 0.01).asnumpy())
    assert value == pytest.approx(rsd64(fs.astype(np.float64), ft.astype(np.float64), 0.01)[0], abs=1e-4)
    assert value < 0.05


def test_constant_feature_keeps_the_gradient_finite():
    fs, ft = features(8, 6, 1.0)
    fs[:, 2] = 0.75  # a dimension constant over the batch: its std is 0
    ft[:, 4] = -1.0
    value, grad = ms.value_and_grad(lambda s: rsd_loss(s, Tensor(ft), 0.01))(Tensor(fs))
    with np.errstate(invalid="ignore"):  # the float64 formula is 0/0 in the constant dimension
        expected, expected_grad = rsd64(fs.astype(np.float64), ft.astype(np.float64), 0.01)
    assert float(value.asnumpy()) == pytest.approx(expected, rel=1e-5)
    g = grad.asnumpy()
    assert np.isfinite(g).all()
    finite = np.ones(6, bool)
    finite[2] = False
    np.testing.assert_allclose(g[:, finite], expected_grad[:, finite], rtol=1e-4, atol=1e-5)


def test_float16_inputs_give_float32_result():
    fs, ft = features(8, 8, 1.0)
    half = rsd_loss(Tensor(fs, ms.float16), Tensor(ft, ms.float16))
    assert half.dtype == ms.float32
    exact = rsd_loss(Tensor(fs.astype(np.float16).astype(np.float32)), Tensor(ft.astype(np.float16).astype(np.float32)))
    np.testing.assert_allclose(half.asnumpy(), exact.asnumpy(), rtol=1e-6)


def test_bad_arguments_raise_value_error():
    fs, ft = features(4, 3, 1.0)
    with pytest.raises(ValueError, match="same shape"):
        rsd_loss(Tensor(fs), Tensor(ft[:, :2]))
    with pytest.raises(ValueError, match="at least 2 samples"):
        rsd_loss(Tensor(fs[:1]), Tensor(ft[:1]))


class _LossAndGrad(nn.Cell):
    def __init__(self, kappa):
        super().__init__()
        self.kappa = kappa
        self.value_and_grad = ops.value_and_grad(self.loss, grad_position=0)

    def loss(self, fs, ft):
        return rsd_loss(fs, ft, self.kappa)

    def construct(self, fs, ft):
        return self.value_and_grad(fs, ft)


def test_graph_mode_matches_eager():
    fs, ft = features(16, 12, 2.0)
    eager_value, eager_grad = _LossAndGrad(0.05)(Tensor(fs), Tensor(ft))
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        value, grad = _LossAndGrad(0.05)(Tensor(fs), Tensor(ft))
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    np.testing.assert_allclose(value.asnumpy(), eager_value.asnumpy(), rtol=1e-6)
    np.testing.assert_allclose(grad.asnumpy(), eager_grad.asnumpy(), rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- projector

def n_params(cell):
    return sum(int(np.prod(p.shape)) for p in cell.trainable_params())


def test_projector_parameter_count_resnet18_from_deit_tiny():
    # Linear(512 -> 1024) + BN(1024) + Linear(1024 -> 192), no biases: 524,288 + 2,048 + 196,608
    student = create_model("resnet18", num_classes=1000, image_size=224)
    teacher = create_model("deit_tiny", num_classes=1000, image_size=224)
    d = build_distiller("rsd", student, teacher, num_classes=1000)
    assert len(d.branches) == 1 and n_params(d.branches) == 722_944
    ofa = build_distiller("ofa", student, teacher, num_classes=1000)
    both = build_distiller("ofa+rsd", student, teacher, num_classes=1000)
    assert n_params(both.branches) == n_params(ofa.branches) + 722_944 == 3_041_184 + 722_944
    assert n_params(RSDProjector(512, 192, gamma=4)) == 512 * 2048 + 2 * 2048 + 2048 * 192


def test_projector_maps_widths():
    out = RSDProjector(16, 24, gamma=3)(Tensor(np.random.default_rng(0).standard_normal((4, 16)), ms.float32))
    assert out.shape == (4, 24)


# ---------------------------------------------------------------- distillers

SIZE, CLASSES = 32, 10


def snapshot(cell):
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters()}


def _train(name, steps=6):
    """A few fused GRAPH_MODE steps of ``name``: ResNet-10 teacher (BatchNorm) -> small ViT student."""
    ms.set_seed(4)
    teacher = create_model("resnet10", num_classes=CLASSES, image_size=SIZE)
    student = create_model("vit_p4_pico", num_classes=CLASSES, image_size=SIZE)
    d = build_distiller(name, student, teacher, num_classes=CLASSES, rsd_weight=0.1, stages=(2, 4))
    step = DistillTrainStep(d, create_optimizer("adamw", param_groups(d, 0.05), 1e-3), clip_grad=5.0)
    step.set_train(True)
    assert teacher.training is False and student.training is True and d.branches.training is True
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((8, 3, SIZE, SIZE)).astype(np.float32))
    y = Tensor((np.arange(8) % CLASSES).astype(np.int32))
    t_before, p_before = snapshot(teacher), snapshot(d.branches)
    losses, terms = [], []
    for _ in range(steps):
        loss, t, overflow, _ = step(x, y)
        assert not bool(overflow.asnumpy())
        losses.append(float(loss.asnumpy()))
        terms.append(t.asnumpy())
    return d, teacher, student, losses, terms, t_before, p_before


@pytest.mark.parametrize("name", ["rsd", pytest.param("ofa+rsd", marks=pytest.mark.slow)])
def test_graph_mode_step_trains_student_and_projector_freezes_teacher(name, graph_mode, tmp_path):
    d, teacher, student, losses, terms, t_before, p_before = _train(name)
    assert d.term_names == (("gt", "rsd") if name == "rsd" else ("gt", "ofa_final", "ofa_branches", "rsd"))
    assert all(t.shape == (len(d.term_names),) for t in terms)
    for loss, t in zip(losses, terms):  # the terms add up to the total
        assert np.isclose(t.sum(), loss, rtol=1e-5)
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    assert terms[-1][-1] < terms[0][-1]  # the RSD term itself falls
    t_after = snapshot(teacher)
    # the distiller runs the teacher in its inference form (BatchNorm folded into the convolutions): no statistics
    assert t_before and t_before.keys() == t_after.keys() and not any("moving_mean" in k for k in t_before)
    for key in t_before:  # every weight bit-identical
        assert np.array_equal(t_before[key], t_after[key]), key
    p_after = snapshot(d.branches)
    projector = [k for k in p_after if ".net." in k]
    # the projector learns, and its BatchNorm (training mode) updates its statistics
    assert projector and all(not np.array_equal(p_before[k], p_after[k]) for k in projector)

    # the student ships alone: its checkpoint holds no projector and loads strictly into a bare student
    params = student_params(student)
    assert len(params) == len(list(student.get_parameters()))
    assert not any("net." in p["name"] or "branches" in p["name"] for p in params)
    path = str(tmp_path / "student.ckpt")
    save_atomic(params, path)
    bare = create_model("vit_p4_pico", num_classes=CLASSES, image_size=SIZE)
    load_model_checkpoint(bare, path, what="student")
    bare.set_train(False)
    x = Tensor(np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32))
    ms.export(bare, x, file_name=str(tmp_path / "student"), file_format="MINDIR")
    graph = nn.GraphCell(ms.load(str(tmp_path / "student.mindir")))
    student.set_train(False)
    np.testing.assert_allclose(graph(x).asnumpy(), student(x).asnumpy(), atol=1e-5)


def test_every_distiller_names_its_terms():
    for name, cls in DISTILLERS.items():
        assert isinstance(cls.term_names, tuple) and cls.term_names[0] == "gt", name
    assert DISTILLERS["rsd"].term_names == ("gt", "rsd")
    assert DISTILLERS["ofa+rsd"].term_names == ("gt", "ofa_final", "ofa_branches", "rsd")


def test_rsd_terms_in_pynative_follow_weights():
    ms.set_seed(5)
    teacher = create_model("resnet10", num_classes=CLASSES, image_size=SIZE)
    student = create_model("resnet10", num_classes=CLASSES, image_size=SIZE)
    d = build_distiller("rsd", student, teacher, num_classes=CLASSES, loss_weights=(1.0, 0.0))
    d.set_train(False)  # fixed projector BN statistics: two calls see the same function
    x = Tensor(np.random.default_rng(2).standard_normal((4, 3, SIZE, SIZE)).astype(np.float32))
    y = Tensor(np.arange(4).astype(np.int32))
    _, t1 = d(x, y)
    d.w_gt, d.w_rsd = 0.5, 0.3
    _, t2 = d(x, y)
    np.testing.assert_allclose(t2.asnumpy(), t1.asnumpy() * np.array([0.5, 3.0]), rtol=1e-5)


# ---------------------------------------------------------------- config

def test_config_keys_reach_the_distiller():
    cfg = load_config(None, ["dataset=fake", "student=resnet10", "teacher=vit_p4_pico", "image_size=32",
                             "num_classes=10", "distiller=ofa+rsd", "stages=[3, 4]", "rsd_weight=0.5",
                             "rsd_kappa=0.02", "rsd_gamma=3"])
    assert (cfg.rsd_weight, cfg.rsd_kappa, cfg.rsd_gamma) == (0.5, 0.02, 3)
    student = create_model("resnet10", num_classes=10, image_size=32)
    teacher = create_model("vit_p4_pico", num_classes=10, image_size=32)
    d = build_run_distiller(cfg, student, teacher)
    assert (d.w_rsd, d.kappa, d.stages) == (0.5, 0.02, (3, 4))
    assert d.branches[d.projector_index].net[0].weight.shape == (3 * 512, 512)
    defaults = load_config(None, ["dataset=fake", "student=resnet10", "teacher=resnet10", "distiller=rsd"])
    assert (defaults.rsd_weight, defaults.rsd_kappa, defaults.rsd_gamma) == (0.1, 0.01, 2)


@pytest.mark.parametrize("override,match", [("rsd_weight=-0.1", "rsd_weight"), ("rsd_kappa=-1", "rsd_kappa"),
                                            ("rsd_gamma=0", "rsd_gamma"), ("rsd_gamma=1.5", "rsd_gamma")])
def test_config_rejects_bad_rsd_values(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, ["dataset=fake", "student=resnet10", "teacher=resnet10", "distiller=rsd", override])
