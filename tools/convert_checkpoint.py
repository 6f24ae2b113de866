"""Convert a PyTorch checkpoint (timm layout, or the CycleMLP authors') into a MindSpore .ckpt of our model.

    python tools/convert_checkpoint.py --arch swin_tiny --src model.pth|model.safetensors --dst teacher.ckpt
        [--num-classes 100] [--drop-head] [--image-size 224] [--in-channels 1]

.safetensors needs only NumPy and the ``safetensors`` package; .pth needs PyTorch (CPU build).
The result loads with ``teacher_ckpt`` in train.py / eval.py (``eval.py --model teacher`` checks it alone).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  (sets ONEDNN_MAX_CPU_ISA before MindSpore runs an op)

import argparse  # noqa: E402
from collections import Counter  # noqa: E402

from src.flags import int_range  # noqa: E402
from src.mindspore_process import exit_quietly  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description="Convert a PyTorch (timm) state dict into a MindSpore checkpoint "
                                                 "of one of our models.")
    parser.add_argument("--arch", required=True, help="our model name, e.g. swin_tiny, resnet50, beitv2_base")
    parser.add_argument("--src", required=True, help="PyTorch checkpoint: .pth / .pt / .bin (needs torch) or "
                                                     ".safetensors")
    parser.add_argument("--dst", required=True, help="MindSpore checkpoint to write (.ckpt)")
    parser.add_argument("--num-classes", type=int_range(1), default=None,
                        help="classes of the model (default: those of the checkpoint's head)")
    parser.add_argument("--drop-head", action="store_true",
                        help="leave the classifier randomly initialised instead of converting it "
                             "(e.g. a 1000-class ImageNet head into a 100-class model)")
    parser.add_argument("--image-size", type=int_range(1), default=224,
                        help="input size of the converted model (default 224); a ViT / DeiT position embedding "
                             "trained at another size is resampled (bicubic, as timm); Swin / BEiT relative-"
                             "position tables and Mixer / ResMLP token mixing must come from this size")
    parser.add_argument("--in-channels", type=int, default=3, choices=(1, 3),
                        help="image channels of the converted model (default 3); with 1 the checkpoint's RGB "
                             "input kernel is summed over its channels, as timm does for grayscale models")
    return parser


def _skipped_summary(names):
    """'relative_position_index x12, attn_mask x6' from the skipped source names."""
    kinds = Counter(name.rsplit(".", 1)[-1] for name in names)
    return ", ".join(f"{kind} x{count}" for kind, count in sorted(kinds.items()))


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        from src.convert import convert_checkpoint

        report = convert_checkpoint(args.arch, args.src, args.dst, num_classes=args.num_classes,
                                    image_size=args.image_size, drop_head=args.drop_head,
                                    in_channels=args.in_channels)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"read {report.source} as {report.layout} layout")
    for name, source_shape, shape in report.resampled:
        if source_shape[1:2] == (3,) and shape[1:2] == (1,):
            print(f"summed {name} {source_shape} over its RGB channels to {shape} for grayscale input")
        else:
            print(f"resampled {name} from {source_shape} to {shape} for {report.image_size} px "
                  "(bicubic, prefix tokens kept)")
    if report.skipped:
        print(f"skipped {len(report.skipped)} buffers our model rebuilds: {_skipped_summary(report.skipped)}")
    if report.random_head:
        dropped = f" (dropped from the checkpoint: {', '.join(report.dropped_head)})" if report.dropped_head else ""
        print(f"head left randomly initialised: {', '.join(report.random_head)}{dropped}; "
              "train or fine-tune it before using this model as a teacher")
    print(f"converted {report.converted} tensors into {report.arch} (num_classes={report.num_classes}, "
          f"image_size={report.image_size}) -> {report.destination}")
    return 0


if __name__ == "__main__":
    exit_quietly(main())
