"""Fashion-MNIST demo: a CNN teacher, then an MLP student alone, with KD and with OFA-KD, in minutes on a CPU.

    python -m tools.demo                                   # what scripts/run_fashion_mnist_demo.sh runs
    python -m tools.demo --epochs 6 --subset 4000          # a longer look

1. The teacher (configs/fashion_mnist/demo_teacher.yaml, a ResNet-10) trains alone. A finished teacher
   whose record and checkpoint match the config is reused.
2. A teacher-output cache (tools/cache_teacher.py, docs/teacher_cache.md) runs the teacher once over
   ``--views`` augmentation views of every student training image; it is reused when it exists.
3. The student (configs/fashion_mnist/demo_student.yaml, a ResMLP) trains alone, with KD and with
   OFA-KD: same subset, epochs, seed and views; KD and OFA-KD read the teacher's logits from the cache.
   Every run is evaluated on the test split after every epoch.
4. The OFA-KD student is exported as MINDIR (and checked against its checkpoint), the test top-1 curves
   are drawn to curves.png, and a table compares the four models.

Every run is one child process of train.py / tools/cache_teacher.py / export.py, logged in its folder
under ``--work-dir``; running the demo again reuses every finished step.
"""
import src  # noqa: F401  (sets ONEDNN_MAX_CPU_ISA before MindSpore runs an op)

import argparse
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time

from src.flags import int_range
from src.files import file_sha256, write_json_atomic
from src.logs import count
from src.provenance import finish, provenance
from tools.study import METHOD_TITLES, ROOT, cached_record, log, method_overrides, train_run

TEACHER_RECIPE = os.path.join(ROOT, "configs", "fashion_mnist", "demo_teacher.yaml")
STUDENT_RECIPE = os.path.join(ROOT, "configs", "fashion_mnist", "demo_student.yaml")
METHODS = ("none", "kd", "ofa")
ROW_TITLES = {"none": "student alone", "kd": "student + KD", "ofa": "student + OFA-KD"}
TEACHER_TITLE = "teacher alone"
SHORT_TITLES = {"none": "alone", "kd": "KD", "ofa": "OFA-KD"}  # in the differences printed under the table
# train.py's progress lines: "epoch 1/4 step 20/32 loss 1.2 (gt ...) lr ... eta 0.7 min" and the epoch summary
STEP_LINE = re.compile(r"epoch (\d+/\d+ step \d+/\d+) loss (\S+) .*(eta (?:\?|[\d.]+ (?:min|h)))")
EPOCH_LINE = re.compile(r"epoch (\d+) done in ([\d.]+)s \(([\d.]+) img/s[^)]*\)(?:; val top1 ([\d.]+))?")
# tools/cache_teacher.py and export.py lines worth showing
TOOL_LINE = re.compile(r"^(?:[\d-]+ [\d:]+ INFO )?((?:cache |views |rank \d+ writes|reloaded |wrote ).*)")


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tools.demo", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist",
                   help="Fashion-MNIST IDX files (Debian package dataset-fashion-mnist)")
    p.add_argument("--work-dir", default="outputs/fashion_mnist_demo",
                   help="runs, cache, curves.png, student_ofa.mindir and results.json (git-ignored)")
    p.add_argument("--teacher-epochs", type=int_range(1), default=None, help="teacher epochs (default: demo_teacher.yaml)")
    p.add_argument("--teacher-subset", type=int_range(0), default=None,
                   help="teacher training images, class-balanced (default: demo_teacher.yaml; 0 = all 60k)")
    p.add_argument("--epochs", type=int_range(1), default=None, help="student epochs (default: demo_student.yaml)")
    p.add_argument("--subset", type=int_range(1), default=None,
                   help="student training images, class-balanced (default: demo_student.yaml)")
    p.add_argument("--views", type=int_range(1), default=None,
                   help="cached teacher views per image (default: the student epochs, so no view repeats)")
    p.add_argument("--image-size", type=int_range(1), default=None, help="input size of every model (default: the configs')")
    p.add_argument("--batch-size", type=int_range(1), default=None, help="student batch size (default: demo_student.yaml)")
    p.add_argument("--teacher-batch-size", type=int_range(1), default=None, help="teacher batch size (default: demo_teacher.yaml)")
    p.add_argument("--val-subset", type=int_range(0), default=0,
                   help="test images to evaluate on (default 0: the full 10k test split)")
    args = p.parse_args(argv)
    for name in ("teacher_epochs", "epochs", "subset", "views", "image_size", "batch_size", "teacher_batch_size"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name in ("teacher_subset", "val_subset"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    return args


# ----------------------------------------------------------------------------- child output

def echo_progress(line):
    """A compact text for train.py's step and epoch lines (with the run's ETA), else None."""
    step = STEP_LINE.search(line)
    if step:
        return f"epoch {step.group(1)}, loss {step.group(2)}, {step.group(3)}"
    epoch = EPOCH_LINE.search(line)
    if epoch:
        text = f"epoch {epoch.group(1)} done in {float(epoch.group(2)):.0f} s ({epoch.group(3)} img/s)"
        return text + (f", test top-1 {epoch.group(4)}" if epoch.group(4) else "")
    return None


def echo_tool(line):
    """The lines of tools/cache_teacher.py (size, progress with ETA, done) and export.py worth showing."""
    match = TOOL_LINE.match(line)
    return match.group(1).split(" (train from it")[0].strip() if match else None


class Throttle:
    """Passes a progress line ("views i/n: ...") at most every ``seconds``, and always the last one (i == n)."""

    def __init__(self, seconds=20.0, clock=time.time):
        self.seconds, self.clock, self.last = seconds, clock, None

    def __call__(self, text):
        match = re.match(r"views (\d+)/(\d+)", text)
        if not match or match.group(1) == match.group(2):
            return True
        now = self.clock()
        if self.last is not None and now - self.last < self.seconds:
            return False
        self.last = now
        return True


def run_tool(cmd, label, log_path):
    """Run an entry point as a child, show its progress lines, keep its whole output in ``log_path``."""
    lines, throttle = [], Throttle()
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          bufsize=1) as proc:
        for line in proc.stdout:
            lines.append(line)
            text = echo_tool(line)
            if text and throttle(text):
                log(f"{label}: {text}")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as f:
        f.write(shlex.join(cmd) + "\n" + "".join(lines))
    if proc.returncode != 0:
        tail = "".join(line for line in lines if not line.startswith("[WARNING"))[-2000:]
        raise RuntimeError(f"{label}: {os.path.basename(cmd[1])} exited with {proc.returncode}:\n{tail}")


# ----------------------------------------------------------------------------- pure helpers

def log_interval(images, batch_size, lines_per_epoch=3):
    """Steps between train.py's progress lines: about ``lines_per_epoch`` lines per epoch."""
    steps = max(1, -(-images // batch_size))
    return max(1, steps // lines_per_epoch)


def cache_name(teacher, teacher_sha256, fields, views):
    """Folder name of the cache for a teacher checkpoint and the student's data fields: another one, another name."""
    key = json.dumps({"teacher_sha256": teacher_sha256, "fields": fields, "views": views}, sort_keys=True)
    return f"{teacher}-k{views}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def count_train_images(data_dir):
    """Images in the training split of an MNIST-format folder."""
    from src.data.idx import LABELS_MAGIC, SPLIT_FILES, find_idx_file, read_idx

    return len(read_idx(find_idx_file(data_dir, SPLIT_FILES["train"][1]), LABELS_MAGIC))


def format_minutes(seconds):
    return f"{seconds / 60:.1f} min"


def format_table(rows):
    """Markdown table lines of ``rows``: dicts with what, model, images, epochs, top1, time_s (and reused)."""
    lines = ["| model | | training images | epochs | test top-1 | time |",
             "| --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        top1 = f"{row['top1']:.2f} %" if row.get("top1") is not None else "-"
        when = format_minutes(row["time_s"]) + (" (reused)" if row.get("reused") else "")
        lines.append(f"| {row['what']} | `{row['model']}` | {row['images']:,} | {row['epochs']} | {top1} | {when} |")
    return lines


def gains(rows):
    """``{"KD - alone": x, "OFA-KD - alone": y, "OFA-KD - KD": z}`` from the three student rows (by method)."""
    top1 = {row["method"]: row["top1"] for row in rows if row.get("method")}
    out = {}
    for a, b in (("kd", "none"), ("ofa", "none"), ("ofa", "kd")):
        if top1.get(a) is not None and top1.get(b) is not None:
            out[f"{SHORT_TITLES[a]} - {SHORT_TITLES[b]}"] = top1[a] - top1[b]
    return out


def relative(path):
    path = os.path.abspath(path)
    return os.path.relpath(path, os.getcwd()) if path.startswith(os.getcwd() + os.sep) else path


# ----------------------------------------------------------------------------- main

def run_demo(args):
    from src.config import load_config

    t_start = time.time()
    work = os.path.abspath(args.work_dir)
    data_dir = os.path.abspath(args.data_dir)
    if not os.path.isdir(data_dir):
        raise ValueError(f"--data-dir {data_dir} is not a directory (install it: apt-get install dataset-fashion-mnist)")

    def elapsed():
        return format_minutes(time.time() - t_start)

    common = {"data_dir": data_dir, "val_subset": args.val_subset}
    if args.image_size:
        common["image_size"] = args.image_size

    # 1. the teacher alone
    teacher_over = dict(common, output_dir=os.path.join(work, "teacher"))
    if args.teacher_epochs:
        teacher_over["epochs"] = args.teacher_epochs
    if args.teacher_batch_size:
        teacher_over["batch_size"] = args.teacher_batch_size
    if args.teacher_subset is not None:
        teacher_over["train_subset"] = args.teacher_subset
    teacher_cfg = load_config(TEACHER_RECIPE, teacher_over)
    teacher_images = teacher_cfg.train_subset or count_train_images(data_dir)
    teacher_over["log_interval"] = log_interval(teacher_images, teacher_cfg.batch_size)
    log(f"[1/5] teacher {teacher_cfg.student} alone: {teacher_images:,} images, {count(teacher_cfg.epochs, 'epoch')}, "
        f"{teacher_cfg.image_size} px")
    teacher_reused = cached_record(teacher_cfg.output_dir, teacher_cfg) is not None
    teacher = train_run(TEACHER_RECIPE, teacher_over, "teacher", echo=echo_progress, count=False)
    teacher_ckpt = os.path.join(teacher_cfg.output_dir, "last.ckpt")

    # 2. the teacher-output cache for the students' training images
    student_over = dict(common)
    if args.epochs:
        student_over["epochs"] = args.epochs
    if args.batch_size:
        student_over["batch_size"] = args.batch_size
    if args.subset:
        student_over["train_subset"] = args.subset
    student_cfg = load_config(STUDENT_RECIPE, student_over)
    views = args.views or student_cfg.epochs
    fields = {k: student_cfg[k] for k in ("dataset", "train_subset", "seed", "image_size", "in_channels",
                                          "num_classes", "interpolation", "mean", "std", "scale", "ratio", "hflip")}
    fields["data_dir"] = data_dir
    cache_dir = os.path.join(work, "teacher_cache", cache_name(teacher_cfg.student, file_sha256(teacher_ckpt),
                                                               fields, views))
    log(f"[2/5] teacher-output cache: {views} views of each of {student_cfg.train_subset:,} student images "
        f"(elapsed {elapsed()})")
    t0 = time.time()
    if os.path.isfile(os.path.join(cache_dir, "manifest.json")):
        log(f"cache: reusing {relative(cache_dir)}")
    else:
        os.makedirs(os.path.dirname(cache_dir), exist_ok=True)
        cmd = [sys.executable, os.path.join(ROOT, "tools", "cache_teacher.py"), "--config", STUDENT_RECIPE]
        cmd += [f"{k}={v}" for k, v in student_over.items()]
        cmd += [f"teacher={teacher_cfg.student}", f"teacher_ckpt={teacher_ckpt}", "--out", cache_dir,
                "--views", str(views)]
        run_tool(cmd, "cache", cache_dir + ".log")
    cache_s = time.time() - t0

    # 3. the student alone, with KD, with OFA-KD: same budget, the teacher from the cache
    ofa_keys = argparse.Namespace(eps=student_cfg.eps, w_ofa=student_cfg.ofa_branch_weight, stages=student_cfg.stages)
    records, reused = {}, {}
    for k, method in enumerate(METHODS):
        over = dict(student_over, output_dir=os.path.join(work, f"student_{method}"),
                    log_interval=log_interval(student_cfg.train_subset, student_cfg.batch_size))
        over.update(method_overrides(ofa_keys, method))
        if method != "none":
            over.update(teacher=teacher_cfg.student, teacher_ckpt=teacher_ckpt, teacher_cache=cache_dir)
        log(f"[3/5] {ROW_TITLES[method]} ({k + 1}/3): {student_cfg.student}, {student_cfg.train_subset:,} images, "
            f"{count(student_cfg.epochs, 'epoch')} (elapsed {elapsed()})")
        reused[method] = cached_record(over["output_dir"], load_config(STUDENT_RECIPE, over)) is not None
        records[method] = train_run(STUDENT_RECIPE, over, METHOD_TITLES[method], echo=echo_progress, count=False)

    # 4. the OFA-KD student as MINDIR, the curves
    ofa_dir = os.path.join(work, "student_ofa")
    mindir = os.path.join(work, "student_ofa.mindir")
    log(f"[4/5] export the OFA-KD student as MINDIR (elapsed {elapsed()})")
    t0 = time.time()
    run_tool([sys.executable, os.path.join(ROOT, "export.py"), "--config", os.path.join(ofa_dir, "config.yaml"),
              "--checkpoint", os.path.join(ofa_dir, "last.ckpt"), "--file_name", mindir[:-len(".mindir")]],
             "export", os.path.join(work, "export.log"))
    export_s = time.time() - t0
    png = os.path.join(work, "curves.png")
    draw_curves(records, teacher, teacher_cfg.student, student_cfg, png)

    # 5. the table
    rows = [{"what": TEACHER_TITLE, "model": teacher_cfg.student, "images": teacher_images,
             "epochs": teacher_cfg.epochs, "top1": teacher["final_top1"], "time_s": teacher["time_s"],
             "reused": teacher_reused}]
    for method in METHODS:
        rows.append({"what": ROW_TITLES[method], "method": method, "model": student_cfg.student,
                     "images": student_cfg.train_subset, "epochs": student_cfg.epochs,
                     "top1": records[method]["final_top1"], "time_s": records[method]["time_s"],
                     "reused": reused[method]})
    results = {"rows": rows, "gains": gains(rows), "cache": {"dir": cache_dir, "views": views, "time_s": cache_s},
               "export": {"mindir": mindir, "time_s": export_s}, "curves": png,
               "test_images": args.val_subset or 10000, "elapsed_s": time.time() - t_start,
               # the command, commit, cores and load average of this invocation
               "provenance": finish(args.provenance) if getattr(args, "provenance", None) else None}
    write_json_atomic(os.path.join(work, "results.json"), results)
    return results


def curve_series(records, teacher):
    """The chart's lines under the table's row names: each student per epoch, the teacher (evaluated once,
    after its training) as a level line."""
    series = {TEACHER_TITLE: {"reference": teacher["final_top1"]}}
    for method in METHODS:
        series[ROW_TITLES[method]] = {"mean": records[method]["curve"]}
    return series


def draw_curves(records, teacher, teacher_model, student_cfg, path):
    from tools.study_plot import draw_panels

    series = curve_series(records, teacher)
    draw_panels([{"title": f"{teacher_model} -> {student_cfg.student}", "series": series}], path,
                title=f"Fashion-MNIST, {student_cfg.train_subset:,} training images: test top-1")


def print_report(results):
    print()
    for line in format_table(results["rows"]):
        print(line)
    print()
    print(", ".join(f"{name}: {value:+.2f} points" for name, value in results["gains"].items()))
    print(f"test top-1 on {results['test_images']:,} test images after the last epoch; time = wall time of each run "
          f"(compile and evaluation included); teacher cache {format_minutes(results['cache']['time_s'])}, "
          f"export {format_minutes(results['export']['time_s'])}; whole demo {format_minutes(results['elapsed_s'])}")
    print(f"curves:  {relative(results['curves'])}")
    print(f"MINDIR:  {relative(results['export']['mindir'])} (the OFA-KD student alone)")
    sys.stdout.flush()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.provenance = provenance(shlex.join(["python", "-m", "tools.demo"] + argv), ROOT)
    try:
        results = run_demo(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log("[5/5] done")
    print_report(results)
    return 0


if __name__ == "__main__":
    from src.mindspore_process import exit_quietly

    exit_quietly(main())
