"""Evaluate a checkpoint on the val split: top-1 / top-5 / loss, printed and written as JSON.

    python eval.py --config CONFIG --checkpoint CHECKPOINT [--model student|teacher] [--json OUT]

CONFIG is usually the ``config.yaml`` a training run saved in its output folder (e.g.
``--config outputs/fashion_mnist/ofa_vit_p4_pico/config.yaml --checkpoint
outputs/fashion_mnist/ofa_vit_p4_pico/best.ckpt``). ``--model teacher`` evaluates the config's teacher
(e.g. a converted timm checkpoint) alone; without ``--checkpoint`` it uses the config's ``teacher_ckpt``.
"""
import src  # noqa: F401  (sets ONEDNN_MAX_CPU_ISA before MindSpore runs an op)

import os
import sys

from src.config import build_arg_parser, config_from_args
from src.mindspore_process import exit_quietly, runtime_error_message, send_compile_reports_to

# the config keys evaluation uses (a training config's other keys are accepted in its file, ignored here)
EVAL_KEYS = ("device_target", "mode", "seed", "dataset", "data_dir", "image_size", "in_channels", "num_classes",
             "batch_size", "val_batch_size", "num_workers", "python_multiprocessing", "val_subset", "fake_samples",
             "skip_corrupt", "interpolation", "crop_pct", "mean", "std", "student", "teacher", "teacher_ckpt")


def main(argv=None):
    parser = build_arg_parser("Evaluate a student (or teacher) checkpoint on the val split.", keys=EVAL_KEYS)
    parser.add_argument("--checkpoint", default=None,
                        help="MindSpore checkpoint of the model (default for --model teacher: teacher_ckpt)")
    parser.add_argument("--model", choices=("student", "teacher"), default="student",
                        help="which model of the config the checkpoint holds (default student)")
    parser.add_argument("--json", default=None, help="where to write the metrics (default: next to the checkpoint)")
    try:
        args, cfg = config_from_args(sys.argv[1:] if argv is None else argv, parser, for_training=False)
        name = cfg.student if args.model == "student" else cfg.teacher
        if not name:
            raise ValueError(f"config: key '{args.model}' is required to evaluate the {args.model}")
        if cfg.dataset != "fake" and not cfg.data_dir:
            raise ValueError(f"config: key 'data_dir' is required (the root folder of the {cfg.dataset} dataset)")
        ckpt = args.checkpoint or (cfg.teacher_ckpt if args.model == "teacher" else None)
        if not ckpt:
            raise ValueError("--checkpoint is required (a .ckpt written by train.py or tools/convert_checkpoint.py)")
        from src.checkpoint import load_model_checkpoint
        from src.data import create_dataset
        from src.engine.builders import build_student, setup_context
        from src.engine.evaluate import evaluate
        from src.files import write_json_atomic
        from src.teacher import build_teacher_model

        send_compile_reports_to(None)
        setup_context(cfg, distributed=False)
        net = build_student(cfg) if args.model == "student" else build_teacher_model(cfg, load=False)
        load_model_checkpoint(net, ckpt, what=f"{args.model} '{name}'")
        if args.model == "teacher":  # evaluated as it teaches: its inference form (BatchNorm folded)
            from src.models.fold_bn import fold_batchnorm
            fold_batchnorm(net)
        metrics = evaluate(net, create_dataset(cfg, "val"))
        metrics.update({"model": name, "checkpoint": os.path.abspath(ckpt), "dataset": cfg.dataset})
        print(f"{name}: top1 {metrics['top1']:.2f}  top5 {metrics['top5']:.2f}  loss {metrics['loss']:.4f}  "
              f"({metrics['num_samples']} images)")
        out = args.json or os.path.splitext(ckpt)[0] + "_eval.json"
        write_json_atomic(out, metrics)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # MindSpore wraps data-pipeline and compile errors in pages of text
        print(f"error: {runtime_error_message(exc)}", file=sys.stderr)
        return 2
    print(f"metrics written to {out}")
    return 0


if __name__ == "__main__":
    exit_quietly(main())
