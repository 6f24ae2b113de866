"""Train a student with OFA-KD (or KD / DIST / DKD, or alone with ``distiller=none``).

    python train.py --config configs/fashion_mnist/ofa_vit_from_resnet10.yaml [key=value ...]
    python train.py --config outputs/fashion_mnist/ofa_vit_p4_pico/config.yaml resume=auto   # continue a run

Writes to ``output_dir``: config.yaml (the resolved config), train.log, last.ckpt / best.ckpt (the
student alone), resume.ckpt (student + branches + optimizer + EMA + position) and metrics.json. A
folder that already holds a run is refused unless the run is continued (``resume=auto``) or replaced
(``overwrite=true``); nothing in it is written before the models, the teacher checkpoint, the data
and the resume state have been checked. Ctrl-C (or SIGTERM) stops after the current step and saves a
resume point there.
"""
import src  # noqa: F401  (sets ONEDNN_MAX_CPU_ISA before MindSpore runs an op)

import logging
import os
import signal
import sys
import threading
import time
import traceback

from src.config import build_arg_parser, config_from_args, save_config
from src.logs import attach_log_file, check_log_file, count, log_file_only, setup_logging
from src.mindspore_process import exit_entry_point, exit_quietly, runtime_error_message, send_compile_reports_to

log = logging.getLogger("train")

EXAMPLES = """examples:
  python train.py --config configs/fashion_mnist/teacher_resnet10.yaml epochs=1
  python train.py --config configs/fashion_mnist/ofa_vit_from_resnet10.yaml lr=1e-3 save_every_steps=200
  python train.py --config outputs/fashion_mnist/ofa_vit_p4_pico/config.yaml resume=auto epochs=5"""
SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
_LOCK = {"held": None}  # the run's lock on its output folder, released on every way out


class StopRequest:
    """The first SIGINT/SIGTERM asks the loop to stop after the current step; a second one stops at once.

    MindSpore installs its own SIGINT handler whenever it runs a graph (it ends the process), so the
    signals are not handled at all: they are blocked before MindSpore starts its threads (which inherit
    the mask) and a watcher thread takes them with ``sigwait``.
    """

    def __init__(self):
        self.signum = None

    def install(self):
        signal.pthread_sigmask(signal.SIG_BLOCK, set(SIGNAL_NAMES))
        threading.Thread(target=self._watch, name="stop-request", daemon=True).start()

    def _watch(self):
        while True:
            signum = signal.sigwait(set(SIGNAL_NAMES))
            if self.signum is None:
                self.signum = signum
                log.warning("%s: stopping after the current step and saving a resume point (again to stop at once)",
                            SIGNAL_NAMES[signum])
                continue
            _fail(f"stopped at once ({SIGNAL_NAMES[signum]} twice); the last saved resume point, if any, is intact",
                  0)
            if _LOCK["held"] is not None:
                _LOCK["held"].release()
            exit_quietly(128 + signum)  # partial files of an interrupted save are removed by the next run

    def __call__(self):
        return self.signum is not None

    @property
    def exit_code(self):
        return 128 + int(self.signum or signal.SIGINT)


class Progress:
    """A redrawn line per step on a terminal; a log line every ``log_interval`` steps and per epoch.

    The ETA comes from the steps this process ran after its first one (which includes the graph
    compile), so it is right after a resume too.
    """

    def __init__(self, is_main, clock=time.time):
        self.is_main = is_main
        self.tty = is_main and sys.stderr.isatty()
        self.clock = clock
        self.first = None  # (time, global step) after this process's first step

    def eta(self, global_step, total_steps):
        """Seconds left, or None before the second step of this process."""
        now = self.clock()
        if self.first is None:
            self.first = (now, global_step)
            return None
        t0, g0 = self.first
        if global_step <= g0:
            return None
        return (now - t0) / (global_step - g0) * (total_steps - global_step)

    @staticmethod
    def _eta_text(seconds):
        if seconds is None:
            return "eta ?"
        return f"eta {seconds / 60:.1f} min" if seconds < 6000 else f"eta {seconds / 3600:.1f} h"

    def __call__(self, kind, info):
        if not self.is_main:
            return
        check_log_file()  # a log that can no longer be written ends the run here, in one line
        if kind == "tick":
            self._tick(info)
        elif kind == "step":
            self._step(info)
        elif kind == "epoch":
            if self.tty:
                sys.stderr.write("\n")
            parts = [f"epoch {info['epoch']} done in {info['epoch_time']:.1f}s"]
            if "images_per_s" in info:
                parts[0] += f" ({info['images_per_s']:.1f} img/s, train loss {info['train_loss']:.4f})"
            if "val_top1" in info:
                parts.append(f"val top1 {info['val_top1']:.2f} top5 {info['val_top5']:.2f} "
                             f"loss {info['val_loss']:.4f} (best {info['best_top1']:.2f})")
            if "val_ema_top1" in info:
                parts.append(f"ema top1 {info['val_ema_top1']:.2f}")
            log.info("; ".join(parts))
        elif kind == "resumed":
            where = f"epoch {info['epoch'] + 1} step {info['step']}/{info['steps']}" if info["step"] \
                else f"the end of epoch {info['epoch']}"
            log.info("resuming %s from %s", info["path"], where)
            for key, old, new in info["changed"]:
                log.info("changed since the resume state: %s %r -> %r", key, old, new)

    def _tick(self, info):
        self.last_eta = self.eta(info["global_step"], info["total_steps"])
        if self.tty:
            speed = info["images"] / max(info["epoch_time"], 1e-9)
            text = (f"epoch {info['epoch']}/{info['epochs']} step {info['step']}/{info['steps']} "
                    f"{speed:.1f} img/s {self._eta_text(self.last_eta)}")
            sys.stderr.write("\r" + text[:200].ljust(100))
            sys.stderr.flush()

    def _step(self, info):
        terms = " ".join(f"{name} {value:.4f}" for name, value in info["terms"].items())
        text = (f"epoch {info['epoch']}/{info['epochs']} step {info['step']}/{info['steps']} "
                f"loss {info['loss']:.4f} ({terms}) lr {info['lr']:.3g} "
                f"{self._eta_text(getattr(self, 'last_eta', None))}")
        if info["overflows"]:
            text += f" [{info['overflows']} overflowing step(s) skipped, loss scale now {info['scale']:g}]"
        if self.tty:
            sys.stderr.write("\n")
        log.info(text)


def _describe_run(cfg, group_size):
    who = f"student {cfg.student} trained alone (distiller none)" if cfg.distiller == "none" else \
        f"student {cfg.student}, teacher {cfg.teacher}, distiller {cfg.distiller}"
    return f"{who}, {group_size} {cfg.device_target} device(s), output {cfg.output_dir}"


def _fail(message, code=2):
    line = f"error: {message}"
    log_file_only(line)  # every fatal error is also the last line of train.log (once the run has one)
    print(line, file=sys.stderr)
    return code


def main(argv=None):
    parser = build_arg_parser("Train a student with OFA-KD (or KD/DIST/DKD, or alone with distiller=none).",
                              epilog=EXAMPLES)
    try:
        _, cfg = config_from_args(sys.argv[1:] if argv is None else argv, parser)
    except ValueError as exc:
        return _fail(exc)
    stop = StopRequest()
    stop.install()  # before MindSpore starts (see StopRequest)
    return train(cfg, stop)


def train(cfg, stop):
    """Run (or continue) the training run of ``cfg``; returns the exit code."""
    from src.engine.builders import setup_context
    from src.mindspore_process import launched_distributed
    from src.engine.run_dir import (RunLock, check_not_in_use, clear_run, plan_run, record_run_identity,
                                    stale_lock_note)
    from src.engine.trainer import RunInterrupted, Trainer, read_resume_info
    from src.files import remove_partial_files

    lock = None
    try:
        distributed = bool(cfg.distribute or launched_distributed())
        if not distributed:  # another process training into this folder: refused before anything is built
            check_not_in_use(cfg.output_dir)
        infos = {}

        def state_run_id(path):
            infos.setdefault(path, read_resume_info(path))
            return infos[path]["run_id"]

        plan = plan_run(cfg.output_dir, cfg.resume, cfg.overwrite, state_run_id)
        if plan.resume_path:
            state_run_id(plan.resume_path)
            epoch, step, best = (infos[plan.resume_path][k] for k in ("epoch", "step", "best_top1"))
            if epoch == cfg.epochs and step == 0:
                print(f"the run in {cfg.output_dir} is finished (epoch {epoch} of {epoch} done, best "
                      f"val top-1 "
                      f"{best:.2f}); nothing to do. To train it longer: resume=auto epochs=N (N > {epoch})",
                      file=sys.stderr)
                return 0
        else:
            cfg.resume = None
        requested_device = cfg.device_target
        rank, group_size = setup_context(cfg, distributed=cfg.distribute or None)
        is_main = rank == 0
        if distributed and is_main:  # (the other ranks would find rank 0's lock once it holds it)
            check_not_in_use(cfg.output_dir)
        setup_logging(None, rank)  # the log file is attached once everything below has been checked
        for note in plan.notes:
            log.info(note)
        log.info(_describe_run(cfg, group_size))
        if requested_device == "auto":
            from src.device import usable_backends

            log.info("device_target auto: %s (this MindSpore can use %s)", cfg.device_target,
                     ", ".join(usable_backends()))
        if cfg.device_target == "CPU" and group_size > 1 and cfg.distiller != "none" and not cfg.teacher_cache:
            log.warning("distiller %s on %d CPU workers: every worker also runs the teacher, and workers on one "
                        "machine share its cores; there one worker, or a teacher_cache, is usually faster",
                        cfg.distiller, group_size)
        trainer = Trainer(cfg, rank, group_size, on_event=Progress(is_main), should_stop=stop, run_id=plan.run_id)
        if stop():
            return _fail("interrupted before training started; nothing was written", stop.exit_code)
        if is_main:  # the run owns output_dir from here on
            lock = _LOCK["held"] = RunLock.acquire(cfg.output_dir, "train.py")
            if lock.stale:
                log.warning(stale_lock_note(lock.path, lock.stale))
            if plan.clear:
                clear_run(cfg.output_dir)
            remove_partial_files(cfg.output_dir)  # left by a kill during a save
            record_run_identity(cfg.output_dir, plan)
            # the log first: a log that cannot be written ends the run before config.yaml is replaced
            attach_log_file(os.path.join(cfg.output_dir, "train.log"))
            # overwrite is what this command did, not a property of the run: a reused config.yaml must not
            # silently replace another run
            save_config({**cfg, "overwrite": False}, os.path.join(cfg.output_dir, "config.yaml"))
        send_compile_reports_to(os.path.join(cfg.output_dir, "graph_reports"))
        log.info("%s per epoch, %s, %d trainable student+branch parameters; %s",
                 count(trainer.steps_per_epoch, "step"), count(cfg.epochs, "epoch"),
                 sum(p.size for p in trainer.step.weights),
                 trainer.precision.describe())
        trainer.fit()
        if is_main:
            log.info("done: best val top1 %.2f; checkpoints and metrics.json in %s", trainer.best["top1"],
                     cfg.output_dir)
        check_log_file()
    except RunInterrupted as exc:
        what = SIGNAL_NAMES.get(stop.signum, "stop request")
        if exc.saved:
            config = os.path.join(cfg.output_dir, "config.yaml")
            return _fail(f"interrupted ({what}) at epoch {exc.epoch + 1} step {exc.step}/{exc.steps}: saved a resume "
                         f"point to {exc.saved}; continue with: python train.py --config {config} resume=auto",
                         stop.exit_code)
        return _fail(f"interrupted ({what}) before the first step; nothing was saved", stop.exit_code)
    except (ValueError, FileNotFoundError, FloatingPointError) as exc:
        return _fail(exc)
    except RuntimeError as exc:  # MindSpore wraps data-pipeline and compile errors in pages of text
        return _fail(runtime_error_message(exc))
    except Exception as exc:  # a bug: keep the traceback, and still end the log with the cause
        traceback.print_exc()
        return _fail(f"{type(exc).__name__}: {exc}".splitlines()[0], 1)
    finally:
        if lock is not None:
            lock.release()
    return 0


if __name__ == "__main__":
    exit_entry_point(main())
