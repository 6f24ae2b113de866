"""The training-step profile of `python -m benchmarks step --profile`: phases from scopes, "ours", the split."""
import pytest

from benchmarks.op_profile import phase_of, summarise_step
from benchmarks.train_step import step_split, torch_split

TEACHER = "Default/network-OFADistiller/teacher-FrozenTeacher/net-ResNetStages/layer1-SequentialCell/0-Bottleneck"


def test_phase_of_reads_the_scopes_of_a_distill_train_step():
    assert phase_of(TEACHER + "/conv1-Conv2d/Conv2D-op0") == "teacher"
    assert phase_of("Default/network-OFADistiller/student-ResNetStages/conv1-Conv2d/Conv2D-op0") == "forward"
    assert phase_of("Gradients/Default/network-OFADistiller/student-ResNetStages/Conv2DBackpropInput-op3") == "backward"
    assert phase_of("Default/optimizer-Momentum/ApplyMomentum-op118") == "optimizer"
    assert phase_of("Expand/_MatMulExt/MatMul-op2") == "step" and phase_of("Default/AddN-op1") == "step"


def test_summarise_step_splits_by_phase_and_counts_ours_outside_framework_kernels_and_the_optimizer():
    student = "Default/network-OFADistiller/student-ResNetStages/"
    rows = [  # (op type, scope, total ms over 2 calls, occurrences)
        ("Conv2D", TEACHER + "/conv1-Conv2d/Conv2D-op0", 40.0, 2),
        ("Conv2D", student + "conv1-Conv2d/Conv2D-op0", 60.0, 2),
        ("BatchNorm", student + "bn1-BatchNorm2d/BatchNorm-op0", 10.0, 2),
        ("Transpose", student + "x/Transpose-op0", 6.0, 2),            # ours
        ("Conv2DBackpropFilter", "Gradients/Default/network-OFADistiller/x/Conv2DBackpropFilter-op1", 80.0, 2),
        ("AddN", "Gradients/Default/network-OFADistiller/x/AddN-op1", 4.0, 2),   # ours
        ("ApplyMomentum", "Default/optimizer-Momentum/ApplyMomentum-op1", 8.0, 2),
        ("Mul", "Default/optimizer-Momentum/Mul-op1", 6.0, 2),         # MindSpore's weight decay, not ours
        ("MatMul", "Expand/_MatMulExt/MatMul-op2", 2.0, 2),             # the finiteness check: matmul kind
        ("Mul", "Expand/_Muls/Mul-op2", 2.0, 2),                        # ours
    ]
    out = summarise_step(rows, calls=2, wall_ms_per_call=150.0)
    phases = {k: v["ms"] for k, v in out["phases"].items()}
    assert phases == pytest.approx({"teacher": 20.0, "forward": 38.0, "backward": 42.0, "optimizer": 7.0, "step": 2.0})
    assert out["kernel_ms_per_call"] == pytest.approx(109.0) and out["outside_kernels_ms"] == pytest.approx(41.0)
    assert out["ours_ms"] == pytest.approx(3.0 + 2.0 + 1.0)
    assert out["ours_by_op_type_ms"] == pytest.approx({"Transpose": 3.0, "AddN": 2.0, "Mul": 1.0})
    assert out["ours_share_of_kernel_time"] == pytest.approx(6.0 / 109.0)


def test_step_split_and_torch_split_add_up_to_the_full_step():
    med = {"teacher_fwd": 1.0, "distiller_fwd": 1.5, "distiller_fwd_bwd": 2.5, "full_step": 3.0}
    split = step_split(med, {"full_step": [2.0, 2.2, 2.1]})
    assert (split["teacher_forward_s"], split["forward_s"], split["backward_s"], split["optimizer_s"]) == \
        pytest.approx((1.0, 0.5, 1.0, 0.5))
    assert sum(split[k + "_share"] for k in ("teacher_forward", "forward", "backward", "optimizer")) == pytest.approx(1)
    assert split["full_step_cpu_s"] == 2.1
    rounds = [(1.0, 0.9, 2.0, 1.8, 3.0, 2.9, 0.5, 0.4), (1.2, 1.0, 2.2, 2.0, 3.2, 3.0, 0.6, 0.5),
              (0.8, 0.7, 1.8, 1.6, 2.8, 2.7, 0.4, 0.3)]
    t = torch_split(rounds)
    assert t["teacher_forward_s"] == 1.0 and t["backward_s"] == 3.0 and t["optimizer_cpu_s"] == 0.4
    assert t["full_step_s"] == pytest.approx(6.5) and t["step_s"] == pytest.approx([6.5, 7.2, 5.8])
