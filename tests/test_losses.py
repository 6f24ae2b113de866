"""Losses (the OFA loss and the baselines of docs/method.md) against float64 golden values, gradients, dtypes, GRAPH_MODE."""
import importlib.util
import json
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from src.distill.losses import cross_entropy, dist_loss, dkd_loss, kd_loss, ofa_loss

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
LOSSES = {"ofa_loss": ofa_loss, "kd_loss": kd_loss, "dist_loss": dist_loss,
          "dkd_loss": dkd_loss, "cross_entropy": cross_entropy}
# float32 log-softmax of logits ~200 carries ~1e-5 absolute error per term
TOLERANCE = {"normal": dict(rtol=1e-5, atol=1e-6),
             "extreme50": dict(rtol=1e-5, atol=1e-4),
             "extreme200": dict(rtol=1e-5, atol=5e-4)}


def _load_reference():
    spec = importlib.util.spec_from_file_location("make_loss_golden",
                                                  os.path.join(FIXTURES, "make_loss_golden.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


REFERENCE = _load_reference()
with open(os.path.join(FIXTURES, "loss_golden.json")) as _f:
    GOLDEN = json.load(_f)


def _tensors(key, dtype=ms.float32):
    inputs = GOLDEN["inputs"][key]
    return (Tensor(np.array(inputs["student"]), dtype), Tensor(np.array(inputs["teacher"]), dtype),
            Tensor(np.array(inputs["labels"]), ms.int32), Tensor(np.array(inputs["soft_labels"]), ms.float32))


def _call(name, zs, zt, labels, kwargs):
    if name in ("kd_loss", "dist_loss"):
        return LOSSES[name](zs, zt, **kwargs)
    if name == "cross_entropy":
        return cross_entropy(zs, labels, **kwargs)
    return LOSSES[name](zs, zt, labels, **kwargs)


def _case_id(case):
    return f"{case['inputs']}-{case['loss']}-{case['labels']}-{case['kwargs']}"


def test_fixture_is_current():
    fresh = REFERENCE.build_golden()
    assert fresh["inputs"] == GOLDEN["inputs"]
    assert [(c["inputs"], c["loss"], c["labels"], c["kwargs"]) for c in fresh["cases"]] == \
        [(c["inputs"], c["loss"], c["labels"], c["kwargs"]) for c in GOLDEN["cases"]]
    np.testing.assert_allclose([c["expected"] for c in fresh["cases"]],
                               [c["expected"] for c in GOLDEN["cases"]], rtol=1e-12)
    for new, old in zip(fresh["ofa_grads"], GOLDEN["ofa_grads"]):
        np.testing.assert_allclose(new["expected"], old["expected"], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", GOLDEN["cases"], ids=_case_id)
def test_loss_matches_float64_golden(case):
    zs, zt, labels, soft = _tensors(case["inputs"])
    label_input = soft if case["labels"] == "soft_labels" else labels
    value = _call(case["loss"], zs, zt, label_input, case["kwargs"])
    assert value.dtype == ms.float32 and value.shape == ()
    value = float(value.asnumpy())
    assert np.isfinite(value)
    np.testing.assert_allclose(value, case["expected"], **TOLERANCE[case["inputs"]])


@pytest.mark.parametrize("grad_case", GOLDEN["ofa_grads"], ids=lambda g: f"{g['inputs']}-{g['kwargs']}")
def test_ofa_gradient_matches_closed_form(grad_case):
    zs, zt, labels, _ = _tensors(grad_case["inputs"])
    grad_s, grad_t = ms.grad(lambda s, t: ofa_loss(s, t, labels, **grad_case["kwargs"]),
                             grad_position=(0, 1))(zs, zt)
    np.testing.assert_allclose(grad_s.asnumpy(), np.array(grad_case["expected"]), rtol=1e-5, atol=1e-6)
    # the teacher is a constant target
    assert not grad_t.asnumpy().any()


@pytest.mark.parametrize("key", ["extreme50", "extreme200"])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_gradients_finite_at_extreme_logits(key, temperature):
    zs, zt, labels, soft = _tensors(key)
    fns = [lambda s, t: ofa_loss(s, t, labels, 1.5, temperature),
           lambda s, t: kd_loss(s, t, temperature),
           lambda s, t: dist_loss(s, t, tau=temperature),
           lambda s, t: dkd_loss(s, t, labels, temperature=temperature),
           lambda s, t: cross_entropy(s / temperature, labels),
           lambda s, t: cross_entropy(s / temperature, soft)]
    for fn in fns:
        grad_s = ms.grad(fn)(zs, zt).asnumpy()
        assert np.isfinite(grad_s).all()
        assert np.abs(grad_s).max() > 0


def test_teacher_gets_no_gradient():
    zs, zt, labels, _ = _tensors("normal")
    for fn in (lambda s, t: kd_loss(s, t, 2.0), lambda s, t: dist_loss(s, t),
               lambda s, t: dkd_loss(s, t, labels)):
        assert not ms.grad(fn, grad_position=1)(zs, zt).asnumpy().any()


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_ofa_eps_one_is_soft_cross_entropy_against_teacher(temperature):
    zs, zt, labels, _ = _tensors("normal")
    p_t = ops.softmax(zt / temperature, axis=-1)
    expected = cross_entropy(zs / temperature, p_t)
    np.testing.assert_allclose(ofa_loss(zs, zt, labels, 1.0, temperature).asnumpy(),
                               expected.asnumpy(), rtol=1e-6)
    # and eps != 1 really changes the loss
    assert abs(float(ofa_loss(zs, zt, labels, 1.5, temperature).asnumpy()) - float(expected.asnumpy())) > 1e-2


def test_soft_labels_use_argmax():
    zs, zt, labels, soft = _tensors("normal")
    for fn in (lambda y: ofa_loss(zs, zt, y, 1.5, 2.0), lambda y: dkd_loss(zs, zt, y, temperature=2.0)):
        assert float(fn(labels).asnumpy()) == pytest.approx(float(fn(soft).asnumpy()), rel=1e-7)


def test_float16_inputs_give_float32_result():
    zs, zt, labels, soft = _tensors("normal", ms.float16)
    zs32, zt32 = zs.astype(ms.float32), zt.astype(ms.float32)
    for name in LOSSES:
        value = _call(name, zs, zt, labels, {})
        assert value.dtype == ms.float32
        # same numbers as the float32 computation on the (exactly cast) float16 logits
        np.testing.assert_allclose(value.asnumpy(), _call(name, zs32, zt32, labels, {}).asnumpy(), rtol=1e-6)
    assert cross_entropy(zs, soft.astype(ms.float16)).dtype == ms.float32


def test_label_smoothing_matches_mindspore_cross_entropy():
    zs, _, labels, _ = _tensors("normal")
    expected = nn.CrossEntropyLoss(label_smoothing=0.1)(zs, labels)
    np.testing.assert_allclose(cross_entropy(zs, labels).asnumpy(), expected.asnumpy(), rtol=1e-6)


def test_labels_of_a_wrong_rank_raise_value_error():
    zs, zt, labels, _ = _tensors("normal")
    with pytest.raises(ValueError, match="labels"):
        ofa_loss(zs, zt, labels.reshape(2, 2, -1))


class AllLosses(nn.Cell):
    """Every loss and its gradient w.r.t. the student logits, in one graph."""

    def __init__(self):
        super().__init__()
        self.value_and_grad = ops.value_and_grad(self.losses, grad_position=0, has_aux=True)

    def losses(self, zs, zt, labels, soft):
        terms = (ofa_loss(zs, zt, labels, 1.5, 2.0), ofa_loss(zs, zt, soft, 1.5, 2.0), kd_loss(zs, zt, 4.0),
                 dist_loss(zs, zt, tau=2.0), dkd_loss(zs, zt, labels, temperature=4.0),
                 cross_entropy(zs, labels), cross_entropy(zs, soft))
        total = terms[0] + terms[1] + terms[2] + terms[3] + terms[4] + terms[5] + terms[6]
        return total, terms

    def construct(self, zs, zt, labels, soft):
        (_, terms), grad = self.value_and_grad(zs, zt, labels, soft)
        return terms, grad


def test_all_losses_compile_and_match_in_graph_mode():
    inputs = {key: _tensors(key) for key in ("normal", "extreme200")}
    eager = {key: AllLosses().losses(*args)[1] for key, args in inputs.items()}
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        cell = AllLosses()
        graph = {key: cell(*args) for key, args in inputs.items()}
    finally:
        ms.set_context(mode=previous)
    for key in inputs:
        terms, grad = graph[key]
        np.testing.assert_allclose([t.asnumpy() for t in terms], [t.asnumpy() for t in eager[key]], rtol=1e-5)
        assert np.isfinite(grad.asnumpy()).all()
