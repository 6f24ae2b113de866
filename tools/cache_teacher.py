"""Make a teacher-output cache: the frozen teacher once over K augmentation views of every training image.

    python tools/cache_teacher.py --config CONFIG [key=value ...] --out DIR --views K \\
        [--dtype float16|float32] [--topk N] [--features] [--teacher-batch B]

The config is the training config (dataset, image_size, augmentation, teacher, teacher_ckpt); ``--out``
defaults to its ``teacher_cache``. The size is printed before anything is written; the cache appears at
DIR only when complete (a killed run leaves DIR.partial and resumes when started again with the same
arguments). Under msrun every rank writes its share of the images (scripts/run_distribute_cache.sh, one or
several nodes; DIR must then be on a file system all nodes share: docs/distributed.md). Train from it with
``teacher_cache: DIR`` (see docs/teacher_cache.md).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  (sets ONEDNN_MAX_CPU_ISA before MindSpore runs an op)

import logging  # noqa: E402
import time  # noqa: E402

from src.flags import int_range  # noqa: E402
from src.mindspore_process import exit_entry_point  # noqa: E402
from src.config import build_arg_parser, config_from_args  # noqa: E402
from src.logs import setup_logging  # noqa: E402

log = logging.getLogger("cache_teacher")
PROGRESS_EVERY_S = 5.0


def _size(num_bytes):
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1024 or unit == "GB":
            return f"{num_bytes:.1f} {unit}" if unit != "B" else f"{num_bytes} B"
        num_bytes /= 1024.0
    return f"{num_bytes:.1f} GB"


class Progress:
    """Log lines: the cache's size before writing, views/s and ETA while writing, where the cache is at the end."""

    def __init__(self):
        self.last = 0.0

    def __call__(self, kind, info):
        if kind == "plan":
            plan = info["plan"]
            arrays = ", ".join(f"{name} {spec['dtype']} {spec['shape_per_image']}"
                               for name, spec in plan["arrays"].items())
            log.info("cache %s: %d images x %d views of teacher %s; per image %s (%s); total %s", info["out_dir"],
                     plan["split"]["num_samples"], plan["views"], plan["teacher"], _size(plan["bytes_per_image"]),
                     arrays, _size(plan["total_bytes"]))
            part = info["part"]
            log.info("rank %d writes images %d..%d (%d views)%s", info["rank"], part["start"], part["stop"] - 1,
                     info["pairs"], f"; resuming after view {info['pairs_done']}" if info["pairs_done"] else "")
        elif kind == "progress":
            now = time.time()
            if now - self.last < PROGRESS_EVERY_S and info["pairs_done"] != info["pairs"]:
                return
            self.last = now
            done, seconds = info["new_pairs"], info["elapsed_s"]
            if done > info["first_batch"][0]:  # leave out the first batch, which compiles the teacher's graph
                done, seconds = done - info["first_batch"][0], seconds - info["first_batch"][1]
            rate = done / max(seconds, 1e-9)
            eta = (info["pairs"] - info["pairs_done"]) / max(rate, 1e-9)
            log.info("views %d/%d: %.1f teacher images/s (%.1f source images/s), eta %.1f min", info["pairs_done"],
                     info["pairs"], rate, rate / info["views"], eta / 60)
        elif kind == "done":
            if info["manifest"] is None:
                log.info("rank %d: part done in %.1f s; the last rank to finish completes the cache",
                         info["rank"], info["seconds"])
            else:
                log.info("cache complete: %s (train from it with teacher_cache: %s)", info["out_dir"], info["out_dir"])


def main(argv=None):
    parser = build_arg_parser("Run the frozen teacher once over K views of every training image and cache its "
                              "outputs (train from them with teacher_cache: DIR).")
    parser.add_argument("--out", default=None, metavar="DIR", help="cache folder to create (default: teacher_cache)")
    parser.add_argument("--views", type=int_range(1), required=True, metavar="K", help="augmentation views per image")
    parser.add_argument("--dtype", default="float16", choices=("float16", "float32"),
                        help="storage of logits and features (float32 for exactness checks)")
    parser.add_argument("--topk", type=int_range(0), default=0, metavar="N",
                        help="keep the N most likely classes, the rest of the mass spread evenly (0 = full logits)")
    parser.add_argument("--features", action="store_true",
                        help="also store the teacher's pooled final feature (for feature-based distillers)")
    parser.add_argument("--teacher-batch", type=int_range(1), default=None, metavar="B",
                        help="images per teacher forward (default: the config's batch_size)")
    try:
        args, cfg = config_from_args(sys.argv[1:] if argv is None else argv, parser)
        from src.engine.builders import setup_context
        from src.teacher import build_teacher_cache

        rank, group_size = setup_context(cfg)
        setup_logging(None, rank)
        build_teacher_cache(cfg, args.out, args.views, args.dtype, args.topk, args.features, args.teacher_batch,
                            rank=rank, group_size=group_size, on_event=Progress())
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:  # MindSpore wraps data-pipeline errors (e.g. an unreadable image) in pages of text
        from src.data import pipeline_error_message

        print(f"error: {pipeline_error_message(exc)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    exit_entry_point(main())
