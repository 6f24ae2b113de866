"""Export the student alone (no teacher, no branches) for deployment, then check the file.

    python export.py --config CONFIG --checkpoint CHECKPOINT [--file_format MINDIR|AIR|ONNX]
                     [--file_name PATH_WITHOUT_SUFFIX] [--batch_size 1] [--fold_bn | --no-fold_bn]

CONFIG is usually the ``config.yaml`` a training run saved in its output folder. A MINDIR is loaded
back before it replaces anything, run on a random batch and compared with the checkpointed network:
the file is kept only when the largest absolute difference is within ``--tolerance``.

``--fold_bn`` (the default for MINDIR; ``--no-fold_bn`` turns it off) exports the inference form: every
BatchNorm folded into the convolution before it (``src/models/fold_bn.py``), so the graph holds no
BatchNorm and no state. The check still compares with the checkpointed (unfolded) network; the
checkpoint itself is not changed. Models without BatchNorm export unchanged.

ONNX: MindSpore's ONNX exporter does not convert every operator; when one of the model's operators is
missing (e.g. ``Unstack`` in the ViT attention, ``Erf`` in exact GELU), the error names it.
"""
import src  # noqa: F401  (sets ONEDNN_MAX_CPU_ISA before MindSpore runs an op)

import argparse
import os
import re
import sys

import numpy as np

from src.config import build_arg_parser, config_from_args
from src.mindspore_process import exit_quietly, runtime_error_message, send_compile_reports_to

FORMATS = ("MINDIR", "AIR", "ONNX")
SUFFIX = {"MINDIR": ".mindir", "AIR": ".air", "ONNX": ".onnx"}
# the config keys export uses (a training config's other keys are accepted in its file, ignored here)
EXPORT_KEYS = ("device_target", "image_size", "in_channels", "num_classes", "student")
_MISSING_OP = re.compile(r"Can not find key (\w+) in convert map")


def export_error(fmt, student, exc):
    """One line for a failed export; for ONNX, the operator the exporter cannot convert."""
    import mindspore as ms

    text = str(exc).strip()
    missing = _MISSING_OP.search(text)
    if fmt == "ONNX" and missing:
        return (f"ONNX export of '{student}' is blocked by the operator {missing.group(1)}, which the ONNX "
                f"exporter of MindSpore {ms.__version__} cannot convert (the first such operator in the graph); "
                f"export MINDIR instead (--file_format MINDIR)")
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"{fmt} export of '{student}' failed: {first}"


def main(argv=None):
    parser = build_arg_parser("Export a student checkpoint as MINDIR (or AIR on Ascend, or ONNX).", keys=EXPORT_KEYS)
    parser.add_argument("--checkpoint", required=True, help="student checkpoint written by train.py")
    parser.add_argument("--file_format", default="MINDIR", type=str.upper, choices=FORMATS,
                        help="MINDIR (default: MindSpore Lite / Serving, checked after writing), AIR (Ascend "
                             "only), or ONNX (where MindSpore's exporter converts every operator of the model)")
    parser.add_argument("--file_name", default=None,
                        help="output path without suffix (default: the checkpoint's path without .ckpt)")
    parser.add_argument("--batch_size", type=int, default=1, help="batch size baked into the exported graph")
    parser.add_argument("--fold_bn", action=argparse.BooleanOptionalAction, default=None,
                        help="fold BatchNorm into the convolution before it (default: on for MINDIR, off otherwise)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="MINDIR check: largest absolute logit difference allowed (>= 0)")
    try:
        args, cfg = config_from_args(sys.argv[1:] if argv is None else argv, parser, for_training=False)
        if not cfg.student:
            raise ValueError("config: key 'student' is required")
        if args.file_format == "AIR" and cfg.device_target not in ("Ascend", "auto"):
            raise ValueError("AIR export needs device_target=Ascend; use MINDIR elsewhere")
        if args.batch_size < 1:
            raise ValueError(f"--batch_size must be positive, got {args.batch_size}")
        if not args.tolerance >= 0:
            raise ValueError(f"--tolerance must be >= 0, got {args.tolerance}")
        import mindspore as ms
        from mindspore import nn

        from src.engine.builders import build_student, setup_context
        from src.checkpoint import load_model_checkpoint
        from src.files import atomic_output

        send_compile_reports_to(None)
        setup_context(cfg, distributed=False)
        if args.file_format == "AIR" and cfg.device_target != "Ascend":
            raise ValueError(f"AIR export needs device_target=Ascend; this run is on {cfg.device_target}, use MINDIR")
        net = build_student(cfg)
        load_model_checkpoint(net, args.checkpoint, what=f"student '{cfg.student}'")
        net.set_train(False)
        base = args.file_name or os.path.splitext(args.checkpoint)[0]
        path = base + SUFFIX[args.file_format]
        rng = np.random.RandomState(0)
        x = ms.Tensor(rng.randn(args.batch_size, cfg.in_channels, cfg.image_size, cfg.image_size).astype(np.float32))
        checkpointed = net(x).asnumpy()  # the reference: the network as its checkpoint defines it
        if args.fold_bn if args.fold_bn is not None else args.file_format == "MINDIR":
            from src.models.fold_bn import fold_batchnorm

            print(f"inference form: {fold_batchnorm(net).describe()}")
        with atomic_output(path) as tmp:  # nothing replaces `path` unless it was written and checked
            try:
                ms.export(net, x, file_name=tmp[:-len(SUFFIX[args.file_format])], file_format=args.file_format)
            except (RuntimeError, TypeError, ValueError) as exc:  # exporters raise several types
                raise ValueError(export_error(args.file_format, cfg.student, exc)) from None
            if args.file_format == "MINDIR":
                loaded = nn.GraphCell(ms.load(tmp))
                diff = float(np.abs(checkpointed - loaded(x).asnumpy()).max())
                print(f"reloaded {path}: max abs difference to the checkpointed network {diff:.3g}")
                if not diff <= args.tolerance:
                    raise ValueError(f"the exported MINDIR differs from the checkpoint by {diff:.3g} "
                                     f"(> --tolerance {args.tolerance}); it was not written")
        print(f"wrote {path}")
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"error: {runtime_error_message(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    exit_quietly(main())
