"""The model benchmark (``python -m benchmarks model``) runs end to end on a tiny model: JSON, final line,
timm timed in its worker, another checkout timed in turns, no recompilation, the per-op profile; and its
op categories.

Nothing here asserts a speed: the machine is shared, only the shape of the report is tested.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys

import pytest

from benchmarks.op_profile import CATEGORIES, categorise, summarise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINAL_LINE = re.compile(r"^forward_s=(\d+\.\d+)$")
HAS_TIMM = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("timm") is not None


def run_benchmarks(args):
    env = dict(os.environ, GLOG_v="3")
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_tiny_model_forward_report_with_timm_and_profile(tmp_path):
    out = tmp_path / "model.json"
    proc = run_benchmarks(["model", "--model", "vit_p4_pico", "--image-size", "32", "--batch-size", "2",
                           "--repeats", "2", "--warmup", "1", "--passes", "forward", "--profile",
                           "--against", ROOT, "--json", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    match = FINAL_LINE.match(last)
    assert match, last
    result = json.loads(out.read_text())
    forward = result["passes"]["forward"]
    assert float(match.group(1)) == pytest.approx(forward["ours_s_median"], rel=1e-3)
    assert len(forward["ours_s"]) == 2 and forward["ours_first_call_s"] > 0
    assert result["recompiled"] is False
    assert forward["graphs_compiled_after_first_call"] == forward["graphs_compiled_after_all_calls"] == 1
    assert result["params"] > 0 and result["config"]["model"] == "vit_p4_pico"
    # --against this same checkout: the same model timed in the same rounds
    assert result["against"] == ROOT and len(forward["reference_s"]) == 2 and forward["ours_speed_over_reference"] > 0
    if HAS_TIMM:
        assert result["timm"]["timed"] and result["timm"]["params"] == result["params"]  # the same architecture
        assert len(forward["timm_s"]) == 2 and forward["ours_speed_over_timm"] > 0
    else:
        print("timm side not timed: PyTorch / timm are not installed")
        assert result["timm"]["reason_not_timed"]
    profile = result["profile"]["forward"]
    assert set(profile["ms_per_call"]) == set(CATEGORIES)
    assert profile["ms_per_call"]["matmul"] > 0 and profile["ms_per_call"]["layernorm"] > 0
    assert sum(profile["share_of_kernel_time"].values()) == pytest.approx(1.0)


def test_modes_dispatch_and_errors_are_one_line(capsys):
    from benchmarks.__main__ import main

    # (a bare --help lists the modes: tests/test_benchmark.py)
    for argv, expected, absent in ((["model", "--help"], "--model", "--teacher"), (["step", "--help"], "--teacher", None),
                                   (["--teacher", "deit_tiny", "--help"], "--student", None)):  # no mode: step
        with pytest.raises(SystemExit) as done:
            main(argv)
        out = capsys.readouterr().out
        assert done.value.code == 0 and expected in out and (absent is None or absent not in out)
    assert main(["model", "--model", "resnet999"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: unknown model 'resnet999'")


def test_kernels_are_sorted_into_categories():
    gelu_scope = "Default/blocks-CellList/0-Block/mlp-Mlp/act-GELU/Mul-op3"
    assert categorise("Mul", gelu_scope) == "gelu" and categorise("Erf", "Default/x") == "gelu"
    assert categorise("LayerNormGrad", "Gradients/Default/norm1-LayerNorm/x") == "layernorm"
    assert categorise("Conv2D", "Default/feature-SequentialCell/1-SequentialCell/0-ConvNeXtBlock/dwconv-Conv2d/x") \
        == "depthwise_conv"
    assert categorise("Conv2D", "Default/patch_embed-PatchEmbed/proj-Conv2d/Conv2D-op0") == "matmul"
    assert categorise("BatchMatMul", "Default/x") == "matmul" and categorise("BiasAdd", "Default/x") == "matmul"
    assert categorise("Softmax", "Default/x") == "softmax" and categorise("Sub", "Expand/_SoftmaxBackward/x") == "softmax"
    assert categorise("Transpose", "Default/x") == "other" and categorise("StridedSlice", "Default/x") == "other"


def test_summary_is_per_call_with_shares_and_the_host_gap():
    rows = [("MatMul", "Default/a", 60.0, 6), ("Transpose", "Default/b", 30.0, 6), ("Erf", "Default/c", 10.0, 2)]
    summary = summarise(rows, calls=2, wall_ms_per_call=80.0)
    assert summary["ms_per_call"]["matmul"] == 30.0 and summary["ms_per_call"]["other"] == 15.0
    assert summary["kernel_ms_per_call"] == 50.0 and summary["outside_kernels_ms"] == 30.0
    assert summary["share_of_kernel_time"]["gelu"] == pytest.approx(0.1)
    assert summary["other_by_op_type_ms"] == {"Transpose": 15.0}


def test_a_timm_worker_slow_to_exit_is_killed_and_the_timings_kept(monkeypatch):
    from benchmarks import model_speed

    monkeypatch.setattr(model_speed, "CLOSE_TIMEOUT_S", 0.5)
    worker = object.__new__(model_speed.TimmProcess)  # a stand-in worker: reads its input, then hangs
    worker.proc = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.stdin.read(); time.sleep(60)"],
                                   stdin=subprocess.PIPE, text=True)
    worker.close()
    assert worker.proc.returncode is not None and worker.proc.returncode != 0


def test_speed_ratios_in_wall_and_cpu_time():
    from benchmarks.model_speed import speed_ratios

    entry = {"ours_s_median": 2.0, "ours_cpu_s_median": 0.5, "timm_s_median": 3.0, "timm_cpu_s_median": 0.6}
    assert speed_ratios(entry) == pytest.approx({"ours_speed_over_timm": 1.5, "ours_cpu_speed_over_timm": 1.2})
    entry.update(reference_s_median=1.0, reference_cpu_s_median=1.0)
    assert speed_ratios(entry)["ours_cpu_speed_over_reference"] == pytest.approx(2.0)
