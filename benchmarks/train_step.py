"""Step benchmark: images/s of one full OFA-KD training step on random data.

One step = frozen teacher forward + student forward/backward + exit branches + losses + optimizer
update, fused in ``src.engine.DistillTrainStep`` exactly as ``train.py`` runs it: models, distiller,
optimizer and step come from train.py's builders (``src.engine.builders``), fed a config made of the
flags on top of a recipe (``--config``, by default the ImageNet recipe of the student's family). With
``--teacher-cache`` the step is fed the teacher's logits instead of running the teacher, as train.py runs
with ``teacher_cache``. Example::

    python benchmarks/train_step.py --teacher deit_tiny --student resnet18 --distiller ofa \
        --image-size 224 --batch-size 16 --num-classes 100 --steps 10 --warmup 3 --mode graph --json OUT.json

The last line printed is ``images_per_s=<float>`` (median over the timed steps). The JSON holds the
median and every per-step time, the compile time of the first step, peak RSS, the recompilation
check and the config. ``--profile`` adds the time of the step's parts, each compiled as its own
graph; ``--data DIR`` also reads a real image folder through the training transforms of src/data
and reports the loader's images/s alone and fed to the step.
"""
import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  first: caps oneDNN at AVX2 before MindSpore loads (100x slower convs otherwise)
from src.flags import OneLineParser, float_range, int_range  # noqa: E402

import numpy as np  # noqa: E402

import mindspore as ms  # noqa: E402
from mindspore import nn, ops  # noqa: E402

from src.config import load_config  # noqa: E402
from src.distill import DISTILLERS  # noqa: E402
from src.distill.losses import cross_entropy, ofa_loss  # noqa: E402
from benchmarks.report import run_and_report  # noqa: E402
from src.engine.builders import build_run_distiller, build_student, build_train_step  # noqa: E402
from src.teacher import TeacherSource, build_teacher_model  # noqa: E402

MODES = ("graph", "pynative")
# a timed step this much slower than the median (and at least OUTLIER_EXTRA_S slower) looks like a recompile
OUTLIER_FACTOR = 2.5
OUTLIER_EXTRA_S = 1.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the published recipes: SGD for CNN students, AdamW for ViT/MLP students
RECIPES = {"sgd": os.path.join(ROOT, "configs", "recipes", "imagenet_cnn.yaml"),
           "adamw": os.path.join(ROOT, "configs", "recipes", "imagenet_vit_mlp.yaml")}
CACHED = "-cache"  # suffix of a step fed cached teacher logits in --compare
STEP_NAMES = tuple(DISTILLERS) + tuple(d + CACHED for d in DISTILLERS if d != "none")


def build_arg_parser():
    p = OneLineParser(prog="python -m benchmarks step", description="Time full OFA-KD training steps on random data.")
    p.add_argument("--teacher", default="deit_tiny", help="teacher model name")
    p.add_argument("--student", default="resnet18", help="student model name")
    p.add_argument("--distiller", default="ofa", choices=tuple(DISTILLERS), help="distillation method")
    p.add_argument("--image-size", type=int_range(1), default=224)
    p.add_argument("--batch-size", type=int_range(1), default=16)
    p.add_argument("--num-classes", type=int_range(1), default=100)
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (the first compiles)")
    p.add_argument("--mode", default="graph", choices=MODES)
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--data", default=None,
                   help="image folder root (with train/<class>/*.jpg): also time the loader alone and fed to the step")
    p.add_argument("--data-batches", type=int_range(1), default=10, help="batches read when timing --data")
    p.add_argument("--workers", type=int_range(1), default=2, help="loader workers for --data")
    p.add_argument("--opt", default="auto", choices=("auto", "sgd", "adamw"),
                   help="optimizer; auto = the recipe's (sgd for CNN students, adamw otherwise)")
    p.add_argument("--config", default=None, metavar="YAML",
                   help="recipe giving the optimizer, learning rate and weight decay (default: configs/recipes/"
                        "imagenet_cnn.yaml for sgd, imagenet_vit_mlp.yaml for adamw); the flags set the rest")
    p.add_argument("--teacher-cache", action="store_true",
                   help="feed the step the teacher's logits (as train.py does with teacher_cache) instead of "
                        "running the teacher")
    p.add_argument("--drop-path", type=float_range(0, 1, high_open=True), default=0.0, help="student stochastic depth rate")
    p.add_argument("--stages", type=int_range(1, 4), nargs="+", default=[1, 2, 3, 4], help="OFA branch stages")
    p.add_argument("--eps", type=float_range(0, low_open=True), default=1.5, help="OFA exponent")
    p.add_argument("--clip-grad", type=float_range(0), default=0.0, help="global-norm clipping (0 = off)")
    p.add_argument("--ema", type=float_range(0, 1, high_open=True), default=0.0, help="student EMA decay (0 = off)")
    p.add_argument("--profile", action="store_true",
                   help="also time teacher forward, student fwd / fwd+bwd, distiller fwd / fwd+bwd separately "
                        "(the step split into teacher forward, forward, backward and optimizer), and profile the "
                        "full step per op (MindSpore profiler), by phase and kind of kernel")
    p.add_argument("--profile-calls", type=int, default=1, help="steps recorded by the per-op profile")
    p.add_argument("--torch", action="store_true",
                   help="with --profile: also time PyTorch + timm's KD step (benchmarks/timm_twin.py StepRunner) "
                        "phase by phase, in its own process, in the same rounds")
    p.add_argument("--compare", nargs="+", default=[], choices=STEP_NAMES, metavar="DISTILLER",
                   help="also build these distillers for the same pair and time all steps round-robin "
                        "(fair ratios on a loaded machine), e.g. --compare kd none; NAME-cache = the step fed "
                        "cached teacher logits, e.g. --distiller ofa --compare ofa-cache")
    p.add_argument("--seed", type=int_range(0), default=0)
    return p


# ------------------------------------------------------------------------------------------ building

def step_name(args):
    """Label of the main step: the distiller, with ``-cache`` when fed cached teacher logits."""
    return args.distiller + (CACHED if args.teacher_cache else "")


def bench_config(args, name, family=None):
    """train.py's config for step ``name`` (a distiller, ``-cache`` suffixed when fed cached logits): the
    recipe's optimizer settings, the flags for everything that shapes the step. ``family`` (the student's)
    picks the recipe when neither ``--config`` nor ``--opt`` does."""
    distiller = name[:-len(CACHED)] if name.endswith(CACHED) else name
    overrides = {"dataset": "fake", "student": args.student, "teacher": args.teacher, "distiller": distiller,
                 "num_classes": args.num_classes, "image_size": args.image_size, "batch_size": args.batch_size,
                 "stages": list(args.stages), "eps": [args.eps], "clip_grad": args.clip_grad, "ema": args.ema > 0,
                 "drop_path_rate": args.drop_path, "seed": args.seed, "mode": args.mode, "epochs": 1,
                 "warmup_epochs": 0, "decay_epochs": 1, "mixup": 0.0, "cutmix": 0.0, "amp_level": "O0"}
    if args.ema > 0:
        overrides["ema_decay"] = args.ema
    if family is None:
        return load_config(None, overrides)
    if args.opt != "auto":
        overrides["opt"] = args.opt
    return load_config(recipe_path(args, family), overrides)


def recipe_path(args, family):
    """``--config``, else the ImageNet recipe of ``--opt``, else of the student's family."""
    if args.config:
        return args.config
    opt = args.opt if args.opt != "auto" else ("sgd" if family == "cnn" else "adamw")
    return RECIPES[opt]


def build(args, name=None):
    """``(train_step, distiller, student, teacher, optimizer name)`` for step ``name`` (default: the main
    step), in training mode, built as train.py builds its run. ``teacher`` is None for ``none`` and for a
    step fed cached logits (a ``TeacherSource`` without a model stands in)."""
    name = name or step_name(args)
    ms.set_seed(args.seed)
    student = build_student(bench_config(args, name))  # the flags alone define the student
    cfg = bench_config(args, name, family=student.family)
    teacher = None
    if cfg.distiller != "none":
        teacher = build_teacher_model(cfg, load=False)  # random weights: the speed does not depend on them
        if name.endswith(CACHED):
            teacher = TeacherSource(cfg.teacher, cfg.num_classes, int(teacher.feature_dim))
    distiller = build_run_distiller(cfg, student, teacher)
    # train.py's per-step learning rates: the optimizer reads lr[global_step] inside the graph
    steps = args.warmup + args.steps + 2 * args.data_batches + 8
    step, _ = build_train_step(cfg, distiller, steps)
    step.set_train(True)
    return step, distiller, student, teacher if not isinstance(teacher, TeacherSource) else None, cfg.opt


def step_inputs(name):
    """How many batch columns step ``name`` takes: images, labels (, cached teacher logits)."""
    return 3 if name.endswith(CACHED) else 2


def random_batches(args, count=2):
    """A few different random batches (cycled): new values every step must not recompile.

    Columns: images, labels, teacher logits (read by steps fed cached teacher outputs only).
    """
    rng = np.random.RandomState(args.seed)
    out = []
    for _ in range(count):
        x = rng.standard_normal((args.batch_size, 3, args.image_size, args.image_size)).astype(np.float32)
        y = rng.randint(0, args.num_classes, size=(args.batch_size,)).astype(np.int32)
        z = 3.0 * rng.standard_normal((args.batch_size, args.num_classes)).astype(np.float32)
        out.append((ms.Tensor(x), ms.Tensor(y), ms.Tensor(z)))
    return out


def columns(batches, name):
    """The batches cut to the columns step ``name`` takes."""
    return [batch[:step_inputs(name)] for batch in batches]


def count_params(params):
    return int(sum(int(np.prod(p.shape)) for p in params))


# ------------------------------------------------------------------------------------------ timing

def _sync(outputs):
    """Wait for the step: reading a value back blocks until the graph has run."""
    first = outputs[0] if isinstance(outputs, (tuple, list)) else outputs
    return float(first.asnumpy().reshape(-1)[0])


def time_calls(fn, batches, count):
    """``(wall_s list, cpu_s list, last value)`` of ``count`` calls ``fn(*batch)`` over cycled batches.

    cpu_s is this process's CPU time (all threads): less sensitive than wall time to other jobs on
    the machine, so it is the fairer number for comparing two configurations measured apart.
    """
    wall, cpu, value = [], [], None
    for i in range(count):
        batch = batches[i % len(batches)]
        t0, c0 = time.perf_counter(), time.process_time()
        value = _sync(fn(*batch))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu, value


def graph_compiles(cell):
    """How many graphs MindSpore compiled for ``cell`` (GRAPH_MODE; one per distinct input signature);
    None in PyNative mode, which compiles no whole-cell graph."""
    if ms.get_context("mode") != ms.GRAPH_MODE:
        return None
    return len(cell.compile_cache)


def outlier_steps(times, median):
    """Indices of steps that look like a recompile (far slower than the median)."""
    limit = max(OUTLIER_FACTOR * median, median + OUTLIER_EXTRA_S)
    return [i for i, t in enumerate(times) if t > limit]


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


# ------------------------------------------------------------------------------------------ profile parts

class _TeacherForward(nn.Cell):
    def __init__(self, distiller):
        super().__init__(auto_prefix=False)
        self.teacher = distiller.teacher

    def construct(self, images, labels, *cached):
        return self.teacher(images)


class _StudentForward(nn.Cell):
    """The student's forward as the distiller runs it (with stage features for OFA)."""

    def __init__(self, student, with_stages):
        super().__init__(auto_prefix=False)
        self.student = student
        self.with_stages = with_stages

    def construct(self, images, labels, *cached):
        if self.with_stages:
            logits, feats, _ = self.student.forward_with_stages(images)
            return logits, feats
        return self.student(images)


class _StudentLoss(nn.Cell):
    def __init__(self, student):
        super().__init__(auto_prefix=False)
        self.student = student

    def construct(self, images, labels, *cached):
        return cross_entropy(self.student(images), labels, 0.1)


class _Grad(nn.Cell):
    """Forward + backward of ``net`` (a scalar loss, or ``(loss, terms)``) w.r.t. ``weights``; no update."""

    def __init__(self, net, weights):
        super().__init__(auto_prefix=False)
        self.net = net
        self.weights = weights
        self.grad = ops.GradOperation(get_by_list=True)

    def construct(self, images, labels, *cached):
        grads = self.grad(self.net, self.weights)(images, labels, *cached)
        # depend on every gradient, or graph mode prunes the ones the output does not read
        return ops.depend(grads[0].sum(), grads)


class _BranchesLoss(nn.Cell):
    """The OFA branches and their losses on fixed stage features (Parameters, so nothing constant-folds)."""

    def __init__(self, distiller, feats, teacher_logits):
        super().__init__(auto_prefix=False)
        self.branches = distiller.branches
        self.feats = ms.ParameterTuple([ms.Parameter(f, name=f"bench_feat{i}", requires_grad=False)
                                        for i, f in enumerate(feats)])
        self.logits_t = ms.Parameter(teacher_logits, name="bench_logits_t", requires_grad=False)
        self.branch_eps = distiller.branch_eps
        self.temperature = distiller.temperature
        self.stage_index = distiller.stage_index

    def construct(self, images, labels, *cached):
        loss = ops.zeros((), ms.float32)
        for i in range(len(self.stage_index)):
            logits_b = self.branches[i](self.feats[self.stage_index[i]])
            loss = loss + ofa_loss(logits_b, self.logits_t, labels, self.branch_eps[i], self.temperature)
        return loss


class _FirstOutput(nn.Cell):
    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, images, labels, *cached):
        return self.net(images, labels, *cached)[0]


def profile_parts(args, step, distiller, student, batches):
    batches = columns(batches, step_name(args))
    """Median seconds of each part of the step, every part compiled as its own graph.

    The parts and the full step are timed round-robin (one call of each per round), so a change in
    the machine's load hits all of them alike. Derived: ``branches_losses_fwd`` = distiller fwd -
    teacher fwd - student fwd; ``backward`` = distiller fwd+bwd - distiller fwd; ``optimizer_and_update``
    = full step - distiller fwd+bwd.
    """
    rounds = max(3, min(args.steps, 5))
    trainable = ms.ParameterTuple(step.weights)
    cells = []
    if distiller.teacher is not None:
        cells.append(("teacher_fwd", _TeacherForward(distiller)))
    cells.append(("student_fwd", _StudentForward(student, args.distiller == "ofa")))
    cells.append(("student_fwd_bwd_ce", _Grad(_StudentLoss(student), ms.ParameterTuple(student.trainable_params()))))
    if args.distiller == "ofa":
        shapes = student.stage_shapes(args.image_size)
        rng = np.random.RandomState(args.seed)
        feats = [ms.Tensor(rng.standard_normal((args.batch_size, *shape)).astype(np.float32)) for shape in shapes]
        logits_t = ms.Tensor(rng.standard_normal((args.batch_size, args.num_classes)).astype(np.float32))
        branches = _BranchesLoss(distiller, feats, logits_t)
        cells.append(("branches_losses_fwd", branches))
        branch_params = ms.ParameterTuple(distiller.branches.trainable_params())
        cells.append(("branches_losses_fwd_bwd", _Grad(branches, branch_params)))
    cells.append(("distiller_fwd", _FirstOutput(distiller)))
    cells.append(("distiller_fwd_bwd", _Grad(_FirstOutput(distiller), trainable)))
    cells.append(("full_step", step))
    first = {}
    for name, cell in cells:
        cell.set_train(True)
        first[name] = time_calls(cell, batches, 1)[0][0]
    torch_step = start_torch_step(args, student.family) if args.torch else None
    torch_rounds = []
    times = {name: [] for name, _ in cells}
    cpu = {name: [] for name, _ in cells}
    try:
        if torch_step is not None:
            torch_step.timed("step")  # warm-up
        for r in range(rounds):
            for name, cell in cells:
                wall_s, cpu_s, _ = time_calls(cell, batches[r % len(batches):], 1)
                times[name].append(wall_s[0])
                cpu[name].append(cpu_s[0])
            if torch_step is not None:
                torch_rounds.append(torch_step.timed("step"))
    finally:
        if torch_step is not None:
            torch_step.close()
    parts = {name: {"median_s": statistics.median(times[name]), "cpu_s_median": statistics.median(cpu[name]),
                    "first_s": first[name], "step_s": times[name]} for name, _ in cells}
    med = {k: v["median_s"] for k, v in parts.items()}
    derived = {
        "distiller_fwd_minus_teacher_student": med["distiller_fwd"] - med.get("teacher_fwd", 0.0) - med["student_fwd"],
        "distiller_backward": med["distiller_fwd_bwd"] - med["distiller_fwd"],
        "student_backward_ce": med["student_fwd_bwd_ce"] - med["student_fwd"],
        "optimizer_and_update": med["full_step"] - med["distiller_fwd_bwd"],
    }
    parts["derived"] = derived
    parts["split"] = step_split(med, cpu)
    if torch_rounds:
        pytorch = torch_split(torch_rounds)
        parts["torch_split"] = {**pytorch, **speed_over_torch(parts["full_step"], pytorch)}
    return parts


def speed_over_torch(full_step, pytorch):
    """Our full step's speed over PyTorch's step timed in the same rounds, wall and CPU (> 1: ours faster)."""
    return {"ours_speed_over_torch": pytorch["full_step_s"] / full_step["median_s"],
            "ours_cpu_speed_over_torch": pytorch["full_step_cpu_s"] / full_step["cpu_s_median"]}


def step_split(med, cpu):
    """The full step's median wall seconds split into teacher forward, forward (student, branches, losses),
    backward and optimizer (with the step's own checks), each also as a share of the full step."""
    teacher = med.get("teacher_fwd", 0.0)
    split = {"teacher_forward_s": teacher, "forward_s": med["distiller_fwd"] - teacher,
             "backward_s": med["distiller_fwd_bwd"] - med["distiller_fwd"],
             "optimizer_s": med["full_step"] - med["distiller_fwd_bwd"], "full_step_s": med["full_step"],
             "full_step_cpu_s": statistics.median(cpu["full_step"])}
    for key in ("teacher_forward", "forward", "backward", "optimizer"):
        split[key + "_share"] = split[key + "_s"] / med["full_step"]
    return split


def torch_split(rounds):
    """Medians of PyTorch's per-phase wall / CPU seconds (``StepRunner.PHASES`` order) and their shares."""
    from benchmarks.timm_twin import StepRunner

    out = {}
    for i, phase in enumerate(StepRunner.PHASES):
        out[phase + "_s"] = statistics.median(r[2 * i] for r in rounds)
        out[phase + "_cpu_s"] = statistics.median(r[2 * i + 1] for r in rounds)
    totals = [sum(r[0::2]) for r in rounds]
    out["full_step_s"] = statistics.median(totals)
    out["full_step_cpu_s"] = statistics.median(sum(r[1::2]) for r in rounds)
    out["step_s"] = totals
    for phase in StepRunner.PHASES:
        out[phase + "_share"] = out[phase + "_s"] / out["full_step_s"]
    return out


def start_torch_step(args, family):
    """PyTorch + timm's KD step (the recipe of the student's ``family``) in its own process (``benchmarks.timm_twin``); ValueError when it cannot run."""
    import importlib.util

    from benchmarks.model_speed import TimmProcess
    from benchmarks.timm_twin import TIMM_MISSING, TWINS

    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("timm") is None:
        raise ValueError(f"--torch {TIMM_MISSING}")
    missing = [m for m in (args.teacher, args.student) if m not in TWINS]
    if missing:
        raise ValueError(f"--torch: no timm twin listed for {missing} (benchmarks/timm_twin.py)")
    cfg = bench_config(args, step_name(args), family=family)  # our step's recipe: optimizer, lr, weight decay
    if cfg.opt not in ("sgd", "adamw"):
        raise ValueError(f"--torch times SGD or AdamW steps, the recipe says opt={cfg.opt}")
    config = {"teacher": args.teacher, "student": args.student, "num_classes": args.num_classes,
              "image_size": args.image_size, "batch_size": args.batch_size, "opt": cfg.opt,
              "lr": float(cfg.lr), "weight_decay": float(cfg.weight_decay), "threads": 2, "seed": args.seed}
    return TimmProcess(None, config)


def profile_step_ops(args, step, batches):
    """MindSpore's per-op profile of ``--profile-calls`` full steps, by phase and kind of kernel."""
    from benchmarks.op_profile import profile_calls, summarise_step

    batch = columns(batches, step_name(args))[0]
    rows, wall_ms = profile_calls(lambda: _sync(step(*batch)), args.profile_calls)
    return summarise_step(rows, args.profile_calls, wall_ms)


def compare_distillers(args, step, batches):
    """The main step and one step per ``--compare`` distiller, timed round-robin for ``args.steps`` rounds.

    Returns per distiller the median wall / CPU seconds, and each one's ratio to the main distiller.
    """
    main = step_name(args)
    steps = {main: step}
    for name in args.compare:
        if name not in steps:
            steps[name] = build(args, name)[0]
            time_calls(steps[name], columns(batches, name), 1 + max(args.warmup - 1, 0))  # compile + warm up
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    for r in range(args.steps):
        for name, cell in steps.items():
            wall_s, cpu_s, _ = time_calls(cell, columns(batches[r % len(batches):], name), 1)
            wall[name].append(wall_s[0])
            cpu[name].append(cpu_s[0])
    out = {}
    main_wall, main_cpu = statistics.median(wall[main]), statistics.median(cpu[main])
    for name in steps:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        out[name] = {"step_s_median": w, "cpu_s_median": c, "images_per_s": args.batch_size / w,
                     "step_s": wall[name], f"{main}_over_this_wall": main_wall / w,
                     f"{main}_over_this_cpu": main_cpu / c}
    for name in steps:  # the teacher's share of an online step: what the cached step saves
        if not name.endswith(CACHED) and name + CACHED in steps:
            online, cached = out[name], out[name + CACHED]
            out[name]["teacher_share_wall"] = 1.0 - cached["step_s_median"] / online["step_s_median"]
            out[name]["teacher_share_cpu"] = 1.0 - cached["cpu_s_median"] / online["cpu_s_median"]
            out[name]["cached_speedup_wall"] = online["step_s_median"] / cached["step_s_median"]
    return out


# ------------------------------------------------------------------------------------------ data loader

def data_config(args):
    from src.config import load_config

    train_dir = os.path.join(args.data, "train")
    if not os.path.isdir(train_dir):
        raise ValueError(f"--data {args.data}: expected an image folder root with train/<class>/ images")
    classes = sorted(e.name for e in os.scandir(train_dir) if e.is_dir() and not e.name.startswith("."))
    if len(classes) > args.num_classes:
        raise ValueError(f"--data {args.data} has {len(classes)} classes, more than --num-classes {args.num_classes}")
    overrides = {"dataset": "imagefolder", "data_dir": args.data, "num_classes": len(classes),
                 "student": args.student, "teacher": args.teacher, "distiller": args.distiller,
                 "image_size": args.image_size, "batch_size": args.batch_size, "num_workers": args.workers,
                 "seed": args.seed}
    return load_config(None, overrides)


def time_loader(args, step, step_images_per_s):
    """Loader alone (decode + training transforms + batching), then the loader feeding the step."""
    from src.data import create_dataset

    cfg = data_config(args)
    dataset = create_dataset(cfg, "train")
    batches_per_epoch = dataset.get_dataset_size()
    n = min(args.data_batches, batches_per_epoch - 1)
    if n < 1:
        raise ValueError(f"--data {args.data}: needs at least 2 batches of {args.batch_size} train images")
    # loader alone: the first batch starts the workers, the next n are timed
    it = dataset.create_tuple_iterator(num_epochs=1)
    next(it)
    t0 = time.perf_counter()
    for _ in range(n):
        images, labels = next(it)
    loader_s = time.perf_counter() - t0
    shape = list(images.shape)
    # loader feeding the step: what train.py sees (both share the same CPU cores)
    it = create_dataset(cfg, "train").create_tuple_iterator(num_epochs=1)
    images, labels = next(it)
    _sync(step(images, labels))
    t0 = time.perf_counter()
    for _ in range(n):
        images, labels = next(it)
        _sync(step(images, labels))
    fed_s = time.perf_counter() - t0
    loader_ips = n * args.batch_size / loader_s
    fed_ips = n * args.batch_size / fed_s
    return {
        "path": os.path.abspath(args.data), "workers": args.workers, "batches": n, "batch_shape": shape,
        "loader_images_per_s": loader_ips, "fed_step_images_per_s": fed_ips,
        "random_data_step_images_per_s": step_images_per_s,
        # the loader is the bottleneck when it alone delivers fewer images/s than the step consumes
        "loader_is_bottleneck": loader_ips < step_images_per_s,
    }


# ------------------------------------------------------------------------------------------ main

def run_benchmark(args):
    if args.steps < 1 or args.warmup < 1:
        raise ValueError(f"--steps and --warmup must be >= 1 (the first warm-up step compiles), "
                         f"got steps={args.steps}, warmup={args.warmup}")
    if args.teacher_cache and args.distiller == "none":
        raise ValueError("--teacher-cache needs a distiller with a teacher (got --distiller none)")
    if args.torch and not args.profile:
        raise ValueError("--torch times PyTorch's step phase by phase beside --profile; add --profile")
    if args.profile_calls < 1:
        raise ValueError(f"--profile-calls must be >= 1, got {args.profile_calls}")
    if args.teacher_cache and args.data:
        raise ValueError("--data times the online loader; it cannot feed a step that takes cached teacher logits "
                         "(drop --teacher-cache)")
    ms.set_context(mode=ms.GRAPH_MODE if args.mode == "graph" else ms.PYNATIVE_MODE)
    load_start = os.getloadavg()
    t_build = time.perf_counter()
    step, distiller, student, teacher, opt = build(args)
    build_s = time.perf_counter() - t_build
    batches = random_batches(args)
    main_batches = columns(batches, step_name(args))

    first_s = time_calls(step, main_batches, 1)[0][0]  # compiles (graph) or builds the op cache (PyNative)
    compiles_after_first = graph_compiles(step)
    rest, rest_cpu, loss = time_calls(step, main_batches, args.warmup - 1 + args.steps)
    warm_s, timed, timed_cpu = rest[:args.warmup - 1], rest[args.warmup - 1:], rest_cpu[args.warmup - 1:]
    compiles_after_all = graph_compiles(step)

    median = statistics.median(timed)
    after_first = warm_s + timed
    outliers = outlier_steps(after_first, median)
    recompiled = (compiles_after_all != compiles_after_first) if compiles_after_first is not None else bool(outliers)
    result = {
        "images_per_s": args.batch_size / median,
        "step_s_median": median,
        "step_s": timed,
        "cpu_s_median": statistics.median(timed_cpu),
        "cpu_s": timed_cpu,
        "warmup_step_s": warm_s,
        "first_step_s": first_s,
        "compile_s": max(first_s - median, 0.0),
        "build_s": build_s,
        "peak_rss_mb": peak_rss_mb(),
        "final_loss": loss,
        "recompilation": {
            "recompiled_after_first_step": recompiled,
            "graphs_compiled_after_first_step": compiles_after_first,
            "graphs_compiled_after_all_steps": compiles_after_all,
            "outlier_steps_after_first": outliers,
            "method": ("MindSpore's per-cell compile cache (graphs compiled) and per-step time outliers"
                       if compiles_after_first is not None else "per-step time outliers (PyNative has no graph)"),
        },
        "params": {"student": count_params(student.get_parameters()),
                   "branches": count_params(distiller.branches.get_parameters()),
                   "teacher": count_params(teacher.get_parameters()) if teacher is not None else 0,
                   "trained": count_params(step.weights)},
        "config": {"teacher": args.teacher if args.distiller != "none" else None, "student": args.student,
                   "distiller": args.distiller, "teacher_cache": args.teacher_cache, "step": step_name(args),
                   "image_size": args.image_size, "batch_size": args.batch_size,
                   "num_classes": args.num_classes, "steps": args.steps, "warmup": args.warmup, "mode": args.mode,
                   "optimizer": opt, "stages": list(args.stages) if args.distiller == "ofa" else None,
                   "eps": args.eps if args.distiller == "ofa" else None, "clip_grad": args.clip_grad,
                   "ema": args.ema, "drop_path": args.drop_path, "seed": args.seed,
                   "recipe": recipe_path(args, student.family)},
        "machine": {"cpus": os.cpu_count(), "mindspore": ms.__version__,
                    "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
                    "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg())},
    }
    if args.profile:
        result["profile"] = profile_parts(args, step, distiller, student, batches)
        result["op_profile"] = profile_step_ops(args, step, batches)
    if args.compare:
        result["compare"] = compare_distillers(args, step, batches)
    if args.data:
        result["data"] = time_loader(args, step, result["images_per_s"])
    if args.profile or args.compare or args.data:
        # the extra phases call the step again (loader batches too): they must not compile a second graph
        rec = result["recompilation"]
        rec["graphs_compiled_at_exit"] = graph_compiles(step)
        if rec["graphs_compiled_at_exit"] is not None:
            rec["recompiled_after_first_step"] |= rec["graphs_compiled_at_exit"] != compiles_after_first
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def summary_lines(result):
    cfg = result["config"]
    rec = result["recompilation"]
    fed = " (teacher logits fed from a cache)" if cfg["teacher_cache"] else ""
    lines = [f"{cfg['teacher']} -> {cfg['student']} {cfg['distiller']}{fed} {cfg['mode']} "
             f"{cfg['image_size']}px batch {cfg['batch_size']} ({cfg['optimizer']}): "
             f"step {result['step_s_median']:.3f} s median, first step {result['first_step_s']:.1f} s "
             f"(compile ~{result['compile_s']:.1f} s), peak RSS {result['peak_rss_mb']:.0f} MB, "
             f"load {result['machine']['loadavg_start'][0]:.1f}",
             f"recompiled after first step: {rec['recompiled_after_first_step']} "
             f"(graphs {rec['graphs_compiled_after_first_step']} -> {rec['graphs_compiled_after_all_steps']}, "
             f"outlier steps {rec['outlier_steps_after_first']})"]
    if "profile" in result:
        prof = result["profile"]
        parts = ", ".join(f"{k} {v['median_s']:.3f}" for k, v in prof.items() if "median_s" in v)
        derived = ", ".join(f"{k} {v:.3f}" for k, v in prof["derived"].items())
        lines.append(f"profile (s): {parts}; derived: {derived}")
        for label, split, phases in (("ours", prof["split"], ("teacher_forward", "forward", "backward", "optimizer")),
                                     ("PyTorch KD step", prof.get("torch_split"),
                                      ("teacher_forward", "forward", "backward", "optimizer"))):
            if split:
                lines.append(f"split, {label}: full step {split['full_step_s']:.3f} s = " + ", ".join(
                    f"{p} {split[p + '_s']:.3f} ({100 * split[p + '_share']:.0f}%)" for p in phases))
    if "op_profile" in result:
        op = result["op_profile"]
        lines.append(f"per-op profile: {op['kernel_ms_per_call']:.0f} ms in kernels of {op['wall_ms_per_call']:.0f} ms; "
                     + ", ".join(f"{k} {v['ms']:.0f} ms" for k, v in op["phases"].items()))
        lines.append(f"ours (kernels outside MindSpore's named ones): {op['ours_ms']:.0f} ms = "
                     f"{100 * op['ours_share_of_kernel_time']:.1f}% of kernel time; "
                     + ", ".join(f"{k} {v:.1f}" for k, v in list(op["ours_by_op_type_ms"].items())[:8]))
    if "compare" in result:
        main = result["config"]["step"]
        lines.append("round-robin: " + ", ".join(
            f"{k} {v['step_s_median']:.3f} s (cpu {v['cpu_s_median']:.2f} s, {main}/{k} "
            f"{v[main + '_over_this_wall']:.2f}x wall, {v[main + '_over_this_cpu']:.2f}x cpu)"
            for k, v in result["compare"].items()))
        for k, v in result["compare"].items():
            if "teacher_share_wall" in v:
                lines.append(f"teacher share of the online {k} step: {100 * v['teacher_share_wall']:.0f}% wall "
                             f"({100 * v['teacher_share_cpu']:.0f}% cpu); cached step {v['cached_speedup_wall']:.2f}x "
                             f"faster")
    if "data" in result:
        d = result["data"]
        lines.append(f"data: loader alone {d['loader_images_per_s']:.1f} images/s, fed to the step "
                     f"{d['fed_step_images_per_s']:.1f} images/s "
                     f"(random data {d['random_data_step_images_per_s']:.1f}); "
                     f"loader is the bottleneck: {d['loader_is_bottleneck']}")
    return lines


def main(argv=None):
    return run_and_report(build_arg_parser().parse_args(argv), run_benchmark, summary_lines,
                          lambda result: f"images_per_s={result['images_per_s']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
