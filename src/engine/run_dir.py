"""What may happen to an ``output_dir``: a new run, a continued one, or a refusal.

A folder "holds a run" when it has the checkpoints or the metrics a run writes. A new run there is
refused unless the config says ``overwrite: true`` (the old run's files are then removed, once the
new run has been checked) or continues it with ``resume``. These decisions read the folder only:
nothing in it changes until the entry point commits the run.
"""
import os
import re
import shutil
from dataclasses import dataclass, field

from src.files import remove_partial_files

RESUME_FILE = "resume.ckpt"
CHECKPOINTS = ("resume.ckpt", "last.ckpt", "best.ckpt", "last_ema.ckpt", "best_ema.ckpt")
# what a run writes; the first group marks a run worth protecting, config and log alone do not
RESULT_FILES = CHECKPOINTS + ("metrics.json",)
RUN_FILES = RESULT_FILES + ("config.yaml", "train.log")
RANK_DIR = re.compile(r"^rank_\d+$")


@dataclass
class RunPlan:
    """``resume_path``: the resume state to continue from (None = a new run); ``clear``: remove the old
    run's files before starting; ``notes``: what to tell the user."""

    resume_path: str = None
    clear: bool = False
    notes: list = field(default_factory=list)


def run_results(out_dir):
    """Names of the result files (checkpoints, metrics, rank_N folders) in ``out_dir``."""
    if not os.path.isdir(out_dir):
        return []
    names = sorted(os.listdir(out_dir))
    return [n for n in names if n in RESULT_FILES or (RANK_DIR.match(n) and os.path.isdir(os.path.join(out_dir, n)))]


def plan_run(out_dir, resume=None, overwrite=False):
    """Decide what the run does with ``out_dir``; ValueError (one line) when it must not touch it."""
    results = run_results(out_dir)
    shown = ", ".join(results[:4]) + (f" and {len(results) - 4} more" if len(results) > 4 else "")
    if resume == "auto":
        path = os.path.join(out_dir, RESUME_FILE)
        if os.path.isfile(path):
            return RunPlan(resume_path=path)
        if results and not overwrite:
            raise ValueError(f"resume=auto: {out_dir} holds a run ({shown}) but no {RESUME_FILE} to continue from; "
                             f"pass overwrite=true to replace it, or choose another output_dir")
        return RunPlan(clear=bool(results),
                       notes=[f"resume=auto: no {RESUME_FILE} in {out_dir}: starting a new run"])
    if resume:
        if not os.path.isfile(resume):
            raise ValueError(f"key 'resume': resume state '{resume}' does not exist (pass a {RESUME_FILE} written by "
                             f"train.py, or resume=auto)")
        return RunPlan(resume_path=resume)
    if results and not overwrite:
        raise ValueError(f"output_dir {out_dir} already holds a run ({shown}); continue it with resume=auto, "
                         f"replace it with overwrite=true, or choose another output_dir")
    return RunPlan(clear=bool(results), notes=[f"overwrite=true: replacing the run in {out_dir}"] if results else [])


def clear_run(out_dir):
    """Remove what a previous run wrote in ``out_dir`` (its files and rank_N folders), nothing else."""
    if not os.path.isdir(out_dir):
        return
    for name in os.listdir(out_dir):
        path = os.path.join(out_dir, name)
        if name in RUN_FILES and os.path.isfile(path):
            os.remove(path)
        elif RANK_DIR.match(name) and os.path.isdir(path):
            shutil.rmtree(path)
    remove_partial_files(out_dir)
