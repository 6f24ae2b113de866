"""Train a student with OFA-KD (or KD / DIST / DKD, or alone with ``distiller=none``).

    python train.py --config configs/fashion_mnist/ofa_resnet18_from_deit.yaml [key=value ...]

Writes to ``output_dir``: config.yaml (the resolved config), train.log, last.ckpt / best.ckpt (the
student alone), resume.ckpt (student + branches + optimizer + EMA + epoch) and metrics.json.
"""
import src  # noqa: F401  (sets ONEDNN_MAX_CPU_ISA before MindSpore runs an op)

import logging
import os
import sys
import time

from src.cli import exit_quietly, write_json_atomic
from src.config import build_arg_parser, config_from_args, save_config
from src.logs import setup_logging

log = logging.getLogger("train")


class Progress:
    """Per-step progress: a redrawn line on a terminal, a plain log line every ``log_interval`` steps."""

    def __init__(self, log_interval, is_main):
        self.log_interval = max(int(log_interval), 1)
        self.is_main = is_main
        self.tty = is_main and sys.stderr.isatty()
        self.t_start = time.time()

    def __call__(self, kind, info):
        if not self.is_main:
            return
        if kind == "step":
            self._step(info)
        elif kind == "epoch":
            if self.tty:
                sys.stderr.write("\n")
            parts = [f"epoch {info['epoch']} done in {info['epoch_time']:.1f}s ({info['images_per_s']:.1f} img/s)"]
            if "val_top1" in info:
                parts.append(f"val top1 {info['val_top1']:.2f} top5 {info['val_top5']:.2f} "
                             f"loss {info['val_loss']:.4f} (best {info['best_top1']:.2f})")
            if "val_ema_top1" in info:
                parts.append(f"ema top1 {info['val_ema_top1']:.2f}")
            log.info("; ".join(parts))
        elif kind == "resumed":
            log.info("resumed from %s at epoch %d", info["path"], info["epoch"])

    def _step(self, info):
        terms = " ".join(f"{name} {value:.4f}" for name, value in info["terms"].items())
        done = info["global_step"]
        elapsed = time.time() - self.t_start
        eta = elapsed / max(done, 1) * (info["total_steps"] - done)
        speed = info["images"] / max(info["epoch_time"], 1e-9)
        text = (f"epoch {info['epoch']}/{info['epochs']} step {info['step']}/{info['steps']} "
                f"loss {info['loss']:.4f} ({terms}) lr {info['lr']:.3g} "
                f"{speed:.1f} img/s eta {eta / 60:.1f} min")
        if info["overflow"]:
            text += f" [overflow: step skipped, scale {info['scale']:g}]"
        if self.tty:
            sys.stderr.write("\r" + text[:200].ljust(120))
            sys.stderr.flush()
        if info["step"] % self.log_interval == 0 or info["step"] == info["steps"]:
            if self.tty:
                sys.stderr.write("\n")
            log.info(text)


def main(argv=None):
    parser = build_arg_parser("Train a student with OFA-KD (or KD/DIST/DKD, or alone with distiller=none).")
    try:
        _, cfg = config_from_args(sys.argv[1:] if argv is None else argv, parser)
        if not cfg.student:
            raise ValueError("config: key 'student' is required (a model name, see src/models)")
        from src.engine.builders import setup_context
        from src.engine.trainer import Trainer

        rank, group_size = setup_context(cfg, distributed=cfg.distribute or None)
        is_main = rank == 0
        setup_logging(os.path.join(cfg.output_dir, "train.log") if is_main else None, rank)
        if cfg.resume == "auto" and not os.path.isfile(os.path.join(cfg.output_dir, "resume.ckpt")):
            cfg.resume = None
        if is_main:
            save_config(cfg, os.path.join(cfg.output_dir, "config.yaml"))
        log.info("student %s, teacher %s, distiller %s, %d device(s), output %s", cfg.student, cfg.teacher,
                 cfg.distiller, group_size, cfg.output_dir)
        trainer = Trainer(cfg, rank, group_size, on_event=Progress(cfg.log_interval, is_main))
        log.info("%d steps per epoch, %d epochs, %d trainable student+branch parameters", trainer.steps_per_epoch,
                 cfg.epochs, sum(p.size for p in trainer.step.weights))
        history = trainer.fit()
    except (ValueError, FileNotFoundError, FloatingPointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # MindSpore wraps data-pipeline errors (e.g. an unreadable image) in pages of text
        from src.data import pipeline_error_message

        print(f"error: {pipeline_error_message(exc)}", file=sys.stderr)
        return 2
    if is_main:
        out = os.path.join(cfg.output_dir, "metrics.json")
        write_json_atomic({"history": history, "best_top1": trainer.best["top1"]}, out)
        log.info("done: best val top1 %.2f; checkpoints in %s", trainer.best["top1"], cfg.output_dir)
    return 0


if __name__ == "__main__":
    code = main()
    from src.engine.builders import launched_distributed

    if launched_distributed():
        sys.exit(code)  # workers must leave through MindSpore's exit hooks so the cluster sees them finish
    exit_quietly(code)
