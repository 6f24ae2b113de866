"""Evaluate a checkpoint on the val split: top-1 / top-5 / loss, printed and written as JSON.

    python eval.py --config CONFIG --checkpoint outputs/best.ckpt [--model student|teacher] [--json OUT]

``--model teacher`` evaluates the config's teacher (e.g. a converted timm checkpoint) alone; without
``--checkpoint`` it uses the config's ``teacher_ckpt``.
"""
import src  # noqa: F401  (sets ONEDNN_MAX_CPU_ISA before MindSpore runs an op)

import os
import sys

from src.cli import exit_quietly, write_json_atomic
from src.config import build_arg_parser, config_from_args


def main(argv=None):
    parser = build_arg_parser("Evaluate a student (or teacher) checkpoint on the val split.")
    parser.add_argument("--checkpoint", default=None, help="MindSpore checkpoint of the model")
    parser.add_argument("--model", choices=("student", "teacher"), default="student",
                        help="which model of the config the checkpoint holds")
    parser.add_argument("--json", default=None, help="where to write the metrics (default: next to the checkpoint)")
    try:
        args, cfg = config_from_args(sys.argv[1:] if argv is None else argv, parser)
        from src.data import create_dataset
        from src.engine.builders import setup_context
        from src.engine.checkpoint import load_model_checkpoint
        from src.engine.evaluate import evaluate
        from src.models import create_model

        name = cfg.student if args.model == "student" else cfg.teacher
        if not name:
            raise ValueError(f"config: key '{args.model}' is required to evaluate the {args.model}")
        ckpt = args.checkpoint or (cfg.teacher_ckpt if args.model == "teacher" else None)
        if not ckpt:
            raise ValueError("--checkpoint is required (a .ckpt written by train.py or tools/convert_checkpoint.py)")
        setup_context(cfg, distributed=False)
        net = create_model(name, num_classes=cfg.num_classes, image_size=cfg.image_size)
        load_model_checkpoint(net, ckpt, what=f"{args.model} '{name}'")
        metrics = evaluate(net, create_dataset(cfg, "val"))
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # MindSpore wraps data-pipeline errors (e.g. an unreadable image) in pages of text
        from src.data import pipeline_error_message

        print(f"error: {pipeline_error_message(exc)}", file=sys.stderr)
        return 2
    metrics.update({"model": name, "checkpoint": os.path.abspath(ckpt), "dataset": cfg.dataset})
    print(f"{name}: top1 {metrics['top1']:.2f}  top5 {metrics['top5']:.2f}  loss {metrics['loss']:.4f}  "
          f"({metrics['num_samples']} images)")
    out = args.json or os.path.splitext(ckpt)[0] + "_eval.json"
    write_json_atomic(metrics, out)
    print(f"metrics written to {out}")
    return 0


if __name__ == "__main__":
    exit_quietly(main())
