"""Fashion-MNIST study: does OFA-KD beat KD and training alone on heterogeneous teacher -> student pairs?

    python -m tools.study --out results/fashion_mnist                      # the full study
    python -m tools.study --out /tmp/s --quick --data-dir DIR --pairs cnn2vit,cnn2mlp --methods none,ofa
    python -m tools.study --out results/fashion_mnist --report-only        # re-draw from the cached runs

1. Two teachers (a CNN and a ViT; the ViT for ``--vit-teacher-epochs``, so that it is stronger than the
   ResNet student alone) train alone on the full training split (60k images). Each run is cached under
   ``--work-dir``: a teacher whose checkpoint and record exist for the same config is reused.
2. A fixed, class-balanced subset of the training split (``--subset`` images, ``--subset-seed``) is
   written once as IDX files next to a link to the full test split; every student trains on it.
3. Each teacher runs once over one augmentation view per image and epoch of that subset
   (tools/cache_teacher.py, with its pooled feature when RSD is studied); the distilled runs read this
   teacher-output cache and build no teacher (``--no-teacher-cache``: the teacher runs in every step).
4. For every pair and seed the student trains alone (``none``), with KD, OFA-KD, RSD and OFA+RSD for the
   same budget, evaluated on the full test split after every epoch. Runs are cached the same way, so an
   interrupted study continues where it stopped.
5. ``--out`` gets results.json, results.md (mean ± sample std and the 95 % t interval of the
   final-epoch top-1; every method against KD and the student alone as a difference with its 95 % Welch
   interval, "within noise" where it holds 0; the training-only parameters of each method, the teachers,
   the command) and curves.png (test top-1 against epoch, one panel per pair). results.json also records
   the command, the commit, the cores and the load average at the start and the end (``provenance``).

Every run is one ``train.py`` child process (GRAPH_MODE), one after another; its command, log and
checkpoints stay in its folder under ``--work-dir``.
"""
import src  # noqa: F401  (sets ONEDNN_MAX_CPU_ISA before MindSpore runs an op)

import argparse
import contextlib
import json
import os
import re
import shlex
import subprocess
import sys
import time

import numpy as np

from src.flags import float_range, int_range
from src.files import write_bytes_atomic, write_json_atomic
from src.logs import count
from src.provenance import finish, provenance
from src.stats import mean_interval, verdict, welch_difference
from src.stats import mean_std as stats_mean_std

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEACHER_RECIPE = os.path.join(ROOT, "configs", "fashion_mnist", "study_teacher.yaml")
STUDENT_RECIPE = os.path.join(ROOT, "configs", "fashion_mnist", "study_student.yaml")
RECORD = "study_run.json"
# in a run's folder while a process trains it (its process id)
RUN_LOCK = "study_run.lock"
# train.py's end-of-epoch log line, echoed to the study's own log
EPOCH_LINE = re.compile(r"epoch \d+ done in .*")
# config keys that change nothing about what a run learns: a cached run with other values is still valid
IGNORED_KEYS = ("log_interval", "output_dir", "num_workers", "data_dir")

# pair key -> (teacher role, student role); roles are resolved to model names by the command line
PAIRS = {
    "cnn2vit": ("cnn", "vit"),
    "cnn2mlp": ("cnn", "mlp"),
    "vit2cnn": ("vit", "cnn"),
}
METHODS = ("none", "kd", "ofa", "rsd", "ofa+rsd")
METHOD_TITLES = {"none": "scratch", "kd": "KD", "ofa": "OFA", "rsd": "RSD", "ofa+rsd": "OFA+RSD"}
# methods whose distiller reads the teacher's pooled feature: their teacher cache is made with --features
FEATURE_METHODS = ("rsd", "ofa+rsd")
# OFA variants for the ablation: overrides applied on top of the main OFA settings
ABLATIONS = {
    "ofa_eps1.5": {"eps": [1.5]},
    "ofa_w0.1": {"w_ofa": 0.1},
    "ofa_eps1.5_w0.1": {"eps": [1.5], "w_ofa": 0.1},
    "ofa_stage4": {"stages": [4]},
    "ofa_stages34": {"stages": [3, 4]},
    "ofa_no_branch": {"w_ofa": 0.0},
}
# RSD at other weights of its term (the method's default is 0.1): variants of ``rsd`` for the ablation
RSD_WEIGHTS = {f"rsd_w{w:g}": w for w in (0.1, 0.03, 0.01, 0.003, 0.001)}
VARIANTS = {**ABLATIONS, **{name: {"rsd_weight": w} for name, w in RSD_WEIGHTS.items()}}


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tools.study", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for results.json, results.md and curves.png")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist",
                   help="Fashion-MNIST IDX files (Debian package dataset-fashion-mnist)")
    p.add_argument("--work-dir", default="outputs/fashion_mnist_study",
                   help="checkpoints, per-run records and the subset data (git-ignored)")
    p.add_argument("--seeds", type=int_range(1), default=3, help="student seeds per pair and method")
    p.add_argument("--only-seeds", type=int_range(1), nargs="+", default=None,
                   help="train only these of the seeds 1..--seeds (split a study over processes sharing --work-dir; "
                        "give each its own --out, then rebuild the whole report with --report-only)")
    p.add_argument("--epochs", type=int_range(1), default=None, help="student epochs (default: the student recipe's)")
    p.add_argument("--teacher-epochs", type=int_range(1), default=None, help="teacher epochs (default: the teacher recipe's)")
    p.add_argument("--vit-teacher-epochs", type=int_range(1), default=5,
                   help="epochs of the ViT teacher (a 2-epoch ViT is weaker than a ResNet student trained alone)")
    p.add_argument("--subset", type=int_range(1), default=10000, help="class-balanced student training subset size")
    p.add_argument("--subset-seed", type=int_range(0), default=0, help="seed of the subset draw (fixed for every run)")
    p.add_argument("--teacher-subset", type=int_range(0), default=0, help="teacher training images (0 = the full split)")
    p.add_argument("--val-subset", type=int_range(0), default=0, help="test images to evaluate on (0 = the full 10k split)")
    p.add_argument("--image-size", type=int_range(1), default=None, help="input size (default: the recipes')")
    p.add_argument("--batch-size", type=int_range(1), default=None, help="batch size (default: the recipes')")
    p.add_argument("--pairs", default=",".join(PAIRS), help=f"comma list from {','.join(PAIRS)}")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list from {','.join(METHODS)}")
    p.add_argument("--cnn-teacher", default="resnet10")
    p.add_argument("--vit-teacher", default="vit_p4_pico")
    p.add_argument("--cnn-student", default="resnet10")
    p.add_argument("--vit-student", default="vit_p4_pico")
    p.add_argument("--mlp-student", default="resmlp_p4_pico")
    p.add_argument("--eps", type=float_range(0, low_open=True), nargs="+", default=[1.0], help="OFA eps (one value or one per stage + 1)")
    p.add_argument("--w-ofa", type=float_range(0), default=1.0, help="weight of the OFA branch terms")
    p.add_argument("--stages", type=int_range(1, 4), nargs="+", default=[1, 2, 3, 4], help="student stages with OFA branches")
    p.add_argument("--ablation", default="",
                   help=f"comma list of OFA and RSD variants from {','.join(VARIANTS)}")
    p.add_argument("--ablation-pair", default="cnn2vit", help="the pair the ablation runs on")
    p.add_argument("--ablation-seeds", type=int_range(1), default=None, help="seeds per ablation variant (default --seeds)")
    p.add_argument("--no-teacher-cache", action="store_true",
                   help="run the teacher in every distilled step instead of once into a teacher-output cache")
    p.add_argument("--time-limit", type=float_range(0), default=0.0,
                   help="minutes after which no new run starts; the report says what is missing (0 = none)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 seed, 1 epoch, batch 32, small subsets (for tests and dry runs)")
    p.add_argument("--report-only", action="store_true", help="train nothing: rebuild the report from cached runs")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = 1
        args.epochs = args.epochs or 1
        args.teacher_epochs = args.teacher_epochs or 1
        args.vit_teacher_epochs = 1
        args.batch_size = args.batch_size or 32
        args.subset = min(args.subset, 256)
        args.teacher_subset = args.teacher_subset or 512
        args.val_subset = args.val_subset or 256
    args.pairs = _names(args.pairs, PAIRS, "--pairs")
    args.methods = _names(args.methods, METHODS, "--methods")
    args.ablation = _names(args.ablation, VARIANTS, "--ablation") if args.ablation else []
    if args.ablation_pair not in PAIRS:
        p.error(f"--ablation-pair must be one of {'|'.join(PAIRS)}, got {args.ablation_pair!r}")
    for name in ("seeds", "subset"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.only_seeds and not all(1 <= s <= args.seeds for s in args.only_seeds):
        p.error(f"--only-seeds must be within 1..{args.seeds} (--seeds), got {args.only_seeds}")
    return args


def _names(text, allowed, flag):
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise SystemExit(f"error: {flag} takes a comma list from {','.join(allowed)}, got {text!r}")
    return names


def log(message):
    print(f"{time.strftime('%H:%M:%S')} {message}", flush=True)


# ----------------------------------------------------------------------------- data

def write_idx(path, array):
    """Write a uint8 array as an (uncompressed) IDX file: magic 0x0000 08 ndim, then the dims, then the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    write_bytes_atomic(path, [header, array.tobytes()])


def make_subset_dir(data_dir, folder, count, seed):
    """A Fashion-MNIST folder whose train split is a fixed class-balanced subset; the test split is linked.

    Returns ``(folder, class counts of the subset)``. Rewritten only when the subset differs.
    """
    from src.data.idx import SPLIT_FILES, find_idx_file, read_mnist
    from src.data.source import balanced_subset

    images, labels = read_mnist(data_dir, "train")
    picked = balanced_subset(labels, count, seed)
    os.makedirs(folder, exist_ok=True)
    image_name, label_name = SPLIT_FILES["train"]
    meta_path = os.path.join(folder, "subset.json")
    meta = {"source": os.path.abspath(data_dir), "count": int(len(picked)), "seed": int(seed),
            "indices_sum": int(picked.sum())}
    current = _read_json(meta_path)
    if current != meta or not all(os.path.isfile(os.path.join(folder, n)) for n in (image_name, label_name)):
        write_idx(os.path.join(folder, image_name), images[picked])
        write_idx(os.path.join(folder, label_name), labels[picked])
        _write_json(meta_path, meta)
    for stem in SPLIT_FILES["val"]:
        source = find_idx_file(data_dir, stem)
        link = os.path.join(folder, os.path.basename(source))
        if not os.path.exists(link):
            os.symlink(os.path.abspath(source), link)
    return folder, np.bincount(labels[picked], minlength=10).tolist()


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_json(path, data):
    write_json_atomic(path, data)


# ----------------------------------------------------------------------------- runs

def _comparable(config):
    return {k: v for k, v in config.items() if k not in IGNORED_KEYS}


def cached_record(out_dir, cfg, checkpoint="last.ckpt"):
    """The record of a finished run with the same config (and its checkpoint), else None."""
    record = _read_json(os.path.join(out_dir, RECORD))
    if not record or not os.path.isfile(os.path.join(out_dir, checkpoint)):
        return None
    if _comparable(record.get("config", {})) != _comparable(json.loads(json.dumps(cfg.to_dict()))):
        return None
    return record


def _override_args(overrides):
    """``{key: value}`` -> train.py's ``key=value`` arguments (values written as YAML)."""
    out = []
    for key, value in overrides.items():
        if value is None:
            text = "null"
        elif isinstance(value, (list, tuple)):
            text = "[" + ",".join(str(v) for v in value) + "]"
        else:
            text = str(value)
        out.append(f"{key}={text}")
    return out


def count_params(cfg):
    """(student, branch) parameter counts of a run, from freshly built cells (no compile, no checkpoint)."""
    from src.engine.builders import build_run_distiller, build_student
    from src.teacher import build_teacher_source

    student = build_student(cfg)
    teacher = build_teacher_source(cfg, load=False) if cfg.distiller != "none" else None
    distiller = build_run_distiller(cfg, student, teacher)
    return (int(sum(p.size for p in student.get_parameters())),
            int(sum(p.size for p in distiller.branches.get_parameters())))


def echo_epoch_line(line):
    """The end-of-epoch text of a train.py log line, else None (what a study shows of a run)."""
    match = EPOCH_LINE.search(line)
    return match.group(0) if match else None


def train_run(recipe, overrides, label, report_only=False, echo=echo_epoch_line, count=True):
    """Train one config to the end with train.py in a child process (or reuse its cached record).

    A child per run keeps every run's memory and MindSpore state apart, and leaves the usual
    train.log / config.yaml / metrics.json in its output_dir. ``echo(line)`` picks what of the child's
    output is logged (a text, or None to skip the line); ``count=False`` leaves the parameter counts
    out of the record (None), which spares building the models in this process. Returns the record
    dict, or None when ``report_only`` and nothing is cached, or while another process trains this run.
    """
    from src.config import load_config

    cfg = load_config(recipe, overrides)
    cached = cached_record(cfg.output_dir, cfg)
    if cached is not None:
        log(f"{label}: cached (final top-1 {cached['final_top1']:.2f})")
        return cached
    if report_only:
        return None
    os.makedirs(cfg.output_dir, exist_ok=True)
    if not _lock_run(cfg.output_dir):
        log(f"{label}: skipped, another process is training it ({os.path.join(cfg.output_dir, RUN_LOCK)})")
        return None
    try:
        return _train_locked(recipe, overrides, cfg, label, echo, count)
    finally:
        with contextlib.suppress(OSError):
            os.remove(os.path.join(cfg.output_dir, RUN_LOCK))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_run(folder):
    """Take ``folder``'s run lock (a file holding this process's id); False while a live process holds it.

    Two studies sharing a work folder (``--only-seeds``) then never train one run at once; a lock left by a
    killed process is taken over.
    """
    path = os.path.join(folder, RUN_LOCK)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path, encoding="utf-8") as f:
                    holder = int(f.read().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and holder != os.getpid() and _pid_alive(holder):
                return False
            with contextlib.suppress(OSError):
                os.remove(path)
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(str(os.getpid()))
        return True
    return False


def _train_locked(recipe, overrides, cfg, label, echo, count):
    # not cached: any run already in the folder was made with another config, so it is replaced
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), "--config", recipe] + _override_args(overrides) \
        + ["overwrite=true"]
    t0 = time.time()
    lines = []
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc:
        for line in proc.stdout:
            lines.append(line)
            text = echo(line)
            if text:
                log(f"{label}: {text}")
    with open(os.path.join(cfg.output_dir, "study_child.log"), "w", encoding="utf-8") as f:
        f.write(shlex.join(cmd) + "\n" + "".join(lines))
    if proc.returncode != 0:
        tail = "".join(line for line in lines if not line.startswith("[WARNING"))[-2000:]
        raise RuntimeError(f"{label}: train.py exited with {proc.returncode}:\n{tail}")
    metrics = _read_json(os.path.join(cfg.output_dir, "metrics.json"))
    history = metrics["history"]
    curve = [h.get("val_top1") for h in history]
    student_params, branch_params = count_params(cfg) if count else (None, None)
    record = {
        "config": json.loads(json.dumps(cfg.to_dict())),
        "command": shlex.join(["python", "train.py", "--config", os.path.relpath(recipe, ROOT)]
                              + _override_args(overrides)),
        "history": history,
        "curve": curve,
        "final_top1": history[-1]["val_top1"],
        "best_top1": max(v for v in curve if v is not None),
        "student_params": student_params,
        "branch_params": branch_params,
        "time_s": time.time() - t0,
    }
    _write_json(os.path.join(cfg.output_dir, RECORD), record)
    log(f"{label}: done in {record['time_s']:.0f}s, final test top-1 {record['final_top1']:.2f}")
    return record


def load_config_for(recipe, overrides):
    """The validated config a run of ``recipe`` with ``overrides`` trains with."""
    from src.config import load_config

    return load_config(recipe, overrides)


def teacher_cache_dir(work_dir, teacher, teacher_ckpt, subset_dir, views, features):
    """Where the cache of a teacher checkpoint on a subset lives: a retrained teacher gets a new folder."""
    from src.files import file_sha256

    tag = f"{teacher}_{file_sha256(teacher_ckpt)[:10]}_{os.path.basename(subset_dir)}_k{views}"
    return os.path.join(work_dir, "caches", tag + ("_feat" if features else ""))


def ensure_teacher_cache(recipe, overrides, out_dir, views, features=False, report_only=False):
    """Run the teacher once over ``views`` views of every training image (tools/cache_teacher.py in a child).

    ``overrides`` are those of a distilled run of ``recipe`` (teacher, teacher_ckpt, data). A finished cache
    is reused; a killed one (``out_dir``.partial) resumes. Returns ``{"path", "built", "seconds",
    "views_per_s"}``; the teacher's throughput comes from the manifest of the run that wrote the cache.
    """
    built, t0 = False, time.time()
    if not os.path.isdir(out_dir):
        if report_only:
            raise FileNotFoundError(f"no teacher cache at {out_dir}; run without --report-only")
        cmd = [sys.executable, os.path.join(ROOT, "tools", "cache_teacher.py"), "--config", recipe] \
            + _override_args({k: v for k, v in overrides.items() if k != "output_dir"}) \
            + ["--out", out_dir, "--views", str(views)] + (["--features"] if features else [])
        log(f"teacher cache: running teacher {overrides.get('teacher')} once over {views} view(s) per image -> "
            f"{out_dir}")
        os.makedirs(os.path.dirname(out_dir), exist_ok=True)
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        with open(out_dir + ".log", "w", encoding="utf-8") as f:
            f.write(shlex.join(cmd) + "\n" + proc.stdout)
        if proc.returncode != 0:
            tail = "".join(line + "\n" for line in proc.stdout.splitlines() if not line.startswith("[WARNING"))
            raise RuntimeError(f"tools/cache_teacher.py exited with {proc.returncode}:\n{tail[-2000:]}")
        built = True
    manifest = _read_json(os.path.join(out_dir, "manifest.json")) or {}
    writers = [w for w in (manifest.get("writers") or []) if isinstance(w, dict)]
    rates = [w.get("views_per_s_after_first_batch") for w in writers if w.get("views_per_s_after_first_batch")]
    return {"path": out_dir, "built": built, "seconds": time.time() - t0 if built else None,
            "write_seconds": sum(float(w.get("seconds", 0.0)) for w in writers),
            "views_per_s": sum(rates) if rates else None}


def time_teacher_forward(recipe, overrides, repeats=20):
    """Seconds of one teacher forward on a training batch (median of ``repeats``, after a compiling call).

    What an online distillation step spends on the teacher beyond a cached one (the forward is fused in the
    step there, so this is an estimate). Runs in this process; returns ``(step_s, compile_s)``.
    """
    import mindspore as ms

    from src.config import load_config
    from src.engine.builders import setup_context
    from src.teacher import TeacherOutputs, build_teacher_model

    cfg = load_config(recipe, overrides)
    setup_context(cfg, distributed=False)
    net = TeacherOutputs(build_teacher_model(cfg), ("logits",))
    net.set_train(False)
    x = ms.Tensor(np.random.RandomState(0).randn(cfg.batch_size, cfg.in_channels, cfg.image_size,
                                                 cfg.image_size).astype(np.float32))
    t0 = time.time()
    net(x)[0].asnumpy()
    compile_s = time.time() - t0
    times = []
    for _ in range(repeats):
        t0 = time.time()
        net(x)[0].asnumpy()
        times.append(time.time() - t0)
    return float(np.median(times)), compile_s


def common_overrides(args, data_dir):
    out = {"data_dir": data_dir}
    if args.image_size:
        out["image_size"] = args.image_size
    if args.batch_size:
        out["batch_size"] = args.batch_size
    if args.val_subset:
        out["val_subset"] = args.val_subset
    return out


def teacher_overrides(args, model, role="cnn"):
    out = common_overrides(args, args.data_dir)
    out.update(student=model, distiller="none", seed=0, train_subset=args.teacher_subset,
               output_dir=os.path.join(args.work_dir, "teachers", model))
    epochs = getattr(args, "vit_teacher_epochs", None) if role == "vit" else None
    if epochs or args.teacher_epochs:
        out.update(epochs=epochs or args.teacher_epochs)
    if role == "vit" and epochs:  # its own folder: a ViT teacher trained for other epochs is another teacher
        out["output_dir"] = os.path.join(args.work_dir, "teachers", f"{model}_e{epochs}")
    return out


def method_overrides(args, method):
    """Config keys of a method name (``none``, ``kd``, ``ofa`` or an ablation variant of OFA or RSD)."""
    if method == "none":
        return {"distiller": "none", "teacher": None, "teacher_ckpt": None}
    if method in RSD_WEIGHTS:
        return {"distiller": "rsd", "loss_weights": [1.0, 1.0], "rsd_weight": RSD_WEIGHTS[method]}
    if method in ("kd", "rsd"):  # rsd reads loss_weights[0] (w_gt) only; its own weight is rsd_weight
        return {"distiller": method, "loss_weights": [1.0, 1.0]}
    change = ABLATIONS.get(method, {}) if method not in ("ofa", "ofa+rsd") else {}
    eps = change.get("eps", args.eps)
    w_ofa = change.get("w_ofa", args.w_ofa)
    return {"distiller": "ofa+rsd" if method == "ofa+rsd" else "ofa", "eps": list(eps),
            "stages": list(change.get("stages", args.stages)), "loss_weights": [1.0, 1.0],
            "ofa_branch_weight": float(w_ofa)}


def student_overrides(args, subset_dir, pair, method, seed, models, teacher_ckpts, caches=None):
    """A student run's config keys; distilled runs read ``caches[teacher role]`` (features or not) when given."""
    teacher_role, student_role = PAIRS[pair]
    out = common_overrides(args, subset_dir)
    out.update(student=models["student"][student_role], teacher=models["teacher"][teacher_role],
               teacher_ckpt=teacher_ckpts.get(teacher_role), seed=seed, train_subset=0,
               output_dir=os.path.join(args.work_dir, "runs", pair, method, f"seed{seed}"))
    if args.epochs:
        out.update(epochs=args.epochs)
    out.update(method_overrides(args, method))
    if caches and method != "none":
        out["teacher_cache"] = caches[(teacher_role, reads_features(method))]
    return out


def reads_features(method):
    """Whether a method's distiller reads the teacher's pooled feature (its cache is made with --features)."""
    return method in FEATURE_METHODS or method in RSD_WEIGHTS


# ----------------------------------------------------------------------------- report

def mean_std(values):
    """(mean, sample std) of a cell; one seed has std 0.0 here (the report prints it without a spread)."""
    mean, std = stats_mean_std(values)
    return mean, (0.0 if std is None and mean is not None else std)


def summarize(runs):
    """Mean +- std (sample std over seeds) of the final-epoch top-1, and the per-epoch curves."""
    finals = [r["final_top1"] for r in runs]
    mean, std = mean_std(finals)
    interval = mean_interval(finals)
    curves = [r["curve"] for r in runs]
    epochs = min((len(c) for c in curves), default=0)
    per_epoch = [[c[i] for c in curves] for i in range(epochs)]
    return {
        "n": len(runs),
        "top1_mean": mean, "top1_std": std,
        # two-sided 95 % t interval of the mean over seeds (None with one seed)
        "top1_ci95": [interval["low"], interval["high"]] if interval["low"] is not None else None,
        "top1_runs": finals,
        "best_top1_runs": [r["best_top1"] for r in runs],
        "seeds": [r["config"]["seed"] for r in runs],
        "curve_mean": [sum(v) / len(v) for v in per_epoch],
        "curve_min": [min(v) for v in per_epoch],
        "curve_max": [max(v) for v in per_epoch],
        "student_params": runs[0]["student_params"] if runs else None,
        "branch_params": runs[0]["branch_params"] if runs else None,
        "time_s_runs": [r["time_s"] for r in runs],
    }


def fmt(mean, std, n, ci=None):
    """``mean ± std`` of a cell, with its 95 % interval ``[low, high]`` when given."""
    if mean is None:
        return "-"
    if n < 2:  # one seed has no spread to show
        return f"{mean:.2f} (1 seed)"
    return f"{mean:.2f} ± {std:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def fmt_summary(summary):
    """A summary's table cell: mean ± sample std [95 % t interval], or "-" without runs."""
    if not summary or not summary["n"]:
        return "-"
    return fmt(summary["top1_mean"], summary["top1_std"], summary["n"], summary.get("top1_ci95"))


def compare(summaries, pairs):
    """Welch differences ``a - b`` of final top-1 for every ``(a, b)`` in ``pairs`` whose cells have runs.

    Returns ``[{"a", "b", "n_a", "n_b", "diff", "low", "high", "df", "within_noise", "verdict"}]``.
    """
    out = []
    for a, b in pairs:
        sa, sb = summaries.get(a), summaries.get(b)
        if not (sa and sb and sa["n"] and sb["n"]):
            continue
        d = welch_difference(sa["top1_runs"], sb["top1_runs"])
        out.append({"a": a, "b": b, "n_a": sa["n"], "n_b": sb["n"], **d, "verdict": verdict(d)})
    return out


def comparison_pairs(names, baselines=("kd", "none")):
    """Every method against each baseline present (and OFA+RSD against OFA): ``[(a, b)]``."""
    pairs = [(a, b) for b in baselines if b in names for a in names if a != b and a not in baselines]
    if "kd" in names and "none" in names:
        pairs.append(("kd", "none"))
    if "ofa+rsd" in names and "ofa" in names:
        pairs.append(("ofa+rsd", "ofa"))
    return pairs


def render_differences(rows, title=None):
    """Markdown rows of differences: ``| what | A - B | 95 % interval | seeds | verdict |``."""
    lines = ["| " + (title or "comparison") + " | difference | 95 % interval (Welch) | seeds | verdict |",
             "| --- | --- | --- | --- | --- |"]
    for r in rows:
        ci = f"[{r['low']:+.2f}, {r['high']:+.2f}]" if r["low"] is not None else "-"
        name = f"{METHOD_TITLES.get(r['a'], r['a'])} vs {METHOD_TITLES.get(r['b'], r['b'])}"
        lines.append(f"| {r.get('pair', '') + ': ' if r.get('pair') else ''}{name} | {r['diff']:+.2f} | {ci} | "
                     f"{r['n_a']} / {r['n_b']} | {r['verdict']} |")
    return lines


def write_report(args, command, results, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    _write_json(os.path.join(out_dir, "results.json"), results)
    with open(os.path.join(out_dir, "results.md"), "w", encoding="utf-8") as f:
        f.write(render_markdown(results))
    panels = []
    for pair in results["pairs"]:
        series = {}
        for method in results["methods"]:
            s = pair["methods"].get(method)
            if s and s["n"]:
                series[METHOD_TITLES.get(method, method)] = {
                    "mean": s["curve_mean"], "low": s["curve_min"], "high": s["curve_max"]}
        if series:
            panels.append({"title": f"{pair['teacher']} -> {pair['student']}", "series": series})
    if panels:
        from tools.study_plot import draw_panels

        seeds = max(s["n"] for p in results["pairs"] for s in p["methods"].values())
        draw_panels(panels, os.path.join(out_dir, "curves.png"),
                    title=f"Fashion-MNIST, {results['settings']['subset']} training images: test top-1 "
                          f"(mean of {seeds} seed(s), band = min..max)")


def render_markdown(results):
    s = results["settings"]
    lines = ["# Fashion-MNIST study: scratch vs KD vs OFA-KD", ""]
    lines += [f"Made by `{results['command']}` (finished {results['finished']}). Training time of all "
              f"runs together (teachers and students, compile and evaluation included): "
              f"{results['train_time_min']:.1f} min"
              + ("; this report was rebuilt from the cached runs (--report-only)." if results.get("report_only")
                 else f"; this invocation: {results['elapsed_min']:.1f} min."), ""]
    lines += [f"Students train on a fixed class-balanced subset of {s['subset']} training images "
              f"(subset seed {s['subset_seed']}) for {count(s['student_epochs'], 'epoch')}, "
              f"{s['image_size']} px, batch {s['batch_size']}; teachers on "
              f"{'the full 60k training split' if not s['teacher_subset'] else str(s['teacher_subset']) + ' images'} "
              f"for {count(s['teacher_epochs'], 'epoch')}. Top-1 is measured on "
              f"{'the full 10k test split' if not s['val_subset'] else str(s['val_subset']) + ' test images'} "
              f"after the last epoch; mean ± sample std over seeds [95 % t interval of the mean]. "
              f"OFA: eps {s['eps']}, stages {s['stages']}, loss weights [gt, ofa_final] = [1, 1], ofa_branch_weight {s['w_ofa']}. "
              f"KD: T = 1, weights [1, 1]. RSD: w_rsd {s.get('rsd_weight')}, kappa {s.get('rsd_kappa')}, "
              f"projector width x{s.get('rsd_gamma')}, w_gt 1; OFA+RSD: the OFA terms plus the RSD term. "
              + ("Distilled runs read a teacher-output cache (the teacher ran once per teacher, over one view "
                 "per image and epoch), so no run built a teacher." if s.get("teacher_cache") else
                 "The teacher ran in every distilled step (no cache)."), ""]
    methods = [m for m in results["methods"]]
    header = "| teacher (top-1) -> student | " + " | ".join(METHOD_TITLES[m] for m in methods)
    if "kd" in methods and "ofa" in methods:
        header += " | OFA - KD"
    if "none" in methods and "ofa" in methods:
        header += " | OFA - scratch"
    lines += [header + " |", "|" + " --- |" * (header.count("|"))]
    for pair in results["pairs"]:
        t = results["teachers"].get(pair["teacher_role"], {})
        t_acc = f"{t['top1']:.2f}" if t.get("top1") is not None else "-"
        row = [f"{pair['teacher']} ({t_acc}) -> {pair['student']}"]
        for m in methods:
            row.append(fmt_summary(pair["methods"].get(m)))
        for a, b in (("ofa", "kd"), ("ofa", "none")):
            if a in methods and b in methods:
                got = next((d for d in pair.get("differences", []) if (d["a"], d["b"]) == (a, b)), None)
                row.append(f"{got['diff']:+.2f}" + (" (within noise)" if got["within_noise"] else "")
                           if got else "-")
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    differences = [dict(r, pair=p["key"]) for p in results["pairs"] for r in p.get("differences", [])]
    if differences:
        lines += ["## Differences", "",
                  "Difference of the mean final top-1 (A - B) with its two-sided 95 % Welch interval; "
                  "**within noise** where the interval holds 0, so the seeds cannot tell A from B.", ""]
        lines += render_differences(differences) + [""]
    weaker = [f"{p['teacher']} ({results['teachers'][p['teacher_role']]['top1']:.2f}) -> {p['student']} "
              f"({p['methods']['none']['top1_mean']:.2f} alone)" for p in results["pairs"]
              if p["methods"].get("none", {}).get("n") and results["teachers"].get(p["teacher_role"], {}).get("top1")
              is not None and results["teachers"][p["teacher_role"]]["top1"] <= p["methods"]["none"]["top1_mean"]]
    if weaker:
        lines += ["**Not a fair pair: the teacher is not stronger than the student trained alone:** "
                  + "; ".join(weaker) + ".", ""]
    distilled = [m for m in methods if m != "none"]
    if distilled:
        lines += ["## Training-only parameters", "",
                  ("Trained beside the student and never shipped: OFA's exit branches, RSD's projector "
                   "(KD adds none)."), "",
                  "| pair | student | " + " | ".join(METHOD_TITLES[m] for m in distilled) + " |",
                  "|" + " --- |" * (len(distilled) + 2)]
        for pair in results["pairs"]:
            got = [pair["methods"].get(m) or {} for m in distilled]
            student = next((g["student_params"] for g in got if g.get("student_params")), None)
            cells = [f"+{g['branch_params']:,}" if g.get("branch_params") is not None else "-" for g in got]
            lines.append(f"| {pair['key']} | {student:,} | " if student else f"| {pair['key']} | - | ")
            lines[-1] += " | ".join(cells) + " |"
        lines.append("")
    lines += ["## Teachers", "", "| role | model | params | epochs | test top-1 | train time |", "| --- | --- | --- | --- | --- | --- |"]
    for role, t in results["teachers"].items():
        acc = f"{t['top1']:.2f}" if t.get("top1") is not None else "-"
        lines.append(f"| {role} | {t['model']} | {t.get('params', '-'):,} | {t.get('epochs', '-')} | {acc} | "
                     f"{t.get('time_s', 0) / 60:.1f} min |")
    lines.append("")
    if results.get("ablation"):
        ab = results["ablation"]
        lines += [f"## Ablation (OFA and RSD variants) on {ab['teacher']} -> {ab['student']}", "",
                  "| variant | overrides | top-1 | n |", "| --- | --- | --- | --- |"]
        for name, st in ab["variants"].items():
            lines.append(f"| {name} | {ab['overrides'].get(name, '')} | {fmt_summary(st)} | {st['n']} |")
        lines.append("")
        if ab.get("differences"):
            lines += render_differences(ab["differences"], "variant") + [""]
    lines += ["## Per seed (final / best-epoch test top-1)", "", "| pair | method | seed | final | best | params (student + branches) | time |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    cells = [(pair["key"], m, st) for pair in results["pairs"] for m, st in pair["methods"].items()]
    if results.get("ablation"):
        ab = results["ablation"]
        cells += [(ab["pair"], v, st) for v, st in ab["variants"].items() if v not in results["methods"]]
    for key, m, st in cells:
        for seed, final, best, secs in zip(st["seeds"], st["top1_runs"], st["best_top1_runs"], st["time_s_runs"]):
            lines.append(f"| {key} | {m} | {seed} | {final:.2f} | {best:.2f} | "
                         f"{st['student_params']:,} + {st['branch_params']:,} | {secs / 60:.1f} min |")
    lines.append("")
    if results.get("missing"):
        lines += ["## Not run (time limit)", ""] + [f"- {m}" for m in results["missing"]] + [""]
    lines += ["![test top-1 against epoch](curves.png)", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main

def run_study(args, command):
    t_start = time.time()
    args.work_dir = os.path.abspath(args.work_dir)
    models = {"teacher": {"cnn": args.cnn_teacher, "vit": args.vit_teacher},
              "student": {"cnn": args.cnn_student, "vit": args.vit_student, "mlp": args.mlp_student}}
    roles = sorted({PAIRS[p][0] for p in args.pairs + ([args.ablation_pair] if args.ablation else [])})
    need_teachers = any(m != "none" for m in args.methods) or bool(args.ablation)
    missing = []

    def out_of_time():
        return args.time_limit > 0 and (time.time() - t_start) / 60 > args.time_limit

    teachers, teacher_ckpts = {}, {}
    for role in roles:
        model = models["teacher"][role]
        overrides = teacher_overrides(args, model, role)
        if not need_teachers:
            continue
        record = train_run(TEACHER_RECIPE, overrides, f"teacher {model}", report_only=args.report_only)
        if record is None:
            raise SystemExit(f"error: no cached teacher {model} under {overrides['output_dir']}; run without --report-only")
        teacher_ckpts[role] = os.path.join(overrides["output_dir"], "last.ckpt")
        teachers[role] = {"model": model, "top1": record["final_top1"], "params": record["student_params"],
                          "epochs": record["config"]["epochs"], "time_s": record["time_s"],
                          "train_images": "full" if not args.teacher_subset else args.teacher_subset,
                          "checkpoint": os.path.relpath(teacher_ckpts[role], ROOT)}

    subset_dir, class_counts = make_subset_dir(args.data_dir, os.path.join(args.work_dir, f"data_subset{args.subset}"),
                                               args.subset, args.subset_seed)
    caches = {}
    needed = {(PAIRS[p][0], reads_features(m)) for p in args.pairs for m in args.methods if m != "none"}
    needed |= {(PAIRS[args.ablation_pair][0], reads_features(v)) for v in args.ablation}
    if need_teachers and not args.no_teacher_cache:
        # the teacher runs once per role (and once more with features when RSD is studied); its runs read it
        for role, features in sorted(needed):
            probe = student_overrides(args, subset_dir, next(p for p in PAIRS if PAIRS[p][0] == role), "kd", 1,
                                      models, teacher_ckpts)
            views = load_config_for(STUDENT_RECIPE, probe).epochs
            path = teacher_cache_dir(args.work_dir, models["teacher"][role], teacher_ckpts[role], subset_dir, views,
                                     features)
            cache = ensure_teacher_cache(STUDENT_RECIPE, probe, path, views, features, report_only=args.report_only)
            caches[(role, features)] = path
            teachers[role]["cache" + ("_features" if features else "")] = {
                "path": os.path.relpath(path, ROOT) if path.startswith(ROOT) else path,
                "views": views, "features": features, "write_s": cache["write_seconds"]}
            log(f"teacher {models['teacher'][role]} ran once: cache {path}")
    seeds = sorted(set(args.only_seeds)) if args.only_seeds else list(range(1, args.seeds + 1))
    ab_seeds = [s for s in range(1, (args.ablation_seeds or args.seeds) + 1) if not args.only_seeds or s in seeds]
    plan = [(seed, pair, method) for seed in seeds for pair in args.pairs for method in args.methods]
    plan += [(seed, args.ablation_pair, variant) for seed in ab_seeds for variant in args.ablation]
    records = {}
    for seed, pair, method in plan:  # seed-major: a cut-off study still has whole seeds for every cell
        label = f"{pair} {method} seed {seed}"
        overrides = student_overrides(args, subset_dir, pair, method, seed, models, teacher_ckpts, caches)
        if out_of_time() and not args.report_only:
            record = train_run(STUDENT_RECIPE, overrides, label, report_only=True)
            if record is None:
                missing.append(label)
                continue
        else:
            record = train_run(STUDENT_RECIPE, overrides, label, report_only=args.report_only)
        if record is None:
            missing.append(label)
            continue
        records.setdefault((pair, method), []).append(record)
        results = collect(args, command, models, teachers, records, missing, class_counts, t_start)
        write_report(args, command, results, args.out)
    results = collect(args, command, models, teachers, records, missing, class_counts, t_start)
    write_report(args, command, results, args.out)
    return results


def collect(args, command, models, teachers, records, missing, class_counts, t_start):
    any_run = next(iter(records.values()))[0] if records else None
    cfg = any_run["config"] if any_run else {}
    teacher_epochs = next(iter(teachers.values()))["epochs"] if teachers else args.teacher_epochs
    pairs = []
    for pair in args.pairs:
        t_role, s_role = PAIRS[pair]
        pairs.append({"key": pair, "teacher_role": t_role, "teacher": models["teacher"][t_role],
                      "student": models["student"][s_role],
                      "methods": {m: summarize(records.get((pair, m), [])) for m in args.methods}})
        pairs[-1]["differences"] = compare(pairs[-1]["methods"], comparison_pairs(args.methods))
    results = {
        "command": command,
        # the commit, cores and load average of the invocation that wrote this report
        "provenance": finish(args.provenance) if getattr(args, "provenance", None) else None,
        "report_only": bool(args.report_only),
        "finished": time.strftime("%Y-%m-%d %H:%M"),
        "elapsed_min": (time.time() - t_start) / 60,
        # wall time of every run (cached ones too): what the whole study costs from scratch
        "train_time_min": (sum(t["time_s"] for t in teachers.values())
                           + sum(r["time_s"] for runs in records.values() for r in runs)) / 60,
        "settings": {"subset": args.subset, "subset_seed": args.subset_seed, "class_counts": class_counts,
                     "teacher_subset": args.teacher_subset, "val_subset": args.val_subset,
                     "student_epochs": cfg.get("epochs", args.epochs), "teacher_epochs": teacher_epochs,
                     "image_size": cfg.get("image_size", args.image_size),
                     "batch_size": cfg.get("batch_size", args.batch_size), "seeds": args.seeds,
                     "eps": args.eps, "w_ofa": args.w_ofa, "stages": args.stages, "optimizer": cfg.get("opt"),
                     "rsd_weight": cfg.get("rsd_weight"), "rsd_kappa": cfg.get("rsd_kappa"),
                     "rsd_gamma": cfg.get("rsd_gamma"), "teacher_cache": bool(cfg.get("teacher_cache")) or any(
                         r["config"].get("teacher_cache") for runs in records.values() for r in runs),
                     "lr": cfg.get("lr"), "mode": cfg.get("mode")},
        "teachers": teachers,
        "methods": list(args.methods),
        "pairs": pairs,
        "missing": missing,
    }
    if args.ablation:
        t_role, s_role = PAIRS[args.ablation_pair]
        variants = {"none": None, "kd": None, "ofa": None} | {v: None for v in args.ablation}
        results["ablation"] = {
            "pair": args.ablation_pair, "teacher": models["teacher"][t_role], "student": models["student"][s_role],
            "overrides": {"kd": "distiller kd", "ofa": f"eps {args.eps}, w_ofa {args.w_ofa}, stages {args.stages}"}
            | {"none": "student alone"}
            | {v: ", ".join(f"{k} {val}" for k, val in VARIANTS[v].items()) for v in args.ablation},
            "variants": {v: summarize(records.get((args.ablation_pair, v), [])) for v in variants
                         if records.get((args.ablation_pair, v))},
        }
        ab = results["ablation"]
        ab["differences"] = compare(ab["variants"], [(v, b) for b in ("kd", "ofa") for v in args.ablation]
                                    + [(v, "none") for v in args.ablation if "none" in ab["variants"]])
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    # the command that trains these numbers (a --report-only rebuild reads the same cached runs)
    command = "python -m tools.study " + shlex.join([a for a in argv if a != "--report-only"])
    args.provenance = provenance(command, ROOT)
    try:
        results = run_study(args, command)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log(f"wrote {os.path.join(args.out, 'results.md')} ({results['elapsed_min']:.1f} min)")
    if results["missing"]:
        log(f"{len(results['missing'])} run(s) not done (time limit): {', '.join(results['missing'])}")
    return 0


if __name__ == "__main__":
    from src.mindspore_process import exit_quietly

    exit_quietly(main())
