"""Model benchmark: forward and forward+backward time of one registry model, ours against timm's twin.

    python -m benchmarks model --model swin_tiny --image-size 224 --batch-size 16 --repeats 5 --json OUT.json

Ours runs compiled (GRAPH_MODE): the forward in eval mode, the forward+backward in train mode as the
gradient of a cross-entropy loss with respect to every trainable parameter. When PyTorch and timm are
importable, timm's model of the same architecture is timed the same way (``torch.no_grad`` eval forward;
train-mode forward, loss, ``backward``) on the same number of threads in a process of its own, and the
two are timed in turns (one call of each per round) so that other jobs on the machine slow both alike. Times are medians.
``--profile`` adds MindSpore's per-op profile of both passes, by kind of kernel (``benchmarks/op_profile.py``);
``--branch S`` times the model's OFA exit branch of stage S instead, on random stage features;
``--against CHECKOUT`` also times the model as another checkout of this repository builds it, in the same
rounds (what a change to the model code gained, measured under the same load).
The last line printed is ``forward_s=<ours> forward_backward_s=<ours>``.
"""
import importlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import src  # noqa: E402,F401  first: caps oneDNN at AVX2 before MindSpore loads (100x slower convs otherwise)
from src.flags import OneLineParser, int_range  # noqa: E402

import numpy as np  # noqa: E402

import mindspore as ms  # noqa: E402
from mindspore import Tensor, nn, ops  # noqa: E402

from benchmarks.op_profile import profile_calls, summarise  # noqa: E402
from benchmarks.timm_twin import TIMM_MISSING, TWINS  # noqa: E402
from src.distill import build_branch  # noqa: E402
from benchmarks.report import run_and_report  # noqa: E402
from src.models import create_model, list_models  # noqa: E402
from src.models.fold_bn import fold_batchnorm  # noqa: E402

PASSES = ("forward", "forward_backward")
CLOSE_TIMEOUT_S = 60  # seconds the timm worker gets to exit once its input is closed


def build_arg_parser():
    p = OneLineParser(prog="python -m benchmarks model",
                                description="Time one registry model's forward and forward+backward "
                                            "(ours compiled, and timm's twin when installed).")
    p.add_argument("--model", required=True, help=f"registered model name ({', '.join(list_models())})")
    p.add_argument("--image-size", type=int_range(1), default=224)
    p.add_argument("--batch-size", type=int_range(1), default=16)
    p.add_argument("--num-classes", type=int_range(1), default=1000)
    p.add_argument("--in-channels", type=int, default=None, choices=(1, 3),
                   help="image channels (default: the model's default, 3)")
    p.add_argument("--repeats", type=int, default=5, help="timed calls per pass (the median is reported)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (the first one compiles)")
    p.add_argument("--threads", type=int, default=2, help="kernel threads of MindSpore and of PyTorch")
    p.add_argument("--passes", nargs="+", default=list(PASSES), choices=PASSES)
    p.add_argument("--branch", type=int, default=None, choices=(1, 2, 3, 4),
                   help="time the model's OFA exit branch of this stage instead (on random stage features; "
                        "teacher width = the model's)")
    p.add_argument("--fold-bn", action="store_true",
                   help="time ours in its inference form, BatchNorm folded into the layer before "
                        "(src/models/fold_bn.py; forward only, as a frozen teacher runs)")
    p.add_argument("--no-timm", action="store_true", help="time ours only")
    p.add_argument("--against", default=None, metavar="CHECKOUT",
                   help="also time the same model built by another checkout of this repository (its src/models), "
                        "in turns with ours: what a change gained")
    p.add_argument("--profile", action="store_true", help="also profile our passes per op (MindSpore profiler)")
    p.add_argument("--profile-calls", type=int_range(1), default=2, help="calls recorded per profiled pass")
    p.add_argument("--profile-dir", default=None,
                   help="keep the profiler's raw output here (one folder per pass; default: removed)")
    p.add_argument("--json", default=None, help="write the full result here")
    p.add_argument("--seed", type=int_range(0), default=0)
    return p


# ------------------------------------------------------------------------------------------ ours

class ForwardBackward(nn.Cell):
    """Cross-entropy of the model's logits and its gradients with respect to every trainable parameter."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.loss = nn.CrossEntropyLoss()
        self.weights = ms.ParameterTuple(net.trainable_params())
        self.grad = ops.GradOperation(get_by_list=True, sens_param=False)

    def _loss(self, x, y):
        return self.loss(self.net(x), y)

    def construct(self, x, y):
        return self._loss(x, y), self.grad(self._loss, self.weights)(x, y)


def graph_count(cell):
    return len(cell.compile_cache)


def _sync(outputs):
    first = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
    return float(first.asnumpy().reshape(-1)[0])


def models_of_checkout(checkout):
    """``src.models`` of another checkout, imported as the package ``reference_src`` beside ours (model files
    import each other relatively, so the two trees do not mix)."""
    init = os.path.join(checkout, "src", "__init__.py")
    if not os.path.isfile(init):
        raise ValueError(f"--against '{checkout}' is not a checkout of this repository (no src/__init__.py)")
    spec = importlib.util.spec_from_file_location("reference_src", init,
                                                  submodule_search_locations=[os.path.dirname(init)])
    package = importlib.util.module_from_spec(spec)
    sys.modules["reference_src"] = package
    spec.loader.exec_module(package)
    return importlib.import_module("reference_src.models")


class OursRunner:
    """Compiled forward (eval) and forward+backward (train) of a model on one fixed batch; ``build`` is our
    ``create_model`` or another checkout's."""

    def __init__(self, args, build=create_model):
        channels = {} if args.in_channels is None else {"in_channels": args.in_channels}
        self.net = build(args.model, num_classes=args.num_classes, image_size=args.image_size, **channels)
        shape = (args.in_channels or 3, args.image_size, args.image_size)
        if args.branch is not None:
            stage_shape = tuple(self.net.stage_shapes()[args.branch - 1])
            self.net = build_branch(self.net, args.branch, stage_shape, int(self.net.feature_dim), args.num_classes)
            shape = stage_shape
        rng = np.random.default_rng(args.seed)
        self.x = Tensor(rng.standard_normal((args.batch_size,) + shape).astype(np.float32))
        self.y = Tensor(rng.integers(0, args.num_classes, args.batch_size).astype(np.int32))
        self.fold_report = fold_batchnorm(self.net) if getattr(args, "fold_bn", False) and build is create_model \
            else None
        self.forward_cell = _EvalForward(self.net)
        self.backward_cell = ForwardBackward(self.net)
        self.params = int(sum(int(np.prod(p.shape)) for p in self.net.trainable_params()))

    def call(self, which):
        if which == "forward":
            self.net.set_train(False)
            return _sync(self.forward_cell(self.x))
        self.net.set_train(True)
        return _sync(self.backward_cell(self.x, self.y))

    def cell(self, which):
        return self.forward_cell if which == "forward" else self.backward_cell


class _EvalForward(nn.Cell):
    """The model's logits, as a cell of its own so that its compiled graph is counted apart."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x):
        return self.net(x)


# ------------------------------------------------------------------------------------------ timm

class TimmProcess:
    """timm's twin in a child process (``python -m benchmarks.timm_twin``), timed call by call.

    A process of its own, without MindSpore loaded and without ``ONEDNN_MAX_CPU_ISA`` (a cap our convolutions
    need and PyTorch's do not), so each framework runs as its users run it.
    """

    def __init__(self, args, config=None):
        if config is None:
            config = {"model": args.model, "num_classes": args.num_classes, "image_size": args.image_size,
                      "batch_size": args.batch_size, "in_channels": args.in_channels or 3, "threads": args.threads,
                      "seed": args.seed}
        env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
        # the worker's warnings go to a file: a pipe nobody reads fills up and blocks the worker
        self.stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.timm_twin", json.dumps(config)],
                                     cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        first = self.proc.stdout.readline().split()
        if not first or first[0] != "ready":
            self.close()
            self.stderr.seek(0)
            error = self.stderr.read().strip().splitlines()
            raise RuntimeError(error[-1] if error else "the timm worker exited without a word")
        self.params = int(first[1])

    def timed(self, which):
        """``(wall s, CPU s)`` of one call, measured in the worker (one pair per phase for a step)."""
        self.proc.stdin.write(which + "\n")
        self.proc.stdin.flush()
        return tuple(float(v) for v in self.proc.stdout.readline().split())

    def close(self):
        """End the worker; one slow to exit (PyTorch's teardown on a loaded machine) is killed, and the
        timings already taken are kept."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=CLOSE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_timm(args):
    """``(timm process or None, reason)``: the reason says why timm is not timed."""
    if args.no_timm:
        return None, "--no-timm"
    if args.branch is not None:
        return None, "an exit branch has no timm twin"
    if args.model not in TWINS:
        return None, f"no timm twin listed for '{args.model}' (benchmarks/timm_twin.py)"
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("timm") is None:
        return None, TIMM_MISSING
    try:
        return TimmProcess(args), None
    except RuntimeError as err:
        return None, f"the timm worker failed: {err}"


# ------------------------------------------------------------------------------------------ main

def _timed(ours, which):
    start, cpu = time.perf_counter(), time.process_time()
    ours.call(which)
    return time.perf_counter() - start, time.process_time() - cpu


def time_passes(args, ours, theirs, reference=None):
    """Per pass: first call, warm-up, then ``repeats`` rounds of one call of ours, one of the reference
    checkout's model (``--against``) and one of timm's."""
    result = {}
    for which in args.passes:
        first = _timed(ours, which)[0]
        graphs_after_first = graph_count(ours.cell(which))
        for _ in range(args.warmup - 1):
            _timed(ours, which)
        for _ in range(args.warmup if reference is not None else 0):
            _timed(reference, which)
        if theirs is not None:
            for _ in range(args.warmup):
                theirs.timed(which)
        ours_s, timm_s, reference_s = [], [], []
        for _ in range(args.repeats):
            ours_s.append(_timed(ours, which))
            if reference is not None:
                reference_s.append(_timed(reference, which))
            if theirs is not None:
                timm_s.append(theirs.timed(which))
        median = statistics.median(t for t, _ in ours_s)
        entry = {"ours_s_median": median, "ours_s": [t for t, _ in ours_s],
                 "ours_cpu_s_median": statistics.median(c for _, c in ours_s), "ours_first_call_s": first,
                 "graphs_compiled_after_first_call": graphs_after_first,
                 "graphs_compiled_after_all_calls": graph_count(ours.cell(which))}
        if theirs is not None:
            entry.update(timm_s_median=statistics.median(t for t, _ in timm_s), timm_s=[t for t, _ in timm_s],
                         timm_cpu_s_median=statistics.median(c for _, c in timm_s))
        if reference is not None:
            entry.update(reference_s_median=statistics.median(t for t, _ in reference_s),
                         reference_s=[t for t, _ in reference_s],
                         reference_cpu_s_median=statistics.median(c for _, c in reference_s))
        result[which] = {**entry, **speed_ratios(entry)}
    return result


def speed_ratios(entry):
    """Our speed over timm's and over the ``--against`` checkout's, in wall time and in CPU time (> 1: ours
    faster), from a pass's medians: the docs quote both, and under load the CPU ratio is the steadier one."""
    out = {}
    for other in ("timm", "reference"):
        if other + "_s_median" in entry:
            out[f"ours_speed_over_{other}"] = entry[other + "_s_median"] / entry["ours_s_median"]
            out[f"ours_cpu_speed_over_{other}"] = entry[other + "_cpu_s_median"] / entry["ours_cpu_s_median"]
    return out


def run_benchmark(args):
    if args.model not in list_models():
        raise ValueError(f"unknown model '{args.model}'; known models: {', '.join(list_models())}")
    if args.repeats < 1 or args.warmup < 1:
        raise ValueError(f"--repeats and --warmup must be >= 1 (the first call compiles), "
                         f"got repeats={args.repeats}, warmup={args.warmup}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.fold_bn and "forward_backward" in args.passes:
        raise ValueError("--fold-bn times the inference form, which has no backward: add --passes forward")
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.device_context.cpu.op_tuning.threads_num(args.threads)
    ms.set_seed(args.seed)
    load_start = os.getloadavg()
    ours = OursRunner(args)
    reference = None
    if args.against:
        if args.branch is not None:
            raise ValueError("--against compares whole models; leave out --branch")
        reference = OursRunner(args, build=models_of_checkout(args.against).create_model)
    theirs, timm_reason = start_timm(args)
    try:
        passes = time_passes(args, ours, theirs, reference)
    finally:
        if theirs is not None:
            theirs.close()
    result = {
        "model": args.model,
        "passes": passes,
        "timm": {"timed": theirs is not None, "reason_not_timed": timm_reason,
                 "params": theirs.params if theirs is not None else None},
        "params": ours.params,
        "against": os.path.abspath(args.against) if args.against else None,
        "fold_bn": ours.fold_report.describe() if ours.fold_report is not None else None,
        "recompiled": any(p["graphs_compiled_after_all_calls"] != p["graphs_compiled_after_first_call"]
                          for p in passes.values()),
        "config": {k: getattr(args, k) for k in ("model", "branch", "image_size", "batch_size", "num_classes",
                                                  "in_channels", "repeats", "warmup", "threads", "passes", "seed",
                                                  "fold_bn")},
    }
    if args.profile:
        result["profile"] = {which: summarise(*_profile(ours, which, args), top=12) for which in args.passes}
    result["machine"] = {"cpus": os.cpu_count(), "mindspore": ms.__version__,
                         "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                         "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg())}
    return result


def _profile(ours, which, args):
    keep = os.path.join(args.profile_dir, which) if args.profile_dir else None
    rows, wall_ms = profile_calls(lambda: ours.call(which), args.profile_calls, keep_dir=keep)
    return rows, args.profile_calls, wall_ms


def summary_lines(result):
    cfg = result["config"]
    what = result["model"] if cfg["branch"] is None else f"{result['model']} exit branch {cfg['branch']}"
    lines = [f"{what} {cfg['image_size']}px batch {cfg['batch_size']}, {cfg['threads']} threads, "
             f"load {result['machine']['loadavg_start'][0]:.1f} -> {result['machine']['loadavg_end'][0]:.1f}"]
    for which, entry in result["passes"].items():
        line = f"{which}: ours {entry['ours_s_median']:.4f} s"
        if "reference_s_median" in entry:
            line += (f", --against {entry['reference_s_median']:.4f} s (ours/that speed "
                     f"{entry['ours_speed_over_reference']:.2f}x)")
        if "timm_s_median" in entry:
            line += f", timm {entry['timm_s_median']:.4f} s, ours/timm speed {entry['ours_speed_over_timm']:.2f}x"
        lines.append(line)
    if not result["timm"]["timed"]:
        lines.append(f"timm not timed: {result['timm']['reason_not_timed']}")
    for which, prof in result.get("profile", {}).items():
        shares = ", ".join(f"{k} {v:.0%}" for k, v in prof["share_of_kernel_time"].items())
        lines.append(f"profile {which} ({prof['kernel_ms_per_call']:.1f} ms in kernels of "
                     f"{prof['wall_ms_per_call']:.1f} ms): {shares}")
    lines.append(f"recompiled after the first call: {result['recompiled']}")
    return lines


def main(argv=None):
    return run_and_report(build_arg_parser().parse_args(argv), run_benchmark, summary_lines,
                          lambda result: " ".join(f"{which}_s={entry['ours_s_median']:.6f}"
                                                  for which, entry in result["passes"].items()))


if __name__ == "__main__":
    sys.exit(main())
