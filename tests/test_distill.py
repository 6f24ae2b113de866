"""Distillers and the fused train step in GRAPH_MODE: losses go down, the teacher never changes."""
import numpy as np
import pytest

import mindspore as ms

from src.config import load_config
from src.distill import build_distiller
from src.engine import DistillTrainStep, create_optimizer, param_groups
from src.models import create_model

SIZE = 32
CLASSES = 10


def snapshot(cell):
    return {p.name: p.asnumpy().copy() for p in cell.get_parameters()}


def batch(seed=0, n=4, size=SIZE):
    rng = np.random.RandomState(seed)
    x = ms.Tensor(rng.randn(n, 3, size, size).astype(np.float32))
    y = ms.Tensor((np.arange(n) % CLASSES).astype(np.int32))
    return x, y


pytestmark = pytest.mark.usefixtures("graph_mode")  # every test here runs in GRAPH_MODE


PAIRS = [("resnet18", "deit_tiny"),   # CNN teacher -> ViT student
         ("deit_tiny", "resnet18"),   # ViT teacher -> CNN student
         ("resnet18", "resmlp_12")]   # CNN teacher -> MLP student


@pytest.mark.slow  # a full-size teacher, student and branches compiled per pair
@pytest.mark.parametrize("teacher_name,student_name", PAIRS, ids=[f"{t}->{s}" for t, s in PAIRS])
def test_graph_mode_ofa_step_trains_student_and_freezes_teacher(teacher_name, student_name):
    ms.set_seed(1)
    teacher = create_model(teacher_name, num_classes=CLASSES, image_size=SIZE)
    student = create_model(student_name, num_classes=CLASSES, image_size=SIZE)
    d = build_distiller("ofa", student, teacher, num_classes=CLASSES, stages=(1, 2, 3, 4), eps=(1.5,))
    opt = create_optimizer("adamw", param_groups(d, 0.05), 3e-4)
    step = DistillTrainStep(d, opt, clip_grad=5.0)
    step.set_train(True)
    assert teacher.training is False and student.training is True

    t_before, s_before = snapshot(teacher), snapshot(student)
    x, y = batch()
    losses = []
    for _ in range(6):
        loss, terms, overflow, _ = step(x, y)
        losses.append(float(loss.asnumpy()))
        assert not bool(overflow.asnumpy())
        # the per-term values add up to the total
        assert np.isclose(terms.asnumpy().sum(), losses[-1], rtol=1e-5)
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses

    t_after = snapshot(teacher)
    assert t_before.keys() == t_after.keys()
    for name in t_before:  # weights and BatchNorm statistics bit-identical
        assert np.array_equal(t_before[name], t_after[name]), name
    changed = [n for n, v in snapshot(student).items() if not np.array_equal(v, s_before[n])]
    assert len(changed) > len(s_before) // 2


@pytest.mark.parametrize("name", ["kd", "dist", "dkd", "none"])
def test_logit_distillers_run_in_graph_mode(name):
    teacher = create_model("resnet18", num_classes=CLASSES, image_size=SIZE)
    student = create_model("resnet18", num_classes=CLASSES, image_size=SIZE)
    d = build_distiller(name, student, teacher if name != "none" else None, num_classes=CLASSES)
    assert len(d.branches) == 0
    x, y = batch()
    d.set_train(True)
    loss, terms = d(x, y)
    t = terms.asnumpy()
    assert d.term_names == (("gt",) if name == "none" else ("gt", "kd"))
    assert t.shape == (len(d.term_names),) and np.isfinite(float(loss.asnumpy()))
    assert np.isclose(t.sum(), float(loss.asnumpy()), rtol=1e-5)


def test_ofa_terms_follow_weights_and_stage_subset():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    teacher = create_model("resnet18", num_classes=CLASSES, image_size=SIZE)
    student = create_model("resnet18", num_classes=CLASSES, image_size=SIZE)
    x, y = batch()
    ms.set_seed(3)
    d1 = build_distiller("ofa", student, teacher, num_classes=CLASSES, stages=(2, 4), eps=(1.0, 1.2, 1.5),
                         loss_weights=(1.0, 1.0), branch_weight=1.0)
    assert len(d1.branches) == 2 and d1.branch_eps == (1.0, 1.2) and d1.final_eps == 1.5
    d1.set_train(False)
    _, t1 = d1(x, y)
    d1.w_gt, d1.w_final, d1.w_branch = 0.5, 2.0, 0.1
    _, t2 = d1(x, y)
    np.testing.assert_allclose(t2.asnumpy(), t1.asnumpy() * np.array([0.5, 2.0, 0.1]), rtol=1e-5)


def test_soft_labels_give_same_ofa_terms_as_their_argmax():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    teacher = create_model("resnet18", num_classes=CLASSES, image_size=SIZE)
    student = create_model("resnet18", num_classes=CLASSES, image_size=SIZE)
    d = build_distiller("ofa", student, teacher, num_classes=CLASSES, stages=(3,), label_smoothing=0.0)
    d.set_train(False)
    x, y = batch()
    soft = np.eye(CLASSES, dtype=np.float32)[y.asnumpy()] * 0.8 + 0.2 / CLASSES
    _, hard_terms = d(x, y)
    _, soft_terms = d(x, ms.Tensor(soft))
    np.testing.assert_allclose(soft_terms.asnumpy()[1:], hard_terms.asnumpy()[1:], rtol=1e-5)


@pytest.mark.parametrize("override,match", [
    ("stages=[0, 2]", "key 'stages' must be distinct stage numbers"),
    ("stages=[1, 5]", "key 'stages' must be distinct stage numbers"),
    ("eps=[1.0, 1.0]", "key 'eps' needs 1 value or 5"),
    ("eps=[-1.0]", "key 'eps' entries must be > 0"),
    ("eps=0", r"key 'eps' entries must be > 0 \(eps=0"),
    ("loss_weights=[1.0]", "key 'loss_weights' must be 2 numbers"),
    ("ofa_branch_weight=-0.5", "key 'ofa_branch_weight' must be >= 0"),
    ("temperature=0", "key 'temperature' must be > 0"),
])
def test_bad_distiller_keys_are_refused_by_the_config_before_anything_is_built(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(None, ["dataset=fake", "student=resnet10", "teacher=resnet10", override])


def test_class_count_mismatch_and_unknown_names():
    teacher = create_model("resnet18", num_classes=100, image_size=SIZE)
    student = create_model("resnet18", num_classes=CLASSES, image_size=SIZE)
    with pytest.raises(ValueError, match="100 classes"):
        build_distiller("ofa", student, teacher, num_classes=CLASSES)
    with pytest.raises(ValueError, match="unknown distiller 'fitnet2'"):
        build_distiller("fitnet2", student, teacher)
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        create_model("resnet19")


def test_token_student_whose_grid_cannot_merge_is_rejected_at_build_time():
    # ViT at 480 px: 30x30 patches, two halvings towards 7x7 need a grid divisible by 4
    student = create_model("deit_tiny", num_classes=CLASSES, image_size=480)
    teacher = create_model("resnet18", num_classes=CLASSES, image_size=480)
    with pytest.raises(ValueError, match="cannot be merged"):
        build_distiller("ofa", student, teacher, num_classes=CLASSES)


def test_weight_decay_skips_biases_and_1d_parameters_and_teacher_is_not_trained():
    teacher = create_model("resnet18", num_classes=CLASSES, image_size=SIZE)
    student = create_model("deit_tiny", num_classes=CLASSES, image_size=SIZE)
    d = build_distiller("ofa", student, teacher, num_classes=CLASSES)
    decay, no_decay, order = param_groups(d, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 and not p.name.endswith(".bias") for p in decay["params"])
    assert all(p.ndim <= 1 or p.name.endswith(".bias") for p in no_decay["params"])
    names = {p.name for p in order["order_params"]}
    assert not any(n.startswith("teacher.") for n in names)
    assert any(n.startswith("branches.") for n in names) and any(n.startswith("student.") for n in names)
    assert "student.cls_token" in {p.name for p in decay["params"]} or "student.cls_token" in names


@pytest.mark.slow
def test_graph_mode_step_beitv2_teacher_to_cyclemlp_student():
    """The paper's best MLP pair (BEiT v2 -> CycleMLP) at a small image size.

    Same classes as beitv2_base / cyclemlp_b3, with fewer and narrower blocks: a full CycleMLP graph
    takes minutes to compile on 2 CPU cores, and what is tested here does not depend on depth.
    """
    from src.models.beit import Beit
    from src.models.cyclemlp import CycleNet

    ms.set_seed(2)
    teacher = Beit(num_classes=CLASSES, image_size=SIZE, patch_size=16, embed_dim=96, depth=4, num_heads=3,
                   stage_blocks=(1, 2, 3, 4))
    student = CycleNet((1, 1, 1, 1), (16, 32, 64, 128), (4, 4, 4, 4), num_classes=CLASSES, image_size=SIZE)
    assert student.stage_kind == "conv"  # spatial stage maps: CycleMLP gets the conv exit branches
    d = build_distiller("ofa", student, teacher, num_classes=CLASSES, eps=(1.5,))
    step = DistillTrainStep(d, create_optimizer("adamw", param_groups(d, 0.05), 1e-3), clip_grad=5.0)
    step.set_train(True)
    t_before = snapshot(teacher)
    x, y = batch()
    losses = [float(step(x, y)[0].asnumpy()) for _ in range(5)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    t_after = snapshot(teacher)
    assert all(np.array_equal(v, t_after[k]) for k, v in t_before.items())
