"""What the teacher cache's checksums cost: hashing when a cache is finished and verifying when it is opened.

    python benchmarks/cache_checksum.py --images 50000 --classes 100 --views 100 \\
        --work /tmp/cache_checksum --json results/teacher_cache/checksum_cost.json

Writes a cache of random float16 logits through the real writer (``CacheWriter``: one part, as one writer
rank makes it), then times, alternating over ``--rounds``: the first open in a process (every array file
hashed), a second open (files unchanged since: stat only), and one plain read of every array file (the I/O
floor a hash cannot beat). The files are in the page cache (just written); a cold read adds the disk's time
to both the hash and a first epoch.
"""
import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  first: caps oneDNN at AVX2 before MindSpore loads
from src.flags import int_range  # noqa: E402

import numpy as np  # noqa: E402

from src.config import load_config  # noqa: E402
from src.files import write_json_atomic  # noqa: E402
from src.provenance import finish, provenance  # noqa: E402
from src.teacher import reader  # noqa: E402
from src.teacher.plan import make_plan  # noqa: E402
from src.teacher.writer import CacheWriter  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int_range(1), default=50000)
    p.add_argument("--classes", type=int_range(2), default=100)
    p.add_argument("--views", type=int_range(1), default=100)
    p.add_argument("--rounds", type=int_range(1), default=3)
    p.add_argument("--work", required=True, help="folder for the cache (removed at the end)")
    p.add_argument("--json", default=None, help="write the measurements here")
    return p.parse_args(argv)


def make_cache(args, out):
    cfg = load_config(None, ["dataset=fake", "student=resnet10", f"num_classes={args.classes}"], for_training=False)
    teacher = {"name": "resnet10", "checkpoint": "none", "sha256": "0" * 64, "feature_dim": 512, "params": 0}
    plan = make_plan(cfg, {"num_samples": args.images, "sha256": "0" * 64}, teacher, args.views)
    writer = CacheWriter.prepare(out, plan)
    rng = np.random.default_rng(0)
    step = max(1, 4_000_000 // (args.views * args.classes))  # images per chunk (~8 MB of logits)
    for start in range(0, args.images, step):
        n = min(step, args.images - start) * args.views
        writer.write(start * args.views, {
            "views": np.tile(np.array([0, 0, 8, 8, 0], np.int32), (n, 1)),
            "logits": rng.standard_normal((n, args.classes), dtype=np.float32).astype(np.float16)})
    t0 = time.perf_counter()
    writer.finish()
    return time.perf_counter() - t0, plan["total_bytes"]


def read_all(out):
    total = 0
    for name in sorted(os.listdir(out)):
        if name.endswith(".npy"):
            with open(os.path.join(out, name), "rb") as f:
                while chunk := f.read(1 << 22):
                    total += len(chunk)
    return total


def main(argv=None):
    args = parse_args(argv)
    command = "python benchmarks/cache_checksum.py " + " ".join(sys.argv[1:] if argv is None else argv)
    facts = provenance(command, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = os.path.join(os.path.abspath(args.work), "cache")
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    try:
        finish_s, total_bytes = make_cache(args, out)
        rows = []
        for _ in range(args.rounds):
            reader._verified.clear()
            t0 = time.perf_counter()
            reader.open_teacher_cache(out)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            reader.open_teacher_cache(out)
            again = time.perf_counter() - t0
            t0 = time.perf_counter()
            read_all(out)
            plain = time.perf_counter() - t0
            rows.append({"first_open_s": first, "second_open_s": again, "plain_read_s": plain})
    finally:
        shutil.rmtree(args.work, ignore_errors=True)
    median = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    result = {"images": args.images, "classes": args.classes, "views": args.views, "dtype": "float16",
              "cache_bytes": int(total_bytes), "finish_hash_s": finish_s, "rounds": rows, "median": median,
              "first_open_gb_per_s": total_bytes / median["first_open_s"] / 1e9,
              "provenance": finish(facts)}
    print(json.dumps(result, indent=2))
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
