"""Per-op profile of a compiled MindSpore call on CPU: where the time goes, by kind of kernel.

MindSpore's profiler records every kernel launch with its scope (``Default/blocks-CellList/0-Block/
mlp-Mlp/act-GELU/Erf-op3``; the backward under ``Gradients/...``). ``summarise`` sorts the kernels into

* ``layernorm``: LayerNorm and its gradient kernels;
* ``gelu``: Erf / GeLU kernels and the element-wise ops inside a GELU cell (the exact GELU is composed);
* ``depthwise_conv``: convolutions (and their gradients) inside a cell whose name says depthwise
  (``dwconv``, ``depthwise``);
* ``matmul``: MatMul, BatchMatMul, other convolutions, and the bias add of a Dense / Conv layer;
* ``softmax``: Softmax and its gradient (which MindSpore expands into element-wise ops, scoped
  ``Expand/_SoftmaxBackward``);
* ``other``: everything else (transposes, reshapes that copy, gathers, slices, element-wise arithmetic,
  reductions, concatenations ...): the part a model's own code decides.

The first five are MindSpore's kernels, which this project does not replace; ``other`` is what a better
formulation of the model can remove. The attribution follows the scopes the profiler records; after graph
optimisation a few element-wise kernels carry a neighbour's scope, so the shares are close, not exact.

``summarise_step`` splits a profiled training step (``src.engine.DistillTrainStep``) by phase, from the
same scopes: ``teacher`` (the frozen teacher's forward, ``teacher-FrozenTeacher``), ``forward`` (student,
branches, losses), ``backward`` (``Gradients/...``), ``optimizer`` (the optimizer cell's kernels: the
update and its weight decay) and ``step`` (the rest of the step cell: gradient finiteness check, loss
scaling, the expanded helper ops MindSpore scopes ``Expand/...``). For a step it also names as MindSpore's
the CNN kernels (BatchNorm, ReLU, pooling and their gradients) and the optimizer's update kernels
(``STEP_FRAMEWORK_OPS``), which the model categories leave in ``other``.
"""
import csv
import glob
import os
import re
import shutil
import tempfile

CATEGORIES = ("layernorm", "gelu", "depthwise_conv", "matmul", "softmax", "other")
_DEPTHWISE_SCOPE = re.compile(r"dwconv|depthwise", re.IGNORECASE)
_GELU_SCOPE = re.compile(r"gelu", re.IGNORECASE)
_SOFTMAX_SCOPE = re.compile(r"softmax", re.IGNORECASE)  # also MindSpore's expanded softmax gradient


def categorise(op_type, scope):
    """The category of one kernel from its type and full scope name."""
    if op_type.startswith("LayerNorm"):
        return "layernorm"
    if op_type.startswith(("Erf", "GeLU", "Gelu")) or _GELU_SCOPE.search(scope):
        return "gelu"
    if op_type.startswith(("Conv2D", "Conv2d", "DepthwiseConv")):
        return "depthwise_conv" if (_DEPTHWISE_SCOPE.search(scope) or op_type.startswith("Depthwise")) \
            else "matmul"
    if op_type.startswith(("MatMul", "BatchMatMul", "Dense")):
        return "matmul"
    if op_type.startswith("BiasAdd"):
        return "matmul"
    if op_type.startswith("Softmax") or _SOFTMAX_SCOPE.search(scope):
        return "softmax"
    return "other"


PHASES = ("teacher", "forward", "backward", "optimizer", "step")
# kernels a step runs that MindSpore provides and our code only calls (besides the five categories above)
STEP_FRAMEWORK_OPS = ("BatchNorm", "ReLU", "Relu", "ReLU6", "MaxPool", "AvgPool", "ApplyMomentum", "Adam", "Lamb",
                      "SGD", "LogSoftmax")


def phase_of(scope):
    """The phase of a training step a kernel belongs to, from its scope (see ``summarise_step``)."""
    if scope.startswith("Gradients/"):
        return "backward"
    if "teacher-FrozenTeacher" in scope:
        return "teacher"
    if "/optimizer-" in scope:
        return "optimizer"
    if scope.startswith("Default/network-"):
        return "forward"
    return "step"


def summarise_step(rows, calls, wall_ms_per_call, top=8):
    """Per-call ms of a profiled training step by phase and by kind of kernel, with the heaviest op types
    of each phase and "ours": the kernels outside MindSpore's named ones (model categories other than
    ``other``, ``STEP_FRAMEWORK_OPS``, and everything the optimizer cell runs), as ms and as a share of the
    step's kernel time."""
    phases = {p: {"ms": 0.0, "by_category_ms": dict.fromkeys(CATEGORIES, 0.0), "by_op_type_ms": {}} for p in PHASES}
    ours_ms, ours_types = 0.0, {}
    for op_type, scope, total_ms, _ in rows:
        ms_per_call = total_ms / calls
        phase = phases[phase_of(scope)]
        category = categorise(op_type, scope)
        phase["ms"] += ms_per_call
        phase["by_category_ms"][category] += ms_per_call
        phase["by_op_type_ms"][op_type] = phase["by_op_type_ms"].get(op_type, 0.0) + ms_per_call
        # the optimizer phase is MindSpore's optimizer cell (its update and weight-decay kernels) as a whole
        if category == "other" and not op_type.startswith(STEP_FRAMEWORK_OPS) and phase is not phases["optimizer"]:
            ours_ms += ms_per_call
            ours_types[op_type] = ours_types.get(op_type, 0.0) + ms_per_call
    for phase in phases.values():
        phase["by_op_type_ms"] = dict(sorted(phase["by_op_type_ms"].items(), key=lambda kv: -kv[1])[:top])
    kernel_ms = sum(p["ms"] for p in phases.values())
    return {
        "calls": calls, "wall_ms_per_call": wall_ms_per_call, "kernel_ms_per_call": kernel_ms,
        "outside_kernels_ms": max(wall_ms_per_call - kernel_ms, 0.0),
        "phases": phases,
        "phase_share_of_kernel_time": {k: (v["ms"] / kernel_ms if kernel_ms else 0.0) for k, v in phases.items()},
        "ours_ms": ours_ms,
        "ours_share_of_kernel_time": ours_ms / kernel_ms if kernel_ms else 0.0,
        "ours_by_op_type_ms": dict(sorted(ours_types.items(), key=lambda kv: -kv[1])[:2 * top]),
    }


def read_op_detail(folder):
    """``[(op_type, full scope name, total ms, occurrences)]`` from the profiler's CPU op table in ``folder``."""
    paths = glob.glob(os.path.join(folder, "**", "cpu_op_detail_info_*.csv"), recursive=True)
    if not paths:
        raise ValueError(f"the profiler wrote no CPU op table under '{folder}'")
    rows = []
    for path in paths:
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                rows.append((row["op_type"], row["full_op_name"], float(row["op_total_time(ms)"]),
                             int(row["op_occurrences"])))
    return rows


def summarise(rows, calls, wall_ms_per_call, top=12):
    """Per-call milliseconds and shares by category, the heaviest op types of ``other``, and the host gap.

    ``calls``: how many calls the profile covered; ``wall_ms_per_call``: their measured wall time, so the
    time not spent in any kernel (launch, memory, Python) shows as ``outside_kernels_ms``.
    """
    by_category = dict.fromkeys(CATEGORIES, 0.0)
    other_types = {}
    for op_type, scope, total_ms, _ in rows:
        category = categorise(op_type, scope)
        by_category[category] += total_ms / calls
        if category == "other":
            other_types[op_type] = other_types.get(op_type, 0.0) + total_ms / calls
    kernel_ms = sum(by_category.values())
    heaviest = sorted(other_types.items(), key=lambda kv: -kv[1])[:top]
    return {
        "calls": calls,
        "wall_ms_per_call": wall_ms_per_call,
        "kernel_ms_per_call": kernel_ms,
        "outside_kernels_ms": max(wall_ms_per_call - kernel_ms, 0.0),
        "ms_per_call": by_category,
        "share_of_kernel_time": {k: (v / kernel_ms if kernel_ms else 0.0) for k, v in by_category.items()},
        "other_share_of_wall": (by_category["other"] + max(wall_ms_per_call - kernel_ms, 0.0)) / wall_ms_per_call
        if wall_ms_per_call else 0.0,
        "other_by_op_type_ms": dict(heaviest),
    }


def profile_calls(fn, calls, keep_dir=None):
    """Run ``fn()`` ``calls`` times under MindSpore's CPU profiler; return ``(rows, wall_ms_per_call)``.

    ``fn`` must already be compiled (call it once before). The raw profiler output is kept in ``keep_dir``
    when given, else removed.
    """
    import time

    from mindspore.profiler import Profiler, ProfilerActivity

    folder = keep_dir or tempfile.mkdtemp(prefix="op-profile-")
    try:
        profiler = Profiler(output_path=folder, activities=[ProfilerActivity.CPU])
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        wall_ms = (time.perf_counter() - start) * 1000.0 / calls
        profiler.stop()
        profiler.analyse()
        return read_op_detail(folder), wall_ms
    finally:
        if keep_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
