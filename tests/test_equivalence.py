"""The equivalence harness (benchmarks/equivalence.py): ours against the PyTorch/timm twin, step by step.

Fast tier: tiny timm configurations through the harness, one per optimizer / schedule / loss / EMA
combination (the SGD one with the float32 control), and the control's verdict on made-up tensors. Slow tier:
a deliberately wrong optimizer that the harness must catch, and reduced-resolution paper pairs.
"""
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = os.path.join(ROOT, "configs", "recipes")


@pytest.fixture(scope="module")
def harness():
    pytest.importorskip("torch", reason="needs PyTorch (test-only): pip install torch==2.13.0 (CPU)")
    from benchmarks import equivalence
    from benchmarks.timm_twin import import_timm

    import_timm()
    return equivalence


def run(harness, *argv):
    args = harness.build_arg_parser().parse_args([str(a) for a in argv])
    return harness.run(args)


def assert_equivalent(result, first=1e-5, weights=1e-3):
    assert result["first_step_loss_rel_diff"] <= first, result["per_step"][0]
    assert result["worst_loss_rel_diff"] <= 1e-3
    assert result["worst_lr_rel_diff"] <= 1e-6
    assert result["worst_weight_rel_diff"] <= weights, result["worst_weight_tensor"]
    assert result["first_parting_step"] is None


TINY_CNN = ("--student", "resnet10", "--teacher", "resnet10", "--image-size", 16, "--batch-size", 4,
            "--num-classes", 4, "--steps", 4, "--steps-per-epoch", 1, "--threads", 1)


def test_sgd_nesterov_step_schedule_label_smoothing_kd(harness):
    """ImageNet-CNN recipe: Nesterov SGD with L2 on the decay group, warm-up then step decay per epoch."""
    r = run(harness, *TINY_CNN, "--distiller", "kd", "--recipe", os.path.join(RECIPES, "imagenet_cnn.yaml"),
            "--set", "epochs=4", "warmup_epochs=1", "decay_epochs=2", "lr=0.05")
    assert (r["optimizer"], r["nesterov"], r["scheduler"], r["lr_per_epoch"]) == ("sgd", True, "step", True)
    lrs = [row["lr_theirs"] for row in r["per_step"]]
    assert lrs == pytest.approx([1e-4, 0.05, 0.005, 0.005])  # warm-up, peak, then the decay at epoch 2
    assert list(r["per_step"][0]["terms_ours"]) == ["gt", "kd", "total"]
    # a KL of 0.043 between two random ResNet-10s: float32 gives it to 5e-7 absolute, 1.2e-5 relative (measured)
    assert_equivalent(r, first=3e-5)
    assert r["global_weight_rel_diff"] <= 1e-5
    assert r["worst_bn_stat_rel_diff"] <= 1e-3
    # the control: PyTorch's own float32 run stays with its float64 run, and ours is within the floor rule
    assert r["control"] and r["control_first_parting_step"] is None
    assert 0 < r["control_global_weight_rel_diff"] <= 1e-5  # float32 rounding, not zero: it did train in float32
    assert r["tensors_failing_floor_rule"] == [] and r["steps_failing_floor_rule"] == []
    assert r["goals"]["final_weights_within_1e-3_or_torch32_floor"]
    assert len(r["per_tensor"]) == r["tensors"] and {"ours", "torch32", "ours_vs_torch32"} <= set(r["per_tensor"][0])


def test_adamw_cosine_per_step_clip_ema_mixup(harness):
    """ViT/MLP recipe: AdamW, cosine moving every step, clipping that bites, EMA, mixup/cutmix soft targets."""
    r = run(harness, "--student", "vit_p4_pico", "--distiller", "none", "--image-size", 16, "--batch-size", 4,
            "--num-classes", 4, "--steps", 4, "--steps-per-epoch", 2, "--no-control", "--threads", 1,
            "--recipe", os.path.join(RECIPES, "imagenet_vit_mlp.yaml"),
            "--set", "epochs=3", "warmup_epochs=1", "lr_per_epoch=false", "clip_grad=0.05", "ema_decay=0.5")
    assert (r["optimizer"], r["scheduler"], r["lr_per_epoch"], r["ema"]) == ("adamw", "cosine", False, True)
    assert "Mixup" in r["randomness"]
    lrs = [row["lr_theirs"] for row in r["per_step"]]
    assert lrs[0] < lrs[1] < lrs[2] > lrs[3]  # warm-up rises within the epoch, then the cosine
    assert_equivalent(r)
    assert r["global_weight_rel_diff"] <= 1e-5
    assert r["worst_ema_rel_diff"] <= 1e-3
    assert r["control"] is False and "control_first_parting_step" not in r


def test_floor_verdict_passes_what_pytorch_float32_misses_as_much():
    """The rule ``ours <= max(1e-3, k * torch32)`` on made-up tensors (k = 4); NumPy only."""
    from benchmarks import equivalence as harness

    assert harness.FLOOR_K == 4.0
    rng = np.random.RandomState(0)
    exact = {("weight", n): rng.standard_normal(50) for n in ("a", "b", "c", "d")}

    def moved(scale):  # a copy a relative ``scale`` away from the exact tensor
        return {k: v + scale[k[1]] * np.linalg.norm(v) * rng.standard_normal(50) / np.sqrt(50) for k, v in exact.items()}

    torch32 = moved({"a": 2e-3, "b": 1e-3, "c": 1e-4, "d": 0.0})
    ours = moved({"a": 5e-3, "b": 5e-2, "c": 3e-4, "d": 2e-3})
    floor = {k[1]: d for k, d in harness.deviations(torch32, exact).items()}
    devs = {k[1]: d for k, d in harness.deviations(ours, exact).items()}
    assert devs["a"] > 1e-3 and devs["a"] <= 4 * floor["a"]  # misses 1e-3 but PyTorch float32 misses it as much
    verdict = harness.floor_verdict(devs, floor)
    # b: 50x its floor; d: beyond 1e-3 where PyTorch float32 is exact; c: within 1e-3 whatever its floor
    assert verdict["failing"] == ["b", "d"]
    assert verdict["beyond_goal"] == ["a", "b", "d"]
    assert verdict["worst_ratio"] == (float("inf"), "d")
    assert verdict["worst_ratio_all"][1] == "b" and 20 < verdict["worst_ratio_all"][0] < 100
    assert harness.floor_verdict({"a": devs["a"]}, {"a": floor["a"]})["failing"] == []


@pytest.mark.slow  # a third compiled run: kept out of the fast tier's budget
def test_the_harness_catches_plain_momentum(harness, monkeypatch):
    """The failure the harness was built for: an sgd that drops Nesterov parts from the twin at step 2."""
    from src.engine import builders

    real = builders.create_optimizer
    monkeypatch.setattr(builders, "create_optimizer", lambda *a, **k: real(*a, **dict(k, nesterov=False)))
    r = run(harness, *TINY_CNN, "--distiller", "none", "--recipe", os.path.join(RECIPES, "imagenet_cnn.yaml"),
            "--no-control", "--set", "warmup_epochs=0", "lr=0.05")
    assert r["first_step_loss_rel_diff"] <= 1e-5  # same weights, same batch
    assert r["first_parting_step"] == 1  # the first update already differs (Nesterov takes 1.9 g, plain g)
    assert r["worst_weight_rel_diff"] > 1e-2


def test_bad_flags_are_one_line_errors(harness, capsys):
    from benchmarks.__main__ import main

    with pytest.raises(ValueError, match="drop_path_rate"):
        run(harness, *TINY_CNN, "--distiller", "none", "--set", "drop_path_rate=0.1")
    assert main(["equivalence", "--batch-size", "3", "--distiller", "none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "even" in err and err.count("\n") == 1
    with pytest.raises(ValueError, match="--control .* --twin-dtype float64"):
        run(harness, *TINY_CNN, "--distiller", "none", "--twin-dtype", "float32")


PAPER_PAIRS = [  # teacher, student, recipe, steps
    ("deit_tiny", "resnet18", "imagenet_cnn.yaml", 4),
    ("resnet50", "deit_tiny", "imagenet_vit_mlp.yaml", 3),
]


@pytest.mark.slow
@pytest.mark.parametrize("teacher,student,recipe,steps", PAPER_PAIRS,
                         ids=[f"{t}->{s}" for t, s, _, _ in PAPER_PAIRS])
def test_paper_pairs_at_reduced_resolution_train_as_the_twin(harness, teacher, student, recipe, steps):
    r = run(harness, "--teacher", teacher, "--student", student, "--distiller", "ofa", "--image-size", 64,
            "--batch-size", 8, "--steps", steps, "--recipe", os.path.join(RECIPES, recipe), "--no-control")
    assert r["first_step_loss_rel_diff"] <= 1e-5
    assert r["worst_loss_rel_diff"] <= 1e-3
    assert r["global_weight_rel_diff"] <= 1e-3
