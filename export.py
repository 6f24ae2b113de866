"""Export the student alone (no teacher, no branches) for deployment, then check the file.

    python export.py --config CONFIG --checkpoint outputs/best.ckpt [--file_format MINDIR|AIR|ONNX]
                     [--file_name student] [--batch_size 1]

After writing a MINDIR the file is loaded back, run on a random batch and compared with the
checkpointed network; the maximum absolute difference is printed (and must be ~0).
"""
import src  # noqa: F401  (sets ONEDNN_MAX_CPU_ISA before MindSpore runs an op)

import os
import sys

import numpy as np

from src.cli import exit_quietly
from src.config import build_arg_parser, config_from_args

FORMATS = ("MINDIR", "AIR", "ONNX")
SUFFIX = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}


def main(argv=None):
    parser = build_arg_parser("Export a student checkpoint as MINDIR (or AIR on Ascend, or ONNX).")
    parser.add_argument("--checkpoint", required=True, help="student checkpoint written by train.py")
    parser.add_argument("--file_format", default="MINDIR", type=str.upper, choices=FORMATS)
    parser.add_argument("--file_name", default=None, help="output path without suffix (default: next to the checkpoint)")
    parser.add_argument("--batch_size", type=int, default=1, help="batch size baked into the exported graph")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max abs difference allowed in the check")
    try:
        args, cfg = config_from_args(sys.argv[1:] if argv is None else argv, parser)
        import mindspore as ms
        from mindspore import nn

        from src.engine.builders import setup_context
        from src.engine.checkpoint import load_model_checkpoint
        from src.models import create_model

        if not cfg.student:
            raise ValueError("config: key 'student' is required")
        if args.file_format == "AIR" and cfg.device_target != "Ascend":
            raise ValueError("AIR export needs device_target=Ascend; use MINDIR elsewhere")
        if args.batch_size < 1:
            raise ValueError(f"--batch_size must be positive, got {args.batch_size}")
        setup_context(cfg, distributed=False)
        net = create_model(cfg.student, num_classes=cfg.num_classes, image_size=cfg.image_size)
        load_model_checkpoint(net, args.checkpoint, what=f"student '{cfg.student}'")
        net.set_train(False)
        base = args.file_name or os.path.splitext(args.checkpoint)[0]
        rng = np.random.RandomState(0)
        x = ms.Tensor(rng.randn(args.batch_size, 3, cfg.image_size, cfg.image_size).astype(np.float32))
        try:
            ms.export(net, x, file_name=base, file_format=args.file_format)
        except Exception as exc:  # exporters raise many types; report the op that failed
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"{args.file_format} export of '{cfg.student}' failed: {first}") from None
        path = base + SUFFIX[args.file_format]
        print(f"wrote {path}")
        if args.file_format == "MINDIR":
            loaded = nn.GraphCell(ms.load(path))
            expected = net(x).asnumpy()
            got = loaded(x).asnumpy()
            diff = float(np.abs(expected - got).max())
            print(f"reloaded {path}: max abs difference to the checkpointed network {diff:.3g}")
            if not diff <= args.tolerance:
                raise ValueError(f"exported MINDIR differs from the checkpoint by {diff:.3g} "
                                 f"(> {args.tolerance}); the file is not trustworthy")
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    exit_quietly(main())
