"""The step benchmark runs end to end at a tiny size: JSON keys, the final line, the recompile check.

Nothing here asserts a speed: the machine is shared, only the shape of the report is tested.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "train_step.py")
TINY = ["--teacher", "deit_tiny", "--student", "resnet18", "--image-size", "32", "--batch-size", "2",
        "--num-classes", "10", "--steps", "2", "--warmup", "2"]
FINAL_LINE = re.compile(r"^images_per_s=(\d+(\.\d+)?)$")


def run_script(args, tmp_path):
    env = dict(os.environ, GLOG_v="3")
    out = tmp_path / "out.json"
    proc = subprocess.run([sys.executable, SCRIPT, *args, "--json", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    return lines, json.loads(out.read_text())


@pytest.mark.slow
def test_graph_ofa_step_report(tmp_path):
    lines, result = run_script(TINY + ["--distiller", "ofa", "--mode", "graph"], tmp_path)
    match = FINAL_LINE.match(lines[-1])
    assert match, lines[-1]
    assert float(match.group(1)) == pytest.approx(result["images_per_s"], rel=1e-3)
    for key in ("images_per_s", "step_s_median", "step_s", "cpu_s_median", "first_step_s", "compile_s",
                "peak_rss_mb", "recompilation", "config", "params", "machine"):
        assert key in result, key
    assert len(result["step_s"]) == 2 and len(result["warmup_step_s"]) == 1
    assert result["step_s_median"] > 0 and result["peak_rss_mb"] > 100
    assert result["images_per_s"] == pytest.approx(2 / result["step_s_median"])
    # the first step compiles, so it takes longer than a compiled step
    assert result["first_step_s"] > result["step_s_median"]
    rec = result["recompilation"]
    assert rec["graphs_compiled_after_first_step"] == 1 and rec["graphs_compiled_after_all_steps"] == 1
    assert rec["recompiled_after_first_step"] is False
    assert result["config"]["distiller"] == "ofa" and result["config"]["optimizer"] == "sgd"
    assert result["params"]["branches"] > 0 and np.isfinite(result["final_loss"])


def test_pynative_none_step_has_no_teacher(tmp_path):
    lines, result = run_script(TINY + ["--distiller", "none", "--mode", "pynative"], tmp_path)
    assert FINAL_LINE.match(lines[-1]), lines[-1]
    assert result["config"]["teacher"] is None and result["params"]["teacher"] == 0
    assert result["params"]["branches"] == 0
    # PyNative compiles no whole-step graph: only the per-step time check applies
    assert result["recompilation"]["graphs_compiled_after_first_step"] is None
    assert result["recompilation"]["recompiled_after_first_step"] is False


def test_recompile_counter_sees_a_new_input_shape():
    import mindspore as ms
    from mindspore import nn

    from benchmarks.train_step import graph_compiles, outlier_steps

    mode = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        net = nn.Dense(3, 2)
        net(ms.Tensor(np.ones((2, 3), np.float32)))
        net(ms.Tensor(np.zeros((2, 3), np.float32)))  # new values, same shape: no new graph
        assert graph_compiles(net) == 1
        net(ms.Tensor(np.ones((4, 3), np.float32)))  # a new batch size compiles again
        assert graph_compiles(net) == 2
    finally:
        ms.set_context(mode=mode)
    assert outlier_steps([1.0, 1.1, 0.9, 9.0], 1.0) == [3]
    assert outlier_steps([1.0, 1.5, 2.0], 1.0) == []


@pytest.mark.slow
def test_teacher_cache_step_round_robin_with_the_online_step(tmp_path):
    lines, result = run_script(TINY + ["--distiller", "ofa", "--mode", "graph", "--teacher-cache", "--compare", "ofa",
                                       "--steps", "3"], tmp_path)
    assert FINAL_LINE.match(lines[-1]), lines[-1]
    cfg = result["config"]
    assert cfg["teacher_cache"] is True and cfg["step"] == "ofa-cache" and cfg["teacher"] == "deit_tiny"
    assert cfg["optimizer"] == "sgd" and cfg["recipe"].endswith("imagenet_cnn.yaml")  # train.py's recipe
    assert result["params"]["teacher"] == 0 and result["params"]["branches"] > 0  # no teacher in the step
    compare = result["compare"]
    assert set(compare) == {"ofa-cache", "ofa"} and len(compare["ofa"]["step_s"]) == 3
    assert compare["ofa"]["cached_speedup_wall"] == pytest.approx(
        compare["ofa"]["step_s_median"] / compare["ofa-cache"]["step_s_median"])
    assert "teacher_share_wall" in compare["ofa"] and any(line.startswith("teacher share") for line in lines)
    assert result["recompilation"]["recompiled_after_first_step"] is False


@pytest.mark.slow
def test_data_option_times_the_loader(tmp_path):
    rng = np.random.RandomState(0)
    for c in range(2):
        folder = tmp_path / "imgs" / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.randint(0, 255, (40, 48, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    args = TINY + ["--distiller", "kd", "--mode", "graph", "--data", str(tmp_path / "imgs"),
                   "--data-batches", "2", "--workers", "1"]
    lines, result = run_script(args, tmp_path)
    assert FINAL_LINE.match(lines[-1]), lines[-1]
    data = result["data"]
    assert data["batch_shape"] == [2, 3, 32, 32] and data["batches"] == 2
    assert data["loader_images_per_s"] > 0 and data["fed_step_images_per_s"] > 0
    assert isinstance(data["loader_is_bottleneck"], bool)
    # loader batches have the random batches' shape and dtype: still one graph
    assert result["recompilation"]["graphs_compiled_at_exit"] == 1
    assert result["recompilation"]["recompiled_after_first_step"] is False


def test_bad_arguments_fail_with_one_line(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, *TINY[:-4], "--steps", "0", "--warmup", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --steps and --warmup must be >= 1")


# The benchmark's speed-up of the fused step (src/engine/train_step.py) must not change what it does.

def test_fast_finite_check_equals_amp_all_finite():
    import mindspore as ms
    from mindspore import nn, ops

    from src.engine.train_step import _zero_if_finite

    class Fast(nn.Cell):
        def __init__(self):
            super().__init__()
            self.hyper_map = ops.HyperMap()

        def construct(self, grads):
            return ops.addn(self.hyper_map(_zero_if_finite, grads)) != 0

    class Reference(nn.Cell):
        def construct(self, grads):
            return ops.logical_not(ms.amp.all_finite(grads))

    fast, ref = Fast(), Reference()
    rng = np.random.RandomState(0)
    shapes = [(8, 3, 3, 3), (8,), (), (5, 7), (4, 2, 1, 1)]
    for trial in range(15):
        grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        kind, which = trial % 5, trial % len(shapes)
        flat = grads[which].reshape(-1)
        if kind == 0:
            flat[-1] = np.inf
        elif kind == 1:
            flat[0] = -np.inf
        elif kind == 2:
            flat[flat.size // 2] = np.nan
        elif kind == 3:
            flat[:] = 3.0e38  # huge but finite: no overflow
        grads[which] = flat.reshape(shapes[which])
        inputs = tuple(ms.Tensor(g) for g in grads)
        expected = kind < 3
        assert bool(fast(inputs).asnumpy()) is expected, (trial, kind)
        assert bool(ref(inputs).asnumpy()) is expected, (trial, kind)


def test_train_step_skips_the_update_on_non_finite_gradients():
    import mindspore as ms

    from src.distill import build_distiller
    from src.engine import DistillTrainStep, create_optimizer, param_groups
    from src.models import create_model

    mode = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        student = create_model("resnet18", num_classes=10, image_size=32)
        distiller = build_distiller("none", student, None, num_classes=10)
        step = DistillTrainStep(distiller, create_optimizer("sgd", param_groups(distiller, 1e-4), 0.1))
        step.set_train(True)
        before = {p.name: p.asnumpy().copy() for p in student.trainable_params()}
        images = np.ones((2, 3, 32, 32), np.float32)
        images[0, 0, 0, 0] = np.nan
        _, _, overflow, _ = step(ms.Tensor(images), ms.Tensor(np.array([1, 2], np.int32)))
        assert bool(overflow.asnumpy())
        for p in student.trainable_params():
            np.testing.assert_array_equal(p.asnumpy(), before[p.name], err_msg=p.name)
        _, _, overflow, _ = step(ms.Tensor(np.ones((2, 3, 32, 32), np.float32)), ms.Tensor(np.array([1, 2], np.int32)))
        assert not bool(overflow.asnumpy())
        assert any(not np.array_equal(p.asnumpy(), before[p.name]) for p in student.trainable_params())
    finally:
        ms.set_context(mode=mode)


def test_benchmarks_help_lists_every_mode_under_its_own_name(capsys):
    from benchmarks.__main__ import MODES, main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m benchmarks ") and "__main__" not in out
    assert all(f"\n  {mode} " in out for mode in ("step", "model", "loader", "loop", "equivalence")) and len(MODES) == 5
    for mode in MODES:
        with pytest.raises(SystemExit) as done:
            main([mode, "--help"])
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: python -m benchmarks {mode} "), mode
