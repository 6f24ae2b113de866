"""The training loop: epochs of fused steps, evaluation, checkpoints, resume, NaN guard.

It reports progress through a callback (``on_event(kind, info)``) and never prints; train.py owns
the terminal and the log files.
"""
import math
import os
import random
import time

import numpy as np

import mindspore as ms
import mindspore.dataset as ds

from src.data import create_dataset, load_source

from .builders import apply_amp, build_run_distiller, build_student, build_teacher, build_train_step
from .checkpoint import load_into, read_checkpoint, save_atomic
from .evaluate import evaluate

RESUME_FILE = "resume.ckpt"


def student_params(student, prefix="student."):
    """The student's parameters under their stand-alone names (no 'student.' prefix)."""
    out = []
    for p in student.get_parameters():
        name = p.name[len(prefix):] if p.name.startswith(prefix) else p.name
        out.append({"name": name, "data": p})
    return out


def ema_params(step, prefix="ema.student."):
    return [{"name": p.name[len(prefix):], "data": p} for p in step.ema_weights]


class Trainer:
    """Owns one run. ``fit()`` trains ``cfg.epochs`` epochs (continuing a resume state when asked)."""

    def __init__(self, cfg, rank=0, group_size=1, on_event=None):
        self.cfg = cfg
        self.rank, self.group_size = rank, group_size
        self.is_main = rank == 0
        self.on_event = on_event or (lambda kind, info: None)
        self.out_dir = cfg.output_dir

        self.student = build_student(cfg)
        self.teacher = build_teacher(cfg) if cfg.distiller != "none" else None
        self.distiller = build_run_distiller(cfg, self.student, self.teacher)
        self.term_names = tuple(self.distiller.term_names)
        apply_amp(cfg, self.distiller)
        self.eval_net = build_student(cfg)

        self._sources = {}
        probe = self._dataset("train", 0)
        self.steps_per_epoch = probe.get_dataset_size()
        if self.steps_per_epoch < 1:
            raise ValueError(f"the train split has fewer samples than one batch of {cfg.batch_size} "
                             f"per device; lower batch_size")
        self.step, self.lrs = build_train_step(cfg, self.distiller, self.steps_per_epoch)
        self.step.set_train(True)
        self.start_epoch = 0
        self.best = {"top1": -1.0, "ema_top1": -1.0}
        if cfg.resume:
            self._load_resume(cfg.resume)

    # data -----------------------------------------------------------------------------------------
    def _dataset(self, split, epoch):
        """The split's pipeline as it is at ``epoch``: the same samples, order and augmentation seeds
        whether or not the run was resumed. Evaluation always reads the whole val split (on rank 0)."""
        seed = int(self.cfg.seed) + epoch
        ds.config.set_seed(seed)
        np.random.seed(seed)
        random.seed(seed)  # mindcv's RandAugment and Mixup draw from Python's and NumPy's generators
        if split not in self._sources:  # reading files is the slow part: once per run
            self._sources[split] = load_source(self.cfg, split)
        if split == "train":
            return create_dataset(self.cfg, split, rank=self.rank, group_size=self.group_size, start_epoch=epoch,
                                  source=self._sources[split], teacher_outputs=self.distiller.teacher_outputs)
        return create_dataset(self.cfg, split, source=self._sources[split])

    # checkpoints ----------------------------------------------------------------------------------
    def resume_params(self):
        """Everything a continued run needs except the teacher: student, branches, optimizer, EMA, scale."""
        return [p for p in self.step.get_parameters() if not p.name.startswith("teacher.")]

    def _load_resume(self, path):
        if path == "auto":
            path = os.path.join(self.out_dir, RESUME_FILE)
        params = read_checkpoint(path)
        epoch = int(params.pop("epoch").asnumpy()) if "epoch" in params else None
        best = {k: float(params.pop(k).asnumpy()) for k in ("best_top1", "best_ema_top1") if k in params}
        if epoch is None:
            raise ValueError(f"checkpoint '{path}' is not a resume state (no 'epoch' entry); "
                             f"pass a {RESUME_FILE} written by train.py")
        names = {p.name for p in self.resume_params()}
        state = {k: v for k, v in params.items() if k in names}
        unexpected = [k for k in params if k not in names]
        missing = [k for k in names if k not in state]
        if missing or unexpected:
            raise ValueError(f"resume state '{path}' does not match this run's config: "
                             f"missing {missing[:3]}, unexpected {unexpected[:3]}")
        for p in self.resume_params():
            if tuple(state[p.name].shape) != tuple(p.shape):
                raise ValueError(f"resume state '{path}': '{p.name}' has shape {tuple(state[p.name].shape)}, "
                                 f"this run expects {tuple(p.shape)}")
        ms.load_param_into_net(self.step, state, strict_load=False)
        self.start_epoch = epoch
        self.best["top1"] = best.get("best_top1", -1.0)
        self.best["ema_top1"] = best.get("best_ema_top1", -1.0)
        self.on_event("resumed", {"path": path, "epoch": epoch})

    def _save(self, name, params, extra=None):
        if self.is_main:
            return save_atomic(params, os.path.join(self.out_dir, name), append_dict=extra)
        return None

    # evaluation -----------------------------------------------------------------------------------
    def evaluate(self, params):
        load_into(self.eval_net, {d["name"]: d["data"] for d in params}, "the running student", "student")
        return evaluate(self.eval_net, self._dataset("val", 0))

    # loop -----------------------------------------------------------------------------------------
    def fit(self):
        cfg = self.cfg
        total_steps = cfg.epochs * self.steps_per_epoch
        history = []
        for epoch in range(self.start_epoch, cfg.epochs):
            data = self._dataset("train", epoch)
            t_epoch = time.time()
            seen = 0
            for i, columns in enumerate(data.create_tuple_iterator(num_epochs=1)):
                t0 = time.time()
                loss, terms, overflow, scale = self.step(*columns)  # image, label (, cached teacher outputs)
                loss_v = float(loss.asnumpy())
                global_step = epoch * self.steps_per_epoch + i
                overflowed = bool(overflow.asnumpy())
                # Without dynamic loss scaling a non-finite gradient is divergence, not a scale to lower.
                if not math.isfinite(loss_v) or (overflowed and cfg.loss_scale_type != "dynamic"):
                    values = " ".join(f"{n}={v:.4g}" for n, v in zip(self.term_names, terms.asnumpy().tolist()))
                    what = "loss" if not math.isfinite(loss_v) else "gradients"
                    raise FloatingPointError(
                        f"non-finite {what} at epoch {epoch + 1} step {i + 1} (global step {global_step + 1}): "
                        f"loss={loss_v:.4g} ({values}), "
                        f"lr={self.lrs[global_step]:.3g}. Nothing was saved after the last good epoch in "
                        f"{self.out_dir}. Lower lr, set clip_grad, or check the teacher checkpoint.")
                seen += columns[0].shape[0] * self.group_size
                self.on_event("step", {
                    "epoch": epoch + 1, "epochs": cfg.epochs, "step": i + 1, "steps": self.steps_per_epoch,
                    "global_step": global_step + 1, "total_steps": total_steps, "loss": loss_v,
                    "terms": dict(zip(self.term_names, terms.asnumpy().tolist())), "lr": self.lrs[global_step],
                    "overflow": overflowed, "scale": float(scale.asnumpy()),
                    "step_time": time.time() - t0, "epoch_time": time.time() - t_epoch, "images": seen,
                })
            record = {"epoch": epoch + 1, "epoch_time": time.time() - t_epoch,
                      "images_per_s": seen / max(time.time() - t_epoch, 1e-9)}
            is_last = epoch + 1 == cfg.epochs
            # Only rank 0 evaluates (the whole val split); the others wait for it at the next gradient all-reduce.
            if self.is_main and ((cfg.val_every > 0 and (epoch + 1) % cfg.val_every == 0) or is_last):
                record.update(self._evaluate_and_keep(epoch))
            self._save("last.ckpt", student_params(self.student))
            if cfg.rank_checkpoints:
                save_atomic(student_params(self.student),
                            os.path.join(self.out_dir, f"rank_{self.rank}", "last.ckpt"))
            if self.step.ema:
                self._save("last_ema.ckpt", ema_params(self.step))
            self._save(RESUME_FILE, self.resume_params(),
                       {"epoch": epoch + 1, "best_top1": float(self.best["top1"]),
                        "best_ema_top1": float(self.best["ema_top1"])})
            history.append(record)
            self.on_event("epoch", record)
        return history

    def _evaluate_and_keep(self, epoch):
        out = {}
        metrics = self.evaluate(student_params(self.student))
        out.update({f"val_{k}": v for k, v in metrics.items()})
        if metrics["top1"] > self.best["top1"]:
            self.best["top1"] = metrics["top1"]
            self._save("best.ckpt", student_params(self.student))
        if self.step.ema:
            ema_metrics = self.evaluate(ema_params(self.step))
            out.update({f"val_ema_{k}": v for k, v in ema_metrics.items()})
            if ema_metrics["top1"] > self.best["ema_top1"]:
                self.best["ema_top1"] = ema_metrics["top1"]
                self._save("best_ema.ckpt", ema_params(self.step))
        out["best_top1"] = self.best["top1"]
        return out
