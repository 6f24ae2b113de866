"""OFA's eps and w_ofa swept for one teacher -> student pair on Fashion-MNIST, from one teacher-output cache.

    python -m tools.eps_sweep --out results/fashion_mnist/eps_sweep_cnn2vit --student vit_p4_pico
    python -m tools.eps_sweep --out /tmp/sw --eps 1.0 1.5 --w-ofa 1.0 --seeds 1 --quick --data-dir DIR
    python -m tools.eps_sweep --out DIR ... --report-only      # re-draw from the finished runs

1. The teacher trains alone (or is reused) exactly as in tools/study.py, on ``--teacher-subset`` images.
2. It runs once over ``--epochs`` augmentation views of every image of the students' fixed class-balanced
   subset (tools/cache_teacher.py); every distilled run of the sweep reads that cache, no run builds a teacher.
3. For every seed: the student alone, KD, and OFA for every (eps, w_ofa); a run is one train.py child
   (tools/study.py's ``train_run``) whose result is written atomically in its folder, so a stopped sweep
   started again skips every finished run.
4. ``--out`` gets sweep.json, sweep.md (mean ± sample std and the 95 % t interval of the final test top-1
   per cell; every cell against KD and the student alone with its 95 % Welch interval, "within noise"
   where it holds 0; wall times, the cost the cache saved) and sweep.png (top-1 against eps, one line per
   w_ofa, KD and alone as bands). sweep.json also records the command, the commit, the cores and the load.
"""
import src  # noqa: F401  (sets ONEDNN_MAX_CPU_ISA before MindSpore runs an op)

import argparse
import os
import shlex
import sys
import time

from src.flags import float_range, int_range
from src.logs import count
from src.provenance import finish, provenance
from tools import study
from tools.study import log

DEFAULT_EPS = (0.8, 1.0, 1.2, 1.5, 2.0)
DEFAULT_W_OFA = (1.0, 0.1)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tools.eps_sweep", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for sweep.json, sweep.md and sweep.png")
    p.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist", help="Fashion-MNIST IDX files")
    p.add_argument("--work-dir", default="outputs/eps_sweep",
                   help="teacher, cache, subset data and one folder per run (git-ignored)")
    p.add_argument("--teacher", default="resnet10")
    p.add_argument("--student", default="vit_p4_pico")
    p.add_argument("--eps", type=float_range(0, low_open=True), nargs="+", default=list(DEFAULT_EPS), help="OFA eps values")
    p.add_argument("--w-ofa", type=float_range(0), nargs="+", default=list(DEFAULT_W_OFA), help="OFA branch weights")
    p.add_argument("--stages", type=int_range(1, 4), nargs="+", default=[1, 2, 3, 4], help="student stages with OFA branches")
    p.add_argument("--seeds", type=int_range(1), default=3, help="student seeds per cell")
    p.add_argument("--epochs", type=int_range(1), default=None, help="student epochs (default: the student recipe's); "
                   "also the cache's views per image")
    p.add_argument("--subset", type=int_range(1), default=10000, help="class-balanced student training subset size")
    p.add_argument("--subset-seed", type=int_range(0), default=0)
    p.add_argument("--teacher-epochs", type=int_range(1), default=None, help="teacher epochs (default: the teacher recipe's)")
    p.add_argument("--teacher-subset", type=int_range(0), default=0, help="teacher training images (0 = the full split)")
    p.add_argument("--val-subset", type=int_range(0), default=0, help="test images to evaluate on (0 = the full 10k split)")
    p.add_argument("--image-size", type=int_range(1), default=None)
    p.add_argument("--batch-size", type=int_range(1), default=None)
    p.add_argument("--time-teacher", action="store_true",
                   help="measure one teacher forward per training batch, to estimate the sweep's cost without cache")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 epoch, batch 32, small subsets")
    p.add_argument("--report-only", action="store_true", help="train nothing: rebuild the report from finished runs")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = args.epochs or 1
        args.teacher_epochs = args.teacher_epochs or 1
        args.batch_size = args.batch_size or 32
        args.subset = min(args.subset, 256)
        args.teacher_subset = args.teacher_subset or 512
        args.val_subset = args.val_subset or 256
    for name in ("seeds", "subset"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    from src.config import load_config

    for name, eps, w in [("eps", e, 1.0) for e in args.eps] + [("w-ofa", 1.0, w) for w in args.w_ofa]:
        try:  # the config's own checks of eps and ofa_branch_weight
            load_config(None, {"dataset": "fashion_mnist", "eps": [eps], "ofa_branch_weight": w}, for_training=False)
        except ValueError as err:
            p.error(f"--{name}: {err}")
    args.eps = list(dict.fromkeys(args.eps))
    args.w_ofa = list(dict.fromkeys(args.w_ofa))
    return args


def cells(args):
    """``(name, overrides)`` of every trained cell: the baselines first, then OFA by w_ofa and eps."""
    out = [("alone", {"distiller": "none", "teacher": None, "teacher_ckpt": None, "teacher_cache": None}),
           ("kd", {"distiller": "kd", "loss_weights": [1.0, 1.0]})]
    for w in args.w_ofa:
        for eps in args.eps:
            out.append((ofa_name(eps, w), {"distiller": "ofa", "eps": [eps], "stages": list(args.stages),
                                           "loss_weights": [1.0, 1.0], "ofa_branch_weight": float(w)}))
    return out


def comparison_pairs(ofa_cells):
    """What a sweep report compares: every OFA cell against KD and the student alone, and KD against alone."""
    return [(c, b) for b in ("kd", "alone") for c in ofa_cells] + [("kd", "alone")]


def ofa_name(eps, w):
    return f"ofa_eps{eps:g}_w{w:g}"


def run_sweep(args, command):
    t_start = time.time()
    args.work_dir = os.path.abspath(args.work_dir)
    teacher = study.train_run(study.TEACHER_RECIPE, study.teacher_overrides(args, args.teacher),
                              f"teacher {args.teacher}", report_only=args.report_only)
    if teacher is None:
        raise FileNotFoundError(f"no finished teacher {args.teacher} under {args.work_dir}; run without --report-only")
    teacher_ckpt = os.path.join(args.work_dir, "teachers", args.teacher, "last.ckpt")
    subset_dir, class_counts = study.make_subset_dir(
        args.data_dir, os.path.join(args.work_dir, f"data_subset{args.subset}"), args.subset, args.subset_seed)

    base = study.common_overrides(args, subset_dir)
    base.update(student=args.student, teacher=args.teacher, teacher_ckpt=teacher_ckpt, train_subset=0)
    if args.epochs:
        base["epochs"] = args.epochs
    run_cfg = study.load_config_for(study.STUDENT_RECIPE, base)
    epochs = run_cfg.epochs
    cache_dir = study.teacher_cache_dir(args.work_dir, args.teacher, teacher_ckpt, subset_dir, epochs, False)
    cache = study.ensure_teacher_cache(study.STUDENT_RECIPE, {**base, "distiller": "kd"}, cache_dir, epochs,
                                       report_only=args.report_only)
    log(f"teacher cache {'written' if cache['built'] else 'reused'}: {cache_dir}")

    # the timing is kept beside the cache, so a report rebuilt later (--report-only) still has it
    timing_path = cache_dir + ".teacher_timing.json"
    timing = study._read_json(timing_path)
    if args.time_teacher and not args.report_only:
        step_s, compile_s = study.time_teacher_forward(study.STUDENT_RECIPE, {**base, "distiller": "kd"})
        timing = {"forward_s_per_step": step_s, "compile_s": compile_s, "batch_size": run_cfg.batch_size,
                  "measured": time.strftime("%Y-%m-%d %H:%M")}
        study.write_json_atomic(timing_path, timing)
        log(f"teacher forward: {step_s * 1000:.1f} ms per batch of {run_cfg.batch_size} "
            f"(first call with compile {compile_s:.1f} s)")

    def overrides_of(seed, name, change):
        out = {**base, **change, "seed": seed,
               "output_dir": os.path.join(args.work_dir, "runs", f"{args.teacher}_to_{args.student}", name,
                                          f"seed{seed}")}
        if change["distiller"] != "none":
            out["teacher_cache"] = cache_dir
        return out

    plan = [(seed, name, change) for seed in range(1, args.seeds + 1) for name, change in cells(args)]
    # finished runs first, so that every report written while the rest trains shows all of them
    records, done = {}, set()
    for seed, name, change in plan:
        record = study.train_run(study.STUDENT_RECIPE, overrides_of(seed, name, change), f"{name} seed {seed}",
                                 report_only=True)
        if record is not None:
            records.setdefault(name, []).append(record)
            done.add((seed, name))
    skipped = len(done)
    for seed, name, change in plan:  # seed-major: a stopped sweep has whole seeds of every cell
        if (seed, name) in done or args.report_only:
            continue
        record = study.train_run(study.STUDENT_RECIPE, overrides_of(seed, name, change), f"{name} seed {seed}")
        if record is None:  # another process is training this run
            continue
        records.setdefault(name, []).append(record)
        results = collect(args, command, teacher, cache, timing, records, class_counts, t_start, skipped)
        write_report(results, args.out)
    results = collect(args, command, teacher, cache, timing, records, class_counts, t_start, skipped)
    write_report(results, args.out)
    log(f"teacher ran once: cache {cache_dir} ({results['distilled_runs']} distilled run(s) read it, "
        f"none built a teacher)")
    return results


def collect(args, command, teacher, cache, timing, records, class_counts, t_start, skipped):
    summaries = {name: study.summarize(runs) for name, runs in records.items()}
    differences = study.compare(summaries, comparison_pairs([ofa_name(e, w) for w in args.w_ofa for e in args.eps]))
    any_run = next(iter(records.values()))[0]["config"] if records else {}
    distilled = sum(len(runs) for name, runs in records.items() if name != "alone")
    run_s = sum(r["time_s"] for runs in records.values() for r in runs)
    # the train pipeline drops the last partial batch
    steps_per_run = args.subset // any_run.get("batch_size", 1) * any_run.get("epochs", 0) if records else 0
    wall = {
        "runs_s": run_s,  # every run's own wall time, reused runs included: the sweep's cost from scratch
        "cache_s": cache.get("write_seconds") or 0.0,
        "teacher_train_s": teacher["time_s"],
        "this_invocation_s": time.time() - t_start,
        "runs_reused": skipped,
    }
    if timing:
        # online, every distilled step also runs the teacher forward, and every distilled run compiles it
        extra = distilled * (steps_per_run * timing["forward_s_per_step"] + timing["compile_s"])
        wall["estimated_without_cache_s"] = run_s + extra
        wall["estimated_teacher_s_without_cache"] = extra
    return {
        "command": command,
        # the commit, cores and load average of the invocation that wrote this report
        "provenance": finish(args.provenance) if getattr(args, "provenance", None) else None,
        "finished": time.strftime("%Y-%m-%d %H:%M"),
        "report_only": bool(args.report_only),
        "teacher": {"model": args.teacher, "top1": teacher["final_top1"], "epochs": teacher["config"]["epochs"],
                    "train_images": args.teacher_subset or "full", "params": teacher["student_params"]},
        "student": args.student,
        "cache": {k: v for k, v in cache.items()},
        "teacher_timing": timing,
        "settings": {"subset": args.subset, "subset_seed": args.subset_seed, "class_counts": class_counts,
                     "val_subset": args.val_subset, "epochs": any_run.get("epochs"),
                     "image_size": any_run.get("image_size"), "batch_size": any_run.get("batch_size"),
                     "seeds": args.seeds, "eps": args.eps, "w_ofa": args.w_ofa, "stages": args.stages,
                     "steps_per_run": steps_per_run},
        "cells": summaries,
        "differences": differences,
        "runs": [{"cell": name, "seed": r["config"]["seed"], "final_top1": r["final_top1"],
                  "best_top1": r["best_top1"], "time_s": r["time_s"]} for name, runs in records.items() for r in runs],
        "distilled_runs": distilled,
        "wall": wall,
    }


def write_report(results, out_dir):
    from tools.study_plot import draw_sweep

    os.makedirs(out_dir, exist_ok=True)
    study.write_json_atomic(os.path.join(out_dir, "sweep.json"), results)
    study.write_bytes_atomic(os.path.join(out_dir, "sweep.md"), [render_markdown(results).encode("utf-8")])
    s, cells_ = results["settings"], results["cells"]
    lines = {}
    for w in s["w_ofa"]:
        xs = [e for e in s["eps"] if cells_.get(ofa_name(e, w), {}).get("n")]
        if xs:
            got = [cells_[ofa_name(e, w)] for e in xs]
            lines[f"OFA, w_ofa {w:g}"] = {"x": xs, "mean": [c["top1_mean"] for c in got],
                                         "low": [min(c["top1_runs"]) for c in got],
                                         "high": [max(c["top1_runs"]) for c in got]}
    bands = {}
    for name, title in (("alone", "alone"), ("kd", "KD")):
        c = cells_.get(name)
        if c and c["n"]:
            bands[title] = {"mean": c["top1_mean"], "low": min(c["top1_runs"]), "high": max(c["top1_runs"])}
    if lines or bands:
        seeds = max(c["n"] for c in cells_.values())
        draw_sweep(lines, bands, os.path.join(out_dir, "sweep.png"), x_label="OFA eps (target-class exponent)",
                   title=f"{results['teacher']['model']} ({results['teacher']['top1']:.1f}) -> {results['student']}, "
                         f"{s['subset']} images x {count(s['epochs'], 'epoch')}\nfinal test top-1, "
                         f"{seeds} seed(s), bars/bands = min..max")


def _cell(cells_, name):
    return study.fmt_summary(cells_.get(name))


def render_markdown(results):
    s, cells_, wall = results["settings"], results["cells"], results["wall"]
    t = results["teacher"]
    trained_on = ("the full training split" if t["train_images"] == "full"
                  else f"{t['train_images']} training images")
    setup = (f"Teacher {t['model']} ({t['params']:,} parameters, {count(t['epochs'], 'epoch')} on {trained_on}): test "
             f"top-1 {t['top1']:.2f}. Students: {s['subset']} class-balanced training images (subset seed "
             f"{s['subset_seed']}), {count(s['epochs'], 'epoch')}, {s['image_size']} px, batch {s['batch_size']}; top-1 on "
             f"{s['val_subset'] or 10000} test images after the last epoch, mean ± sample std over seeds "
             f"[95 % t interval of the mean]. "
             f"OFA: stages {s['stages']}, loss weights [gt, ofa_final] = [1, 1], ofa_branch_weight = w_ofa; "
             f"KD: T = 1, [1, 1].")
    lines = [f"# OFA eps sweep: {t['model']} -> {results['student']} on Fashion-MNIST", "",
             f"Made by `{results['command']}` (finished {results['finished']}).", "", setup, ""]
    header = "| eps | " + " | ".join(f"OFA, w_ofa {w:g}" for w in s["w_ofa"]) + " |"
    lines += [header, "|" + " --- |" * (len(s["w_ofa"]) + 1)]
    for eps in s["eps"]:
        lines.append(f"| {eps:g} | " + " | ".join(_cell(cells_, ofa_name(eps, w)) for w in s["w_ofa"]) + " |")
    lines += ["", "| baseline | top-1 |", "| --- | --- |",
              f"| KD | {_cell(cells_, 'kd')} |", f"| student alone | {_cell(cells_, 'alone')} |", ""]
    best = [(cells_[ofa_name(e, w)]["top1_mean"], e, w) for e in s["eps"] for w in s["w_ofa"]
            if cells_.get(ofa_name(e, w), {}).get("n")]
    if best and cells_.get("kd", {}).get("n"):
        top, e, w = max(best)
        against = {d["b"]: d for d in results.get("differences", []) if d["a"] == ofa_name(e, w)}

        def over(base, title):
            d = against.get(base)
            return f", {d['diff']:+.2f} over {title} ({d['verdict']})" if d else ""
        lines += [f"Highest OFA mean: eps {e:g}, w_ofa {w:g}: {top:.2f}" + over("kd", "KD")
                  + over("alone", "the student alone") + ".", ""]
    if results.get("differences"):
        lines += ["## Differences", "",
                  "Difference of the mean final top-1 (A - B) with its two-sided 95 % Welch interval; "
                  "**within noise** where the interval holds 0, so the seeds cannot tell A from B.", ""]
        lines += study.render_differences(results["differences"], "cell") + [""]
    cache = results["cache"]
    rate = f" ({cache['views_per_s']:.0f} teacher images/s after the compiling batch)" if cache.get("views_per_s") else ""
    lines += ["## Wall time", "",
              (f"- teacher ran once: cache `{os.path.basename(cache['path'])}`, written in {wall['cache_s']:.0f} s"
               f"{rate}; {results['distilled_runs']} distilled run(s) read it and built no teacher;"),
              (f"- all {len(results['runs'])} student runs: {wall['runs_s'] / 60:.1f} min of run wall time "
               f"(each run's own wall time, compile and evaluation included); teacher training "
               f"{wall['teacher_train_s'] / 60:.1f} min; "
               + ("this report was rebuilt from the finished runs (--report-only);" if results.get("report_only")
                  else f"this invocation {wall['this_invocation_s'] / 60:.1f} min ({wall['runs_reused']} run(s) "
                       f"reused from an earlier invocation);"))]
    timing = results.get("teacher_timing")
    if timing and "estimated_without_cache_s" in wall:
        lines.append(f"- without the cache (estimate): each of the {results['distilled_runs']} distilled runs would "
                     f"also run the teacher forward on each of its {s['steps_per_run']} steps "
                     f"({timing['forward_s_per_step'] * 1000:.1f} ms per batch, measured once, median of 20) and "
                     f"compile it ({timing['compile_s']:.1f} s): +{wall['estimated_teacher_s_without_cache'] / 60:.1f}"
                     f" min, {wall['estimated_without_cache_s'] / 60:.1f} min in all instead of "
                     f"{(wall['runs_s'] + wall['cache_s']) / 60:.1f} min (runs + cache).")
    lines += ["", "## Per seed", "", "| cell | seed | final | best | time |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['cell']} | {r['seed']} | {r['final_top1']:.2f} | {r['best_top1']:.2f} | {r['time_s']:.0f} s |"
              for r in results["runs"]]
    lines += ["", "![final test top-1 against eps](sweep.png)", ""]
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    command = "python -m tools.eps_sweep " + shlex.join([a for a in argv if a != "--report-only"])
    args.provenance = provenance(command, study.ROOT)
    try:
        results = run_sweep(args, command)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log(f"wrote {os.path.join(args.out, 'sweep.md')} ({results['wall']['this_invocation_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    from src.mindspore_process import exit_quietly

    exit_quietly(main())
