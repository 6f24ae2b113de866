"""Loader benchmark: images/s of our image-folder pipeline against MindSpore's ``ImageFolderDataset``.

    python -m benchmarks loader --images 200 --width 500 --height 375 --classes 10 --rounds 5 --json OUT.json

Writes its own JPEG folder (smooth random images, quality 90) in a temp dir, builds the training (or
``--split val``) pipeline of a recipe (``--config``, by default the ImageNet CNN recipe) three ways and
times whole epochs, alternating them round after round:

* ``ours``: ``src.data.create_dataset`` (file bytes read in Python, decoded by C++ ops);
* ``imagefolder``: ``ds.ImageFolderDataset`` with the same transforms (``RandomCropDecodeResize``
  ... or ``Decode`` + resize + centre crop) and batch-level mixup/cutmix, the baseline MindSpore's model
  zoo uses;
* ``pil`` (``--with-pil``): the former path, images decoded by PIL inside the Python source.

Each is run with 1 and 2 workers and with 2 workers plus ``python_multiprocessing`` (``--settings``).
An epoch's first batch (worker start-up) is not timed. The JSON holds every epoch's wall and CPU time,
the median images/s, images/s per worker and images per CPU-second of this process (worker processes
not included) of each (way, setting) and the machine's load; the last line printed
is ``ours_over_imagefolder=<float>``: the smallest ratio of ours to the baseline over the settings.
"""
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import src  # noqa: E402,F401  first: caps oneDNN at AVX2 before MindSpore loads
from src.flags import OneLineParser, int_range  # noqa: E402

import numpy as np  # noqa: E402

from benchmarks.report import run_and_report  # noqa: E402
from PIL import Image  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RECIPE = os.path.join(ROOT, "configs", "recipes", "imagenet_cnn.yaml")
WAYS = ("ours", "imagefolder", "pil")
# (workers, python_multiprocessing)
SETTINGS = {"1": (1, False), "2": (2, False), "2mp": (2, True)}


def build_arg_parser():
    p = OneLineParser(prog="python -m benchmarks loader", description="Time our image-folder loader against MindSpore's ImageFolderDataset.")
    p.add_argument("--images", type=int_range(1), default=200, help="train images written (spread over the classes)")
    p.add_argument("--width", type=int_range(1), default=500)
    p.add_argument("--height", type=int_range(1), default=375)
    p.add_argument("--classes", type=int_range(1), default=10)
    p.add_argument("--image-size", type=int_range(1), default=224)
    p.add_argument("--batch-size", type=int_range(1), default=16)
    p.add_argument("--rounds", type=int_range(1), default=5, help="epochs timed per (way, setting), alternating")
    p.add_argument("--split", default="train", choices=("train", "val"), help="training or evaluation transforms")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=tuple(SETTINGS),
                   help="workers: 1, 2, or 2 with python_multiprocessing (2mp)")
    p.add_argument("--with-pil", action="store_true", help="also time the former PIL-in-Python decoding")
    p.add_argument("--config", default=DEFAULT_RECIPE, metavar="YAML", help="recipe whose transforms are used")
    p.add_argument("--data", default=None, help="use this image folder (root/train, root/val) instead of writing one")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--seed", type=int_range(0), default=0)
    return p


def write_jpeg_folder(root, images, classes, width, height, seed=0):
    """``root/{train,val}/class_k/img_i.jpg``: ``images`` smooth random JPEGs in each split."""
    rng = np.random.RandomState(seed)
    for split in ("train", "val"):
        for i in range(images):
            folder = os.path.join(root, split, f"class_{i % classes:03d}")
            os.makedirs(folder, exist_ok=True)
            # low-frequency noise upsampled: compresses like a photo, not like white noise
            small = rng.randint(0, 256, size=(height // 16 + 1, width // 16 + 1, 3)).astype(np.uint8)
            image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
            image.save(os.path.join(folder, f"img_{i:05d}.jpg"), format="JPEG", quality=90)
    return root


def loader_config(args, data_dir, classes, workers, multiprocessing):
    from src.config import load_config

    return load_config(args.config, {
        "dataset": "imagefolder", "data_dir": data_dir, "num_classes": classes, "student": "resnet18",
        "distiller": "none", "image_size": args.image_size, "batch_size": args.batch_size,
        "val_batch_size": args.batch_size, "num_workers": workers, "python_multiprocessing": multiprocessing,
        "seed": args.seed})


def build_pipeline(way, cfg, split):
    """One epoch's batched pipeline of ``split`` built the ``way`` named."""
    import mindspore.dataset as ds

    from src.data import create_dataset, load_source
    from src.data.loader import runs_in_python
    from src.data.sampler import EpochShardSampler, PaddedValSampler
    from src.data.transforms import build_image_transforms, build_mixup

    is_train = split == "train"
    workers, multiprocessing = cfg["num_workers"], cfg["python_multiprocessing"]
    if way == "ours":
        return create_dataset(cfg, split)
    if way == "imagefolder":
        ops = build_image_transforms(cfg, is_train, decode=True)
        pipeline = ds.ImageFolderDataset(os.path.join(cfg["data_dir"], split), shuffle=is_train, decode=False,
                                         num_parallel_workers=workers)
    else:  # the former path: PIL decodes inside the Python source
        source = load_source(cfg, split)
        sampler = EpochShardSampler(len(source), seed=cfg["seed"]) if is_train else \
            PaddedValSampler(len(source), batch_size=cfg["batch_size"])
        ops = build_image_transforms(cfg, is_train)
        pipeline = ds.GeneratorDataset(source, ["image", "label"], sampler=sampler, num_parallel_workers=workers,
                                       python_multiprocessing=multiprocessing)
    pipeline = pipeline.map(operations=ops, input_columns="image", num_parallel_workers=workers,
                            python_multiprocessing=multiprocessing and any(runs_in_python(op) for op in ops))
    pipeline = pipeline.batch(cfg["batch_size"], drop_remainder=True)
    mixup = build_mixup(cfg) if is_train else None  # as create_dataset does: the same work in every way
    if mixup is not None:
        pipeline = pipeline.map(operations=mixup, input_columns=["image", "label"])
    return pipeline


def time_epoch(pipeline):
    """``(images, wall seconds, cpu seconds of this process)`` of one epoch after its first batch."""
    it = pipeline.create_tuple_iterator(num_epochs=1, output_numpy=True)
    next(it)
    count, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    for images, _ in it:
        count += images.shape[0]
    return count, time.perf_counter() - t0, time.process_time() - cpu0


def run_benchmark(args):
    if args.images < 2 * args.batch_size or args.classes < 1 or args.rounds < 1:
        raise ValueError(f"need --images >= 2 batches ({2 * args.batch_size}), --classes >= 1 and --rounds >= 1")
    ways = [w for w in WAYS if w != "pil" or args.with_pil]
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="loader_bench_") as tmp:
        data_dir = args.data or write_jpeg_folder(tmp, args.images, args.classes, args.width, args.height, args.seed)
        classes = len([e for e in os.scandir(os.path.join(data_dir, "train")) if e.is_dir()])
        times = {(w, s): [] for s in args.settings for w in ways}
        for _ in range(args.rounds):
            for setting in args.settings:
                workers, multiprocessing = SETTINGS[setting]
                cfg = loader_config(args, data_dir, classes, workers, multiprocessing)
                for way in ways:
                    times[way, setting].append(time_epoch(build_pipeline(way, cfg, args.split)))
    results = {}
    for (way, setting), runs in times.items():
        workers, multiprocessing = SETTINGS[setting]
        median = statistics.median(count / seconds for count, seconds, _ in runs)
        results.setdefault(setting, {})[way] = {
            "workers": workers, "python_multiprocessing": multiprocessing, "images_per_s": median,
            "images_per_s_per_worker": median / workers,
            # CPU time of this process's threads: steadier than wall time on a shared machine, but it
            # misses the work of worker processes (python_multiprocessing)
            "images_per_cpu_s": statistics.median(count / max(cpu, 1e-9) for count, _, cpu in runs),
            "epochs": [{"images": c, "seconds": s, "cpu_seconds": cpu} for c, s, cpu in runs]}
    for setting, row in results.items():
        row["ours_over_imagefolder"] = row["ours"]["images_per_s"] / row["imagefolder"]["images_per_s"]
        if "pil" in row:
            row["ours_over_pil"] = row["ours"]["images_per_s"] / row["pil"]["images_per_s"]
    return {
        "settings": results,
        "ours_over_imagefolder": min(row["ours_over_imagefolder"] for row in results.values()),
        "config": {"images": args.images, "width": args.width, "height": args.height, "classes": args.classes,
                   "image_size": args.image_size, "batch_size": args.batch_size, "rounds": args.rounds,
                   "split": args.split, "recipe": args.config, "data": args.data, "seed": args.seed},
        "machine": {"cpus": os.cpu_count(), "loadavg_start": list(load_start), "loadavg_end": list(os.getloadavg())},
    }


def summary_lines(result):
    cfg = result["config"]
    lines = [f"{cfg['split']} transforms of {os.path.basename(cfg['recipe'])}, {cfg['images']} JPEGs "
             f"{cfg['width']}x{cfg['height']} -> {cfg['image_size']} px, batch {cfg['batch_size']}, "
             f"{cfg['rounds']} epochs each; load {result['machine']['loadavg_start'][0]:.1f} -> "
             f"{result['machine']['loadavg_end'][0]:.1f} on {result['machine']['cpus']} cpus"]
    for setting, row in result["settings"].items():
        ways = ", ".join(f"{way} {row[way]['images_per_s']:.1f} ({row[way]['images_per_s_per_worker']:.1f}/worker, "
                         f"{row[way]['images_per_cpu_s']:.1f}/cpu-s)" for way in WAYS if way in row)
        lines.append(f"workers {setting}: images/s {ways}; ours/imagefolder {row['ours_over_imagefolder']:.2f}"
                     + (f", ours/pil {row['ours_over_pil']:.2f}" if "ours_over_pil" in row else ""))
    return lines


def main(argv=None):
    return run_and_report(build_arg_parser().parse_args(argv), run_benchmark, summary_lines,
                          lambda result: f"ours_over_imagefolder={result['ours_over_imagefolder']:.4f}")


if __name__ == "__main__":
    sys.exit(main())
