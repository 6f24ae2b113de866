"""Equivalence harness: does a run of ours train the same way as the reference stack, step by step?

Builds one pair twice: in PyTorch as the authors' code trains it (benchmarks/torch_twin.py: timm's models,
optimizer, schedulers, losses, clipping and EMA; OFA / KD / DIST / DKD / RSD from the method), and ours
through train.py's builders (src/engine/builders.py) from a recipe. The twin's initial weights move into
ours with the converter (src/convert: the student and teacher as converted checkpoints read through
``student_ckpt`` / ``teacher_ckpt``, the exit branches with ``convert.BRANCHES``). Both sides get the same
pre-transformed batches (seeded random images; with mixup / cutmix the mixing is drawn once per step by
timm's ``Mixup`` and the mixed images and soft targets go to both). Drop-path is turned off on both sides.
Per step: every loss term and the learning rate on both sides, and the worst per-tensor relative deviation
``||ours - theirs|| / ||theirs||`` of the trainable weights; at the end the same for weights, BatchNorm
statistics and EMA weights, and the first step where the two part by more than ``--tolerance``.

Ours runs in float32, the twin in float64: with ``--control`` (the default) the twin is trained a second
time in float32 from the same weights and batches, and its own deviation from the float64 run (the noise
floor of float32 training) is reported beside ours, per step and per tensor; a tensor passes when
``ours <= max(1e-3, FLOOR_K * torch32)``. Example::

    python -m benchmarks equivalence --teacher deit_tiny --student resnet18 --distiller ofa \\
        --recipe configs/recipes/imagenet_cnn.yaml --steps 20 --image-size 64 --batch-size 8 --json OUT.json

The last line printed is ``worst_weight_rel_diff=<float>``. Needs PyTorch and timm (test / benchmark only).
"""
import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  first: caps oneDNN at AVX2 before MindSpore loads

import numpy as np  # noqa: E402

from benchmarks.report import run_and_report  # noqa: E402
from src.flags import OneLineParser  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DISTILLERS = ("ofa", "kd", "dist", "dkd", "rsd", "none")
# The goals: first-step loss terms, every step's terms, final weights (relative, worst term / tensor)
FIRST_STEP_GOAL = 1e-5
STEP_GOAL = 1e-3
WEIGHT_GOAL = 1e-3
BN_STATS = ("moving_mean", "moving_variance")
# The noise-floor rule: a tensor (or a step's loss terms) of ours passes when within the goal of the float64
# reference, or no more than FLOOR_K times as far from it as PyTorch's own float32 run of the same step is
FLOOR_K = 4.0


def build_arg_parser():
    p = OneLineParser(prog="python -m benchmarks equivalence", description="Train one pair K steps in PyTorch/timm (the authors' stack) and in "
                                            "ours from the same weights and batches; report where they part.")
    p.add_argument("--teacher", default="deit_tiny", help="teacher model name (ours; timm's twin is used)")
    p.add_argument("--student", default="resnet18", help="student model name")
    p.add_argument("--distiller", default="ofa", choices=DISTILLERS)
    p.add_argument("--recipe", default=os.path.join(ROOT, "configs", "recipes", "imagenet_cnn.yaml"),
                   help="recipe YAML giving optimizer, schedule, losses, clipping, EMA, mixup")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="config keys on top of the recipe, e.g. epochs=10 warmup_epochs=2")
    p.add_argument("--steps", type=int, default=20, help="training steps on each side")
    p.add_argument("--steps-per-epoch", type=int, default=2,
                   help="steps that make an epoch for the schedule (the rate changes at epoch starts with "
                        "lr_per_epoch)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--tolerance", type=float, default=STEP_GOAL,
                   help="relative deviation of a loss term (or the trainable weights) at which the two part")
    p.add_argument("--twin-dtype", default="float64", choices=("float64", "float32"),
                   help="precision of the PyTorch twin: float64 (default) makes it an exact reference; in float32 "
                        "PyTorch's CPU BatchNorm backward loses about 1%% on inputs with a large mean (the OFA "
                        "branches on ReLU features), which is its rounding, not a training difference")
    p.add_argument("--control", action=argparse.BooleanOptionalAction, default=True,
                   help="also train the twin in float32 from the same weights and batches, and report its own "
                        "deviation from the float64 twin beside ours: the noise floor of float32 training "
                        "(default on; needs --twin-dtype float64)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="PyTorch intra-op threads")
    p.add_argument("--json", default=None, help="write the results here")
    return p


def rel_diff(ours, theirs):
    """``||ours - theirs|| / ||theirs||`` (the absolute norm of the difference when ``theirs`` is 0)."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    ref = float(np.linalg.norm(theirs))
    diff = float(np.linalg.norm(ours - theirs))
    return diff / ref if ref > 0 else diff


def run_config(args, workdir):
    """Our config: the recipe, the flags and ``--set`` on top; checkpoints of the converted twin in ``workdir``."""
    from src.config import load_config, parse_overrides

    overrides = {"dataset": "fake", "student": args.student, "teacher": args.teacher, "distiller": args.distiller,
                 "num_classes": args.num_classes, "image_size": args.image_size, "batch_size": args.batch_size,
                 "seed": args.seed, "mode": "graph", "device_target": "CPU", "amp_level": "O0",
                 "loss_scale_type": "none", "drop_path_rate": 0.0,
                 "student_ckpt": os.path.join(workdir, "student.ckpt"),
                 "teacher_ckpt": os.path.join(workdir, "teacher.ckpt") if args.distiller != "none" else None}
    overrides.update(parse_overrides(list(args.set)))
    if float(overrides["drop_path_rate"]) != 0.0:
        raise ValueError("drop_path_rate must stay 0: the harness cannot give both sides the same drop-path draws")
    if args.batch_size % 2:
        raise ValueError(f"--batch-size must be even (timm's Mixup pairs images), got {args.batch_size}")
    return load_config(args.recipe, overrides)


def make_batches(args, cfg, torch, timm):
    """``steps`` pre-transformed batches ``(images float32 NCHW, labels int64 [B] or soft float32 [B, C])``,
    mixed once here (timm's Mixup, seeded) when the recipe mixes."""
    rng = np.random.RandomState(args.seed + 1)
    mixer = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        from timm.data import Mixup

        mixer = Mixup(mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, prob=cfg.mixup_prob,
                      switch_prob=cfg.mixup_switch_prob, mode="batch", label_smoothing=cfg.label_smoothing,
                      num_classes=cfg.num_classes)
        np.random.seed(args.seed + 2)  # timm's Mixup draws its lambda and boxes from NumPy
    batches = []
    for _ in range(args.steps):
        x = rng.standard_normal((args.batch_size, 3, args.image_size, args.image_size)).astype(np.float32)
        y = rng.randint(0, cfg.num_classes, size=args.batch_size).astype(np.int64)
        if mixer is not None:
            xt, yt = mixer(torch.from_numpy(x), torch.from_numpy(y))
            x, y = xt.numpy().astype(np.float32), yt.numpy().astype(np.float32)
        batches.append((x, y))
    return batches


def convert_part(arch, state, expected, source, layout=None):
    """The twin's tensors ``state`` under our names (``expected``: our name -> shape), via the converter."""
    from src.convert import map_state_dict

    return map_state_dict(arch, state, expected, source=source, layout=layout).params


def student_info(student):
    info = {"stage_kind": student.stage_kind, "feature_dim": int(student.feature_dim),
            "num_prefix_tokens": int(getattr(student, "num_prefix_tokens", 0)),
            "stage_shapes": [tuple(s) for s in student.stage_shapes(student.image_size)]}
    if hasattr(student, "stage_blocks"):
        info["stage_blocks"] = tuple(student.stage_blocks)
    return info


def ours_by_name(cell, prefix):
    """``{name without prefix: ndarray}`` of a cell's parameters."""
    return {p.name[len(prefix):] if p.name.startswith(prefix) else p.name: p.asnumpy()
            for p in cell.get_parameters()}


def by_kind(named):
    """``{(kind, name): value}``: kind ``bn_stat`` for BatchNorm running statistics, else ``weight``."""
    return {("bn_stat" if name.rsplit(".", 1)[-1] in BN_STATS else "weight", name): value
            for name, value in named.items()}


class Comparison:
    """Maps a twin's state onto our names and measures the deviations tensor by tensor, by kind."""

    def __init__(self, cfg, ours):
        from src.convert import BRANCHES

        self.cfg, self.ours = cfg, ours
        self.branches_layout = BRANCHES
        self.student_shapes = {k: v.shape for k, v in ours_by_name(ours.student, "student.").items()}
        self.branch_shapes = {p.name: tuple(p.shape) for p in ours.branches.get_parameters()}

    def theirs(self, module, arch, shapes, prefix="", layout=None):
        from benchmarks.torch_twin import state_numpy

        state = {prefix + k: v for k, v in state_numpy(module).items()}
        return convert_part(arch, state, shapes, f"the PyTorch twin's {arch}", layout)

    def twin_state(self, twin, ema=None):
        """``{(kind, our name): ndarray}`` of a twin (kind weight / bn_stat / ema), under our names."""
        theirs = self.theirs(twin.student, self.cfg.student, self.student_shapes)
        if len(self.branch_shapes):
            theirs.update(self.theirs(twin.branches, "branches", self.branch_shapes, "branches.",
                                      self.branches_layout))
        out = by_kind(theirs)
        if ema is not None:
            out.update({("ema", name): value
                        for name, value in self.theirs(ema.module, self.cfg.student, self.student_shapes).items()})
        return out

    def ours_state(self, step=None):
        """``{(kind, our name): ndarray}`` of ours; the EMA weights too when ``step`` (the fused step) is given."""
        ours = ours_by_name(self.ours.student, "student.")
        ours.update({p.name: p.asnumpy() for p in self.ours.branches.get_parameters()})
        out = by_kind(ours)
        if step is not None:
            out.update({("ema", p.name[len("ema.student."):]): p.asnumpy() for p in step.ema_weights})
        return out


def deviations(state, reference):
    """``{(kind, name): ||state - reference|| / ||reference||}`` over the reference's tensors."""
    return {key: rel_diff(state[key], value) for key, value in reference.items()}


def worst_of(devs, state, reference):
    """``{kind: (worst relative deviation, tensor)}``, and under ``"global"`` the deviation of all trainable
    weights as one vector (a tensor that started at 0 and moved little, e.g. a BatchNorm shift, has a
    relative deviation of float32 rounding on a small norm; the global figure is not swayed by it)."""
    result, diff2, ref2 = {}, 0.0, 0.0
    for (kind, name), d in devs.items():
        if kind not in result or d > result[kind][0]:
            result[kind] = (d, name)
        if kind == "weight":
            b = np.asarray(reference[(kind, name)], np.float64)
            diff2 += float(np.sum((np.asarray(state[(kind, name)], np.float64) - b) ** 2))
            ref2 += float(np.sum(b ** 2))
    result["global"] = (float(np.sqrt(diff2 / ref2)) if ref2 > 0 else float(np.sqrt(diff2)), "all weights")
    return result


def floor_verdict(ours_dev, floor_dev, goal=WEIGHT_GOAL, k=FLOOR_K):
    """The per-tensor verdict against the float32 noise floor.

    ``ours_dev`` / ``floor_dev``: ``{tensor: relative deviation from the float64 reference}`` of ours and of
    PyTorch's float32 run. A tensor passes when ``ours <= max(goal, k * floor)``. Returns ``{"failing": [names
    failing it], "beyond_goal": [names over the goal alone], "worst_ratio": (ours / floor, name) over the
    tensors beyond the goal (None when none is), "worst_ratio_all": the same over every tensor whose floor is
    not 0}``."""
    failing, beyond, ratios = [], [], []
    for name, d in ours_dev.items():
        f = float(floor_dev[name])
        if d > max(goal, k * f):
            failing.append(name)
        if d > goal:
            beyond.append(name)
        if f > 0:
            ratios.append((d / f, name, d > goal))
    worst = max(((r, n) for r, n, b in ratios if b), default=None)
    worst_all = max(((r, n) for r, n, _ in ratios), default=None)
    for name in beyond:  # beyond the goal with a zero floor: no ratio is finite, the rule above decided
        if float(floor_dev[name]) == 0:
            worst = (float("inf"), name)
    return {"failing": sorted(failing), "beyond_goal": sorted(beyond), "worst_ratio": worst,
            "worst_ratio_all": worst_all}


def build_ours(cfg):
    """Our run built as train.py builds it: context, student (from ``student_ckpt``), teacher (from
    ``teacher_ckpt``), distiller and precision; ``(distiller, student)``. The fused step comes after the
    branches are loaded (``build_train_step``)."""
    from src.engine.builders import (apply_amp, build_run_distiller, build_student, load_student_checkpoint,
                                     setup_context)
    from src.teacher import build_teacher_source

    setup_context(cfg, distributed=False)
    student = build_student(cfg)
    load_student_checkpoint(cfg, student)
    teacher = build_teacher_source(cfg) if cfg.distiller != "none" else None
    distiller = build_run_distiller(cfg, student, teacher)
    apply_amp(cfg, distiller)
    return distiller, student


def run(args):
    try:
        import torch
        from benchmarks.timm_twin import create_twin, import_timm

        timm = import_timm()
    except ImportError:
        from benchmarks.timm_twin import TIMM_MISSING
        raise ValueError(f"the equivalence harness {TIMM_MISSING}") from None
    import mindspore as ms

    from benchmarks.torch_twin import TwinTrainer, build_twin_distiller, state_numpy
    from src.convert import BRANCHES, convert_state_dict
    from src.engine.builders import build_train_step
    from src.checkpoint import save_atomic
    from src.models import create_model

    for name, value in (("--steps", args.steps), ("--steps-per-epoch", args.steps_per_epoch)):
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if args.control and args.twin_dtype != "float64":
        raise ValueError("--control measures the float32 twin against the float64 one: it needs --twin-dtype "
                         "float64 (or pass --no-control)")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="equivalence_") as workdir:
        cfg = run_config(args, workdir)
        if cfg.epochs * args.steps_per_epoch < args.steps:
            cfg.epochs = -(-args.steps // args.steps_per_epoch)  # the schedule must cover every step
        # the twin: seeded, with our student's stage layout for the branches
        probe = create_model(cfg.student, num_classes=cfg.num_classes, image_size=cfg.image_size)
        torch.manual_seed(args.seed)
        twin = build_twin_distiller(torch, timm, create_twin, cfg, student_info(probe))
        control = None
        if args.control:  # the same twin again, kept in float32: PyTorch's own rounding against the exact run
            control = build_twin_distiller(torch, timm, create_twin, cfg, student_info(probe))
            control.load_state_dict(twin.state_dict())
        # its initial weights into ours: student and teacher as converted checkpoints, read by the builders
        for role, module, arch in (("student", twin.student, cfg.student), ("teacher", twin.teacher, cfg.teacher)):
            if module is None:
                continue
            model, _ = convert_state_dict(arch, state_numpy(module), num_classes=cfg.num_classes,
                                          image_size=cfg.image_size, source=f"the PyTorch twin's {role}")
            save_atomic(model, os.path.join(workdir, f"{role}.ckpt"))
        distiller, _ = build_ours(cfg)
        if len(distiller.branches) != len(twin.branches):
            raise ValueError(f"{cfg.distiller}: ours has {len(distiller.branches)} branches, the twin "
                             f"{len(twin.branches)}")
        if len(distiller.branches):
            from src.convert import load_converted

            shapes = {p.name: tuple(p.shape) for p in distiller.branches.get_parameters()}
            state = {"branches." + k: v for k, v in state_numpy(twin.branches).items()}
            load_converted(distiller.branches, convert_part("branches", state, shapes, "the twin's branches",
                                                            BRANCHES), "the twin's branches", "branches")
        dtype = torch.float64 if args.twin_dtype == "float64" else torch.float32
        twin.to(dtype)
        step, lrs = build_train_step(cfg, distiller, args.steps_per_epoch)
        step.set_train(True)
        trainer = TwinTrainer(torch, timm, twin, cfg, args.steps_per_epoch)
        control_trainer = TwinTrainer(torch, timm, control, cfg, args.steps_per_epoch) if control else None
        compare = Comparison(cfg, distiller)
        reference = compare.twin_state(twin)
        start = worst_of(deviations(compare.ours_state(), reference), compare.ours_state(), reference)
        batches = make_batches(args, cfg, torch, timm)

        names = tuple(distiller.term_names)
        rows = []
        for i, (x, y) in enumerate(batches):
            labels = ms.Tensor(y.astype(np.int32) if y.ndim == 1 else y)
            loss, terms, _, _ = step(ms.Tensor(x), labels)
            ours_terms = dict(zip(names, (float(v) for v in terms.asnumpy())))
            y_theirs = torch.from_numpy(y) if y.ndim == 1 else torch.from_numpy(y).to(dtype)
            theirs_terms, lr_theirs = trainer.step(torch.from_numpy(x).to(dtype), y_theirs)
            ours_terms["total"] = float(loss.asnumpy())
            theirs_terms["total"] = float(sum(theirs_terms.values()))
            diffs = {k: rel_diff(ours_terms[k], theirs_terms[k]) for k in ours_terms}
            reference, ours_now = compare.twin_state(twin), compare.ours_state()
            now = worst_of(deviations(ours_now, reference), ours_now, reference)
            weight = now["weight"]
            row = {"step": i + 1, "epoch": i // args.steps_per_epoch + 1,
                   "lr_ours": lrs[i], "lr_theirs": lr_theirs, "lr_rel_diff": rel_diff(lrs[i], lr_theirs),
                   "terms_ours": ours_terms, "terms_theirs": theirs_terms, "terms_rel_diff": diffs,
                   "loss_rel_diff": max(diffs.values()), "weight_rel_diff": weight[0],
                   "weight_worst_tensor": weight[1], "global_weight_rel_diff": now["global"][0]}
            if control is not None:
                y32 = torch.from_numpy(y) if y.ndim == 1 else torch.from_numpy(y).float()
                control_terms, _ = control_trainer.step(torch.from_numpy(x), y32)
                control_terms["total"] = float(sum(control_terms.values()))
                control_diffs = {k: rel_diff(control_terms[k], theirs_terms[k]) for k in control_terms}
                control_now = compare.twin_state(control)
                floor = worst_of(deviations(control_now, reference), control_now, reference)
                ours_vs_control = worst_of(deviations(ours_now, control_now), ours_now, control_now)
                row.update({
                    "terms_control": control_terms, "control_terms_rel_diff": control_diffs,
                    "control_loss_rel_diff": max(control_diffs.values()),
                    "control_weight_rel_diff": floor["weight"][0], "control_weight_worst_tensor": floor["weight"][1],
                    "control_global_weight_rel_diff": floor["global"][0],
                    "ours_vs_control_loss_rel_diff": max(rel_diff(ours_terms[k], control_terms[k])
                                                         for k in ours_terms),
                    "ours_vs_control_global_weight_rel_diff": ours_vs_control["global"][0]})
            rows.append(row)
        ema_step = step if cfg.ema else None
        reference = compare.twin_state(twin, trainer.ema if cfg.ema else None)
        ours_final = compare.ours_state(ema_step)
        ours_dev = deviations(ours_final, reference)
        final = worst_of(ours_dev, ours_final, reference)
        floor = None
        if control is not None:
            control_final = compare.twin_state(control, control_trainer.ema if cfg.ema else None)
            floor = {"devs": deviations(control_final, reference),
                     "vs_control": deviations(ours_final, control_final)}
            floor["worst"] = worst_of(floor["devs"], control_final, reference)
    return summarise(args, cfg, rows, start, final, ours_dev, floor)


def finite(value):
    """JSON has no infinity: ``None`` for it."""
    return float(value) if value is not None and np.isfinite(value) else None


def control_summary(rows, final, ours_dev, floor, tol):
    """The noise-floor figures: PyTorch's float32 run against its float64 run, and the verdicts under the
    rule ``ours <= max(goal, FLOOR_K * floor)`` per tensor and per step."""
    parting = next((r["step"] for r in rows if r["control_loss_rel_diff"] > tol
                    or r["control_global_weight_rel_diff"] > tol), None)
    worst = floor["worst"]
    flat = {f"{kind}:{name}": d for (kind, name), d in ours_dev.items()}
    flat_floor = {f"{kind}:{name}": d for (kind, name), d in floor["devs"].items()}
    verdict = floor_verdict(flat, flat_floor)
    steps_failing = [r["step"] for r in rows if r["loss_rel_diff"] > max(tol, FLOOR_K * r["control_loss_rel_diff"])]
    loss_ratio = max((r["loss_rel_diff"] / r["control_loss_rel_diff"], r["step"]) for r in rows
                     if r["control_loss_rel_diff"] > 0) if any(r["control_loss_rel_diff"] > 0 for r in rows) else None
    tensors = [{"tensor": key, "ours": flat[key], "torch32": flat_floor[key],
                "ours_vs_torch32": floor["vs_control"][tuple(key.split(":", 1))]}
               for key in sorted(flat, key=lambda k: -flat[k])]
    return {
        "control_first_parting_step": parting,
        "control_first_step_loss_rel_diff": rows[0]["control_loss_rel_diff"],
        "control_worst_loss_rel_diff": max(r["control_loss_rel_diff"] for r in rows),
        "control_worst_weight_rel_diff": worst["weight"][0], "control_worst_weight_tensor": worst["weight"][1],
        "control_global_weight_rel_diff": worst["global"][0],
        "control_worst_bn_stat_rel_diff": worst["bn_stat"][0] if "bn_stat" in worst else None,
        "control_worst_ema_rel_diff": worst["ema"][0] if "ema" in worst else None,
        "ours_vs_control_global_weight_rel_diff": rows[-1]["ours_vs_control_global_weight_rel_diff"],
        "floor_rule": f"ours <= max({WEIGHT_GOAL:g}, {FLOOR_K:g} x torch32), per tensor; per step the loss terms "
                      f"with max({tol:g}, {FLOOR_K:g} x torch32)",
        "floor_k": FLOOR_K,
        "tensors": len(flat), "tensors_beyond_goal": verdict["beyond_goal"],
        "tensors_failing_floor_rule": verdict["failing"],
        "worst_floor_ratio": finite(verdict["worst_ratio"][0]) if verdict["worst_ratio"] else None,
        "worst_floor_ratio_tensor": verdict["worst_ratio"][1] if verdict["worst_ratio"] else None,
        "worst_floor_ratio_all": finite(verdict["worst_ratio_all"][0]) if verdict["worst_ratio_all"] else None,
        "worst_floor_ratio_all_tensor": verdict["worst_ratio_all"][1] if verdict["worst_ratio_all"] else None,
        "steps_failing_floor_rule": steps_failing,
        "worst_loss_floor_ratio": finite(loss_ratio[0]) if loss_ratio else None,
        "worst_loss_floor_ratio_step": loss_ratio[1] if loss_ratio else None,
        "per_tensor": tensors,
    }


def summarise(args, cfg, rows, start, final, ours_dev=None, floor=None):
    import mindspore
    import timm
    import torch

    tol = args.tolerance
    # the two part where what training shows (a loss term, the rate, the weights as a whole) differs
    parting = next((r["step"] for r in rows if r["loss_rel_diff"] > tol or r["global_weight_rel_diff"] > tol
                    or r["lr_rel_diff"] > tol), None)
    worst_loss = max(r["loss_rel_diff"] for r in rows)
    result = {
        "teacher": cfg.teacher if cfg.distiller != "none" else None, "student": cfg.student,
        "distiller": cfg.distiller, "recipe": os.path.relpath(os.path.abspath(args.recipe), ROOT),
        "set": list(args.set), "steps": args.steps, "steps_per_epoch": args.steps_per_epoch,
        "image_size": args.image_size, "batch_size": args.batch_size, "num_classes": args.num_classes,
        "seed": args.seed, "tolerance": tol, "twin_dtype": args.twin_dtype, "ours_dtype": "float32",
        "optimizer": cfg.opt, "nesterov": cfg.nesterov if cfg.opt == "sgd" else None,
        "scheduler": cfg.scheduler, "lr_per_epoch": cfg.lr_per_epoch, "clip_grad": cfg.clip_grad,
        "ema": cfg.ema, "ema_decay": cfg.ema_decay if cfg.ema else None, "label_smoothing": cfg.label_smoothing,
        "mixup": cfg.mixup, "cutmix": cfg.cutmix,
        "randomness": ("drop-path off on both sides (drop_path_rate 0); no dropout in these models"
                       + ("; mixup/cutmix drawn once per step by timm's Mixup, the mixed images and soft targets fed "
                          "to both" if cfg.mixup > 0 or cfg.cutmix > 0 else "; no mixing")),
        "initial_weight_rel_diff": start["weight"][0],
        "first_step_loss_rel_diff": rows[0]["loss_rel_diff"],
        "worst_loss_rel_diff": worst_loss,
        "worst_loss_step": max(rows, key=lambda r: r["loss_rel_diff"])["step"],
        "worst_lr_rel_diff": max(r["lr_rel_diff"] for r in rows),
        "worst_weight_rel_diff": final["weight"][0], "worst_weight_tensor": final["weight"][1],
        "global_weight_rel_diff": final["global"][0],
        "worst_bn_stat_rel_diff": final["bn_stat"][0] if "bn_stat" in final else None,
        "worst_bn_stat_tensor": final["bn_stat"][1] if "bn_stat" in final else None,
        "worst_ema_rel_diff": final["ema"][0] if "ema" in final else None,
        "worst_ema_tensor": final["ema"][1] if "ema" in final else None,
        "first_parting_step": parting,
        "goals": {"first_step_loss_within_1e-5": rows[0]["loss_rel_diff"] <= FIRST_STEP_GOAL,
                  "every_step_loss_within_1e-3": worst_loss <= STEP_GOAL,
                  "final_weights_within_1e-3": max(v[0] for k, v in final.items() if k != "global") <= WEIGHT_GOAL},
        "versions": {"mindspore": mindspore.__version__, "torch": torch.__version__, "timm": timm.__version__},
        "control": floor is not None,
        "per_step": rows,
    }
    if floor is not None:
        control = control_summary(rows, final, ours_dev, floor, tol)
        result["goals"]["final_weights_within_1e-3_or_torch32_floor"] = not control["tensors_failing_floor_rule"]
        result["goals"]["every_step_loss_within_1e-3_or_torch32_floor"] = not control["steps_failing_floor_rule"]
        per_tensor = control.pop("per_tensor")
        result.update(control)
        result["per_tensor"] = per_tensor
    return result


def summary_lines(result):
    names = list(result["per_step"][0]["terms_ours"])
    yield (f"{result['student']} <- {result['teacher']} ({result['distiller']}), {result['recipe']}, "
           f"{result['steps']} steps at {result['image_size']} px, batch {result['batch_size']}; "
           f"{result['randomness']}")
    yield "step  lr ours / theirs        " + "  ".join(f"{n} ours / theirs" for n in names) + "  worst weight"
    for r in result["per_step"]:
        terms = "  ".join(f"{r['terms_ours'][n]:.6f} / {r['terms_theirs'][n]:.6f}" for n in names)
        control = (f"; torch32 {r['control_loss_rel_diff']:.1e} loss, {r['control_weight_rel_diff']:.1e} "
                   f"({r['control_global_weight_rel_diff']:.1e} all)" if "control_loss_rel_diff" in r else "")
        yield (f"{r['step']:4d}  {r['lr_ours']:.4e} / {r['lr_theirs']:.4e}  {terms}  {r['weight_rel_diff']:.2e} "
               f"({r['global_weight_rel_diff']:.1e} all){control}")
    yield (f"first step loss rel diff {result['first_step_loss_rel_diff']:.2e}; worst loss rel diff "
           f"{result['worst_loss_rel_diff']:.2e} (step {result['worst_loss_step']}); worst lr rel diff "
           f"{result['worst_lr_rel_diff']:.2e}")
    yield (f"final: weights {result['worst_weight_rel_diff']:.2e} worst tensor ({result['worst_weight_tensor']}), "
           f"{result['global_weight_rel_diff']:.2e} all weights together")
    if result["worst_bn_stat_rel_diff"] is not None:
        yield f"final: BN statistics {result['worst_bn_stat_rel_diff']:.2e} ({result['worst_bn_stat_tensor']})"
    if result["worst_ema_rel_diff"] is not None:
        yield f"final: EMA weights {result['worst_ema_rel_diff']:.2e} ({result['worst_ema_tensor']})"
    if result.get("control"):
        yield (f"control (PyTorch float32 against float64): loss terms {result['control_first_step_loss_rel_diff']:.2e} "
               f"at step 1, worst {result['control_worst_loss_rel_diff']:.2e}; weights "
               f"{result['control_worst_weight_rel_diff']:.2e} worst tensor ({result['control_worst_weight_tensor']}), "
               f"{result['control_global_weight_rel_diff']:.2e} all; parting step "
               f"{result['control_first_parting_step'] or 'never'}")
        yield (f"floor rule ({result['floor_rule']}): tensors failing {len(result['tensors_failing_floor_rule'])} of "
               f"{result['tensors']} ({len(result['tensors_beyond_goal'])} beyond {WEIGHT_GOAL:g} alone); worst "
               f"ours/torch32 beyond the goal {result['worst_floor_ratio']} ({result['worst_floor_ratio_tensor']}); "
               f"steps failing {result['steps_failing_floor_rule']}")
    parting = result["first_parting_step"]
    yield (f"first parting step (> {result['tolerance']:g}): {parting if parting is not None else 'never'}; goals: "
           + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in result["goals"].items()))


def main(argv=None):
    args = build_arg_parser().parse_args(argv)
    return run_and_report(args, run, summary_lines,
                          lambda r: f"worst_weight_rel_diff={r['worst_weight_rel_diff']:.3e}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
