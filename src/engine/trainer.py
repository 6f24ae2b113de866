"""The training loop: epochs of fused steps, evaluation, checkpoints, resume points, NaN guard.

The loop never reads a device value per step: ``StepStats`` sums the loss terms and overflows on the
device, and the loop reads them every ``log_interval`` steps, at resume points and at epoch ends. It
reports progress through a callback (``on_event(kind, info)``) and never prints; train.py owns the
terminal and the log files.

A resume state (``resume.ckpt``) holds the student, branches, optimizer state, EMA, loss scale, the
position (epoch and step within it), the best accuracies, the history and the config it was made
with. Continuing from it replays the same samples and augmentation draws (the data pipeline of an
epoch depends only on the seed and the epoch; a mid-epoch position skips the batches already used),
and recomputes the learning-rate schedule from the current config, so a changed ``lr``, ``min_lr``,
``warmup_*``, ``decay_*``, ``lr_per_epoch`` or a larger ``epochs`` applies from the resumed step on.
"""
import json
import os
import random
import time

import numpy as np

import mindspore as ms
import mindspore.dataset as ds

from src.checkpoint import load_into, read_checkpoint, save_atomic
from src.data import create_dataset, load_source
from src.files import write_json_atomic
from src.teacher.source import build_teacher_source

from .builders import apply_amp, build_run_distiller, build_student, build_train_step, load_student_checkpoint
from .evaluate import EvaluationStopped, Evaluator
from .run_dir import RESUME_FILE
from .step_stats import StepStats

# Keys a resume state cannot follow: they change parameter shapes, the optimizer's state or what a
# step position means.
FIXED_ON_RESUME = ("student", "teacher", "distiller", "stages", "num_classes", "batch_size", "image_size",
                   "in_channels", "opt", "ema")
NOT_COMPARED = ("resume", "overwrite", "output_dir")
# Not part of a resume state: the schedule is recomputed from the current config.
SCHEDULE_PARAMS = ("learning_rate",)
METRICS_FILE = "metrics.json"


def student_params(student, prefix="student."):
    """The student's parameters under their stand-alone names (no 'student.' prefix)."""
    out = []
    for p in student.get_parameters():
        name = p.name[len(prefix):] if p.name.startswith(prefix) else p.name
        out.append({"name": name, "data": p})
    return out


def ema_params(step, prefix="ema.student."):
    return [{"name": p.name[len(prefix):], "data": p} for p in step.ema_weights]


class RunInterrupted(Exception):
    """``fit()`` stopped because ``should_stop`` asked; ``saved`` is the resume state written, or None."""

    def __init__(self, epoch, step, steps, saved):
        self.epoch, self.step, self.steps, self.saved = epoch, step, steps, saved
        where = f"epoch {epoch + 1} step {step}/{steps}"
        super().__init__(f"stopped at {where}" + (f"; resume point saved to {saved}" if saved else
                                                  "; nothing was saved"))


def read_resume_info(path):
    """``{"epoch", "step", "best_top1", "run_id"}`` of a resume state, without building anything
    (``run_id`` None: a state from before run ids)."""
    params = read_checkpoint(path)
    if "epoch" not in params:
        raise ValueError(f"checkpoint '{path}' is not a resume state (no 'epoch' entry); pass a {RESUME_FILE} "
                         f"written by train.py")
    run_id = str(params["meta.run_id"]) if "meta.run_id" in params else None
    return {"epoch": int(params["epoch"].asnumpy()), "step": int(params["step"].asnumpy()) if "step" in params else 0,
            "best_top1": float(params["best_top1"].asnumpy()) if "best_top1" in params else -1.0,
            "run_id": run_id or None}


def read_resume_point(path):
    """``(epoch, step, best_top1)`` of a resume state, without building anything."""
    info = read_resume_info(path)
    return info["epoch"], info["step"], info["best_top1"]


def momentum_state_as_sgd(params, names):
    """A resume state of the former ``sgd`` (``nn.Momentum``: ``moments.*``) in ``nn.SGD``'s names.

    Both keep ``buf = momentum * buf + g``, so the buffers carry over as they are; ``stat.*`` (1 = no step
    taken yet) is 0 for a state that has stepped.
    """
    if not any(k.startswith("moments.") for k in params) or not any(n.startswith("accum.") for n in names):
        return params
    out = {}
    for key, value in params.items():
        if key.startswith("moments."):
            name = "accum." + key[len("moments."):]
            out[name] = ms.Parameter(value.asnumpy(), name=name)
            stat = "stat." + key[len("moments."):]
            out[stat] = ms.Parameter(np.zeros(value.shape, np.float32), name=stat)
        else:
            out[key] = value
    return out


def _same(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


class Trainer:
    """Owns one run. ``fit()`` trains up to ``cfg.epochs`` epochs, continuing a resume state when asked.

    ``should_stop()`` is polled after every step (at log points in data-parallel runs, where every rank
    must stop at the same step): when it turns true, ``fit()`` saves a resume point at that step and
    raises ``RunInterrupted``.
    """

    def __init__(self, cfg, rank=0, group_size=1, on_event=None, should_stop=None, run_id=None):
        self.cfg = cfg
        self.run_id = run_id  # recorded in every resume state: the run folder it belongs to (src/engine/run_dir.py)
        self.rank, self.group_size = rank, group_size
        self.is_main = rank == 0
        self.on_event = on_event or (lambda kind, info: None)
        self.should_stop = should_stop or (lambda: False)
        self.out_dir = cfg.output_dir

        self.student = build_student(cfg)
        load_student_checkpoint(cfg, self.student, resuming=bool(cfg.resume))
        # built once: the distiller runs its model (if any), the train pipeline replays its cache (if any)
        self.teacher = build_teacher_source(cfg) if cfg.distiller != "none" else None
        self.distiller = build_run_distiller(cfg, self.student, self.teacher)
        self._replay = self.teacher.replay(self.distiller.teacher_outputs) if self.teacher is not None else None
        self.term_names = tuple(self.distiller.term_names)
        self.precision = apply_amp(cfg, self.distiller)
        self.eval_net = build_student(cfg)
        self.evaluator = Evaluator(self.eval_net, cfg.num_classes)

        self._sources = {}
        probe = self._dataset("train", 0)
        self.steps_per_epoch = probe.get_dataset_size()
        if self.steps_per_epoch < 1:
            raise ValueError(f"the train split has fewer samples than one batch of {cfg.batch_size} "
                             f"per device; lower batch_size")
        self.step, self.lrs = build_train_step(cfg, self.distiller, self.steps_per_epoch)
        self.stats = StepStats(self.step, self.term_names,
                               stop_on_overflow=self.precision.loss_scale_type != "dynamic")
        self.stats.set_train(True)
        self.epoch, self.step_in_epoch = 0, 0  # where training continues
        self.best = {"top1": -1.0, "ema_top1": -1.0}
        self.history = []
        self.last_resume_point = None
        self.partial_sums = None  # the loss sums of a resumed epoch's steps before the resume point
        if cfg.resume:
            self._load_resume(os.path.join(self.out_dir, RESUME_FILE) if cfg.resume == "auto" else cfg.resume)

    @property
    def finished(self):
        return self.epoch >= self.cfg.epochs

    @property
    def total_steps(self):
        return self.cfg.epochs * self.steps_per_epoch

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
                                  source=self._sources[split], replay=self._replay)
        return create_dataset(self.cfg, split, source=self._sources[split])

    def _batches(self, epoch, start):
        """Batches (lists of column tensors) of ``epoch`` from step ``start`` on. Skipped batches still
        pass through the pipeline, so the augmentation draws of the rest are those of an uninterrupted run."""
        data = self._dataset("train", epoch)
        if start:
            data = data.skip(start)
        return data.create_tuple_iterator(num_epochs=1)

    # checkpoints ----------------------------------------------------------------------------------
    def resume_params(self):
        """Everything a continued run needs except the teacher and the schedule: student, branches,
        optimizer state and step counter, EMA, loss scale."""
        return [p for p in self.step.get_parameters()
                if not p.name.startswith("teacher.") and p.name not in SCHEDULE_PARAMS]

    def _load_resume(self, path):
        cfg = self.cfg
        params = read_checkpoint(path)
        if "epoch" not in params:
            raise ValueError(f"checkpoint '{path}' is not a resume state (no 'epoch' entry); "
                             f"pass a {RESUME_FILE} written by train.py")
        epoch = int(params.pop("epoch").asnumpy())
        step = int(params.pop("step").asnumpy()) if "step" in params else 0
        best = {k: float(params.pop(k).asnumpy()) for k in ("best_top1", "best_ema_top1") if k in params}
        meta = {k[len("meta."):]: params.pop(k) for k in [k for k in params if k.startswith("meta.")]}
        saved_cfg = json.loads(meta["config"]) if "config" in meta else {}
        changed = self._compare_config(path, saved_cfg)
        world = int(meta["world_size"].asnumpy()) if "world_size" in meta else self.group_size
        if world != self.group_size:
            raise ValueError(f"resume state '{path}' was made on {world} device(s); this run has {self.group_size} "
                             f"(the world size cannot change on resume)")
        saved_steps = int(meta["steps_per_epoch"].asnumpy()) if "steps_per_epoch" in meta else self.steps_per_epoch
        if saved_steps != self.steps_per_epoch:
            raise ValueError(f"resume state '{path}' was made with {saved_steps} steps per epoch; the train split now "
                             f"gives {self.steps_per_epoch} (the data, train_subset or dataset changed)")
        if epoch > cfg.epochs or (epoch == cfg.epochs and step > 0):
            raise ValueError(f"key 'epochs': the resume state '{path}' is at epoch {epoch} step {step}, beyond "
                             f"epochs={cfg.epochs}; epochs can grow on resume, not shrink below what is done")
        for name in SCHEDULE_PARAMS:
            params.pop(name, None)
        names = {p.name for p in self.resume_params()}
        params = momentum_state_as_sgd(params, names)
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
        self.epoch, self.step_in_epoch = epoch, step
        self.best["top1"] = best.get("best_top1", -1.0)
        self.best["ema_top1"] = best.get("best_ema_top1", -1.0)
        self.history = [r for r in json.loads(meta["history"]) if r.get("epoch", 0) <= epoch] \
            if "history" in meta else []
        # states from before these sums: the epoch's train_loss covers the steps after the resume point only
        self.partial_sums = json.loads(str(meta["epoch_sums"])) if step and "epoch_sums" in meta else None
        self.last_resume_point = path
        self.on_event("resumed", {"path": path, "epoch": epoch, "step": step, "steps": self.steps_per_epoch,
                                  "changed": changed, "finished": self.finished})

    def _compare_config(self, path, saved):
        """``[(key, saved value, current value)]`` of the keys that changed; ValueError for a fixed key."""
        changed = []
        for name, value in self.cfg.to_dict().items():
            if name in NOT_COMPARED or name not in saved or _same(saved[name], value):
                continue
            if name in FIXED_ON_RESUME:
                raise ValueError(f"key '{name}': the resume state '{path}' was made with {name}={saved[name]!r}, "
                                 f"this run has {name}={value!r}; it cannot change on resume (set it back, or start "
                                 f"a new run)")
            changed.append((name, saved[name], value))
        return changed

    def _save(self, name, params, extra=None):
        if self.is_main:
            return save_atomic(params, os.path.join(self.out_dir, name), append_dict=extra)
        return None

    def _save_resume(self, epoch, step, sums=None):
        """A resume point: ``step`` steps of epoch ``epoch`` (0-based) are done (``step == steps_per_epoch``:
        the epoch's evaluation and checkpoints are still to do); ``sums``: the epoch's loss sums so far, so
        that a continued epoch reports the train loss of all its steps."""
        extra = {"epoch": int(epoch), "step": int(step), "best_top1": float(self.best["top1"]),
                 "best_ema_top1": float(self.best["ema_top1"]),
                 "meta.config": json.dumps(self.cfg.to_dict()), "meta.world_size": int(self.group_size),
                 "meta.steps_per_epoch": int(self.steps_per_epoch), "meta.history": json.dumps(self.history),
                 "meta.run_id": str(self.run_id or "")}
        if step and sums is not None:
            extra["meta.epoch_sums"] = json.dumps(sums)
        path = self._save(RESUME_FILE, self.resume_params(), extra)
        if path:
            self.last_resume_point = f"{path} (epoch {epoch + 1} step {step}/{self.steps_per_epoch})" if step \
                else f"{path} (end of epoch {epoch})"
        return path or os.path.join(self.out_dir, RESUME_FILE)

    def _write_metrics(self):
        if self.is_main:
            write_json_atomic(os.path.join(self.out_dir, METRICS_FILE),
                              {"history": self.history, "best_top1": self.best["top1"],
                               "epochs": self.cfg.epochs, "finished": self.finished, "run_id": self.run_id})

    # evaluation -----------------------------------------------------------------------------------
    def evaluate(self, params, should_stop=None):
        load_into(self.eval_net, {d["name"]: d["data"] for d in params}, "the running student", "student")
        return self.evaluator(self._dataset("val", 0), should_stop)

    # loop -----------------------------------------------------------------------------------------
    def _stop_requested(self, at_log_point):
        if self.group_size == 1:
            return bool(self.should_stop())
        if not at_log_point:  # ranks agree at log points only: all must stop after the same step
            return False
        from mindspore import Tensor, ops

        flag = Tensor(np.array([1.0 if self.should_stop() else 0.0], np.float32))
        return bool(ops.AllReduce()(flag).asnumpy()[0] > 0)  # a sum: CPU collectives offer no max

    def fit(self):
        """Train to ``cfg.epochs``; returns the history (one record per epoch, also of earlier processes)."""
        if self._stop_requested(True):
            raise RunInterrupted(self.epoch, self.step_in_epoch, self.steps_per_epoch, None)
        while not self.finished:
            self._run_epoch(self.epoch, self.step_in_epoch)
        return self.history

    def _read(self, epoch, first, done, t_interval, sums, log):
        """Read the device sums of steps ``first+1 .. done`` of ``epoch``; stop on a non-finite step."""
        stats = self.stats.read()
        if stats["bad"] is not None:
            raise FloatingPointError(self._nonfinite_message(epoch, first + stats["bad"]["index"], stats["bad"]))
        steps = max(stats["steps"], 1)
        sums["steps"] += stats["steps"]
        sums["loss"] += stats["loss_sum"]
        sums["overflows"] += stats["overflows"]
        if log:
            lr_index = min(max(stats["optimizer_step"] - 1, 0), len(self.lrs) - 1)
            elapsed = time.time() - t_interval
            self.on_event("step", {
                "epoch": epoch + 1, "epochs": self.cfg.epochs, "step": done, "steps": self.steps_per_epoch,
                "global_step": epoch * self.steps_per_epoch + done, "total_steps": self.total_steps,
                "loss": stats["loss_sum"] / steps, "terms": {k: v / steps for k, v in stats["term_sums"].items()},
                "lr": self.lrs[lr_index], "overflows": stats["overflows"], "scale": stats["scale"],
                "interval_steps": stats["steps"], "interval_time": elapsed,
            })

    def _nonfinite_message(self, epoch, step, bad):
        global_step = epoch * self.steps_per_epoch + step
        values = " ".join(f"{n}={v:.4g}" for n, v in bad["terms"].items())
        what = "loss" if not np.isfinite(bad["loss"]) else "gradients"
        lr = self.lrs[min(bad["lr_index"], len(self.lrs) - 1)]
        kept = (f"the last resume point {self.last_resume_point} is intact" if self.last_resume_point
                else "nothing of this run was saved")
        return (f"non-finite {what} at epoch {epoch + 1} step {step} (global step {global_step}): "
                f"loss={bad['loss']:.4g} ({values}), lr={lr:.3g}; nothing was saved after it and {kept}. "
                f"Lower lr, set clip_grad, or check the teacher checkpoint, then continue with resume=auto.")

    def _run_epoch(self, epoch, start):
        cfg = self.cfg
        spe = self.steps_per_epoch
        log_every = max(int(cfg.log_interval), 1)
        save_every = int(cfg.save_every_steps)
        sums = {"steps": 0, "loss": 0.0, "overflows": 0}
        if start and self.partial_sums:  # the steps before the resume point, summed by the process that ran them
            sums.update({k: self.partial_sums[k] for k in sums if k in self.partial_sums})
        self.partial_sums = None
        t_epoch = t_interval = time.time()
        seen = 0
        first = start
        done = start
        if start < spe:
            for done, columns in enumerate(self._batches(epoch, start), start + 1):
                self.stats(*columns)
                seen += columns[0].shape[0] * self.group_size
                global_step = epoch * spe + done
                self.on_event("tick", {"epoch": epoch + 1, "epochs": cfg.epochs, "step": done, "steps": spe,
                                       "global_step": global_step, "total_steps": self.total_steps,
                                       "images": seen, "epoch_time": time.time() - t_epoch})
                at_log = done % log_every == 0 or done == spe
                at_save = save_every > 0 and global_step % save_every == 0 and done < spe
                stop = self._stop_requested(at_log)
                if at_log or at_save or stop:
                    self._read(epoch, first, done, t_interval, sums, log=at_log)
                    first, t_interval = done, time.time()
                if at_save or stop:
                    saved = self._save_resume(epoch, done, sums)
                    if stop:
                        raise RunInterrupted(epoch, done, spe, saved)
                if done >= spe:
                    break
            if done > first:  # a pipeline that ended early: read its last steps before the epoch closes
                self._read(epoch, first, done, t_interval, sums, log=True)
        elapsed = time.time() - t_epoch
        record = {"epoch": epoch + 1, "epoch_time": elapsed}
        if sums["steps"]:
            record.update(train_loss=sums["loss"] / sums["steps"], images_per_s=seen / max(elapsed, 1e-9))
        if sums["overflows"]:
            record["overflow_steps"] = sums["overflows"]
        is_last = epoch + 1 == cfg.epochs
        # Only rank 0 evaluates (the whole val split); the others wait for it at the next gradient all-reduce.
        if self.is_main and ((cfg.val_every > 0 and (epoch + 1) % cfg.val_every == 0) or is_last):
            try:
                record.update(self._evaluate_and_keep(epoch))
            except EvaluationStopped:
                raise RunInterrupted(epoch, spe, spe, self._save_resume(epoch, spe, sums)) from None
        self._save("last.ckpt", student_params(self.student))
        if cfg.rank_checkpoints:
            save_atomic(student_params(self.student), os.path.join(self.out_dir, f"rank_{self.rank}", "last.ckpt"))
        if self.step.ema:
            self._save("last_ema.ckpt", ema_params(self.step))
        self.history.append(record)
        self._save_resume(epoch + 1, 0)
        self.epoch, self.step_in_epoch = epoch + 1, 0
        self._write_metrics()
        self.on_event("epoch", record)

    def _evaluate_and_keep(self, epoch):
        out = {}
        # with several ranks only rank 0 evaluates, so it must not stop on its own in the middle
        should_stop = self.should_stop if self.group_size == 1 else None
        metrics = self.evaluate(student_params(self.student), should_stop)
        out.update({f"val_{k}": v for k, v in metrics.items()})
        if metrics["top1"] > self.best["top1"]:
            self.best["top1"] = metrics["top1"]
            self._save("best.ckpt", student_params(self.student))
        if self.step.ema:
            ema_metrics = self.evaluate(ema_params(self.step), should_stop)
            out.update({f"val_ema_{k}": v for k, v in ema_metrics.items()})
            if ema_metrics["top1"] > self.best["ema_top1"]:
                self.best["ema_top1"] = ema_metrics["top1"]
                self._save("best_ema.ckpt", ema_params(self.step))
        out["best_top1"] = self.best["top1"]
        return out
