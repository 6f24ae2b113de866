"""Our data transforms against timm's, recipe by recipe (test-only: needs PyTorch, timm and torchvision).

    python -m benchmarks.transforms_twin --json results/equivalence/transforms.json [--draws 10000]

* evaluation: each recipe's ``create_dataset(cfg, "val")`` against timm's ``create_transform(is_training=False)``
  (with its crop_pct, interpolation, mean and std) on JPEGs written here at odd sizes, and for the CIFAR
  recipes on 32 px arrays; the largest difference in 1/255 units of the image;
* training: the parameters of every random op (RandomResizedCrop, flip, colour jitter, RandAugment, random
  erasing, mixup / cutmix) read from both sides' objects, then their draws: RandomResizedCrop boxes of
  MindSpore's C++ op (read back from a coordinate image) against timm's ``get_params`` by statistics;
  random-erasing boxes, RandAugment's op / magnitude choices and mixup / cutmix batches given the same seeds,
  draw for draw.

timm's eval and train transforms are the authors' (timm 0.6.5 builds them the same way); the authors'
train interpolation "random" and their mixup on uint8 images before normalising (timm's prefetcher) are
documented differences (docs/equivalence.md).
"""
import argparse
import io
import json
import math
import os
import random
import sys
import tempfile

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = ("imagenet_cnn", "imagenet_vit_mlp", "cifar100_cnn", "cifar100_vit_mlp")
# (width, height): landscape, portrait, square, 3:2, a large one, one smaller than the crop
JPEG_SIZES = ((500, 375), (375, 500), (231, 231), (640, 427), (1024, 683), (100, 80))
EVAL_IMAGE_SIZES = (224, 96, 64)
# RandomResizedCrop boxes are read from a coordinate image this size (width, height: values fit uint8)
COORD_SIZE = (250, 200)


def write_jpegs(folder, sizes=JPEG_SIZES, seed=0):
    """Smooth random photos with noise as ``folder/val/c0/<i>.jpg`` (PIL, quality 90); their paths."""
    rng = np.random.RandomState(seed)
    out = os.path.join(folder, "val", "c0")
    os.makedirs(out, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        small = rng.randint(0, 256, size=(h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
        image = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC)).astype(np.int16)
        image = np.clip(image + rng.randint(-20, 21, size=image.shape), 0, 255).astype(np.uint8)
        paths.append(os.path.join(out, f"{i}.jpg"))
        Image.fromarray(image).save(paths[-1], quality=90)
    return paths


def recipe_config(recipe, *overrides):
    from src.config import load_config

    return load_config(os.path.join(ROOT, "configs", "recipes", recipe + ".yaml"),
                       ["student=resnet18", "distiller=none", "data_dir=/tmp", *overrides])


def _timm_eval(timm, cfg):
    return timm.data.create_transform(cfg["image_size"], is_training=False, crop_pct=cfg["crop_pct"],
                                      interpolation=cfg["interpolation"], mean=tuple(cfg["mean"]),
                                      std=tuple(cfg["std"]))


def eval_differences(timm, recipe, image_size, folder, arrays=None):
    """Largest ``|ours - timm|`` per image, in units of 1/255 of the image (normalised difference x 255 std)."""
    from src.data import create_dataset
    from src.data.loader import image_pipeline
    from src.data.sampler import PaddedValSampler
    from src.data.source import ArraySource

    recipe_cfg = recipe_config(recipe)
    mean, std = recipe_cfg["mean"], recipe_cfg["std"]
    common = [f"image_size={image_size}", "batch_size=2", "val_batch_size=1", "num_workers=1",
              "python_multiprocessing=false", f"mean={mean}", f"std={std}", "num_classes=1"]
    scale = 255.0 * np.asarray(std, dtype=np.float64).reshape(3, 1, 1)
    rows = []
    cfg = recipe_config(recipe, "dataset=imagefolder", f"data_dir={folder}", *common)
    timm_eval = _timm_eval(timm, cfg)
    from src.data import load_source

    source = load_source(cfg, "val")
    ours = [image[0] for image, _ in create_dataset(cfg, "val", source=source)
            .create_tuple_iterator(output_numpy=True, num_epochs=1)]
    for path, mine in zip(source.paths, ours):
        with Image.open(path) as im:
            size = im.size
            theirs = timm_eval(im.convert("RGB")).numpy()
        rows.append({"recipe": recipe, "image_size": image_size, "input": f"jpeg {size[0]}x{size[1]}",
                     "max_abs_255": float((np.abs(mine - theirs) * scale).max())})
    if arrays is not None:  # decoded arrays (the CIFAR readers' path: no decoding op)
        source = ArraySource(arrays, np.zeros(len(arrays), dtype=np.int64), "cifar100")
        pipeline = image_pipeline(cfg, source, PaddedValSampler(len(source)), False).batch(1)
        for array, (mine, _) in zip(arrays, pipeline.create_tuple_iterator(output_numpy=True, num_epochs=1)):
            theirs = timm_eval(Image.fromarray(array)).numpy()
            rows.append({"recipe": recipe, "image_size": image_size,
                         "input": f"array {array.shape[1]}x{array.shape[0]}",
                         "max_abs_255": float((np.abs(mine[0] - theirs) * scale).max())})
    return rows


# ------------------------------------------------------------------------------------ training parameters

def timm_train_transform(timm, cfg):
    """timm's training transform for the recipe, built as the authors' train.py builds it (re_count 1)."""
    return timm.data.create_transform(
        cfg["image_size"], is_training=True, scale=tuple(cfg["scale"]), ratio=tuple(cfg["ratio"]),
        hflip=cfg["hflip"], color_jitter=cfg["color_jitter"], auto_augment=cfg["auto_augment"],
        interpolation=cfg["interpolation"], mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
        re_prob=cfg["re_prob"], re_mode=cfg["re_mode"], re_count=1)


def timm_mixup(timm, cfg):
    """timm's ``Mixup`` with the arguments of the authors' train.py, or None when mixup and cutmix are off."""
    if cfg["mixup"] <= 0 and cfg["cutmix"] <= 0:
        return None
    return timm.data.Mixup(mixup_alpha=cfg["mixup"], cutmix_alpha=cfg["cutmix"], cutmix_minmax=None,
                           prob=cfg["mixup_prob"], switch_prob=cfg["mixup_switch_prob"], mode="batch",
                           label_smoothing=cfg["label_smoothing"], num_classes=cfg["num_classes"])


def _interp_name(value):
    name = getattr(value, "name", None) or getattr(value, "value", value)
    return str(name).lower().replace("resampling.", "").replace("linear", "bilinear").replace("bibilinear", "bilinear")


def _rand_augment_params(ra, interpolation_of):
    if ra is None:
        return None
    first = ra.ops[0]
    return {"num_layers": ra.num_layers,
            "choice_weights": None if ra.choice_weights is None else [float(w) for w in ra.choice_weights],
            "ops": [[op.name, op.prob, op.magnitude, op.magnitude_std, op.magnitude_max] for op in ra.ops],
            "translate_const": first.hparams.get("translate_const"),
            "img_mean": [int(v) for v in first.hparams["img_mean"]],
            "interpolation": interpolation_of(first.hparams.get("interpolation"))}


def _mixup_params(mixup):
    if mixup is None:
        return None
    return {k: getattr(mixup, k) for k in ("mixup_alpha", "cutmix_alpha", "cutmix_minmax", "mix_prob", "switch_prob",
                                           "mode", "label_smoothing", "num_classes", "correct_lam")}


def timm_train_parameters(timm, cfg):
    """Every random op's parameters in timm's transform and mixup, as plain values."""
    out = {"crop": None, "hflip": 0.0, "color_jitter": None, "rand_augment": None, "erasing": None}
    for op in timm_train_transform(timm, cfg).transforms:
        kind = type(op).__name__
        if kind == "RandomResizedCropAndInterpolation":
            out["crop"] = {"size": list(op.size), "scale": list(op.scale), "ratio": list(op.ratio),
                           "interpolation": _interp_name(op.interpolation)}
        elif kind == "RandomHorizontalFlip":
            out["hflip"] = op.p
        elif kind == "ColorJitter" and op.brightness is not None:  # ColorJitter(0) is no op: left out
            out["color_jitter"] = [list(op.brightness), list(op.contrast), list(op.saturation)]
        elif kind == "RandAugment":
            out["rand_augment"] = _rand_augment_params(op, _interp_name)
        elif kind == "RandomErasing":
            out["erasing"] = {"prob": op.probability, "mode": op.mode, "area": [op.min_area, op.max_area],
                              "log_aspect": list(op.log_aspect_ratio), "count": [op.min_count, op.max_count]}
    out["mixup"] = _mixup_params(timm_mixup(timm, cfg))
    return out


def our_train_parameters(cfg):
    """The same values read from our ops (``build_image_transforms`` on file bytes, ``build_mixup``)."""
    from mindspore.dataset import vision

    from src.data.random_erasing import RandomErasing
    from src.data.transforms import build_image_transforms, build_mixup

    out = {"crop": None, "hflip": 0.0, "color_jitter": None, "rand_augment": None, "erasing": None}
    for op in build_image_transforms(cfg, True, decode=True):
        kind = type(op).__name__
        if isinstance(op, vision.RandomCropDecodeResize):
            size = [op.size, op.size] if isinstance(op.size, int) else list(op.size)
            out["crop"] = {"size": size, "scale": list(op.scale), "ratio": list(op.ratio),
                           "interpolation": _interp_name(op.interpolation)}
        elif isinstance(op, vision.RandomHorizontalFlip):
            out["hflip"] = op.prob
        elif isinstance(op, vision.RandomColorAdjust):
            out["color_jitter"] = [list(op.brightness), list(op.contrast), list(op.saturation)]
        elif kind == "RandAugment":
            out["rand_augment"] = _rand_augment_params(op, _interp_name)
        elif isinstance(op, RandomErasing):
            out["erasing"] = {"prob": op.prob, "mode": op.mode, "area": [op.min_area, op.max_area],
                              "log_aspect": list(op.log_aspect), "count": [1, 1]}
    out["mixup"] = _mixup_params(build_mixup(cfg))
    return out


def parameter_differences(ours, theirs, path=""):
    """``["key: ours != timm", ...]`` over two nested parameter dicts (floats compared to 1e-6 relative)."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out = []
        for key in sorted(set(ours) | set(theirs)):
            out += parameter_differences(ours.get(key), theirs.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(ours, (list, tuple)) and isinstance(theirs, (list, tuple)) and len(ours) == len(theirs):
        out = []
        for i, (a, b) in enumerate(zip(ours, theirs)):
            out += parameter_differences(a, b, f"{path}[{i}]")
        return out
    if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)) and not isinstance(ours, bool):
        same = math.isclose(float(ours), float(theirs), rel_tol=1e-6, abs_tol=1e-9)
    else:
        same = ours == theirs
    return [] if same else [f"{path}: ours {ours!r} != timm {theirs!r}"]


# ------------------------------------------------------------------------------------ training draws

def our_crop_boxes(draws, scale, ratio, seed=0):
    """``[draws, 4]`` (top, left, height, width) of MindSpore's C++ ``RandomCropDecodeResize`` (the op that
    crops image files in training) on a PNG whose red / green values are the x / y coordinates."""
    import mindspore.dataset as ds
    from mindspore.dataset import vision

    width, height = COORD_SIZE
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[..., 0] = np.arange(width)[None, :]
    image[..., 1] = np.arange(height)[:, None]
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    data = np.frombuffer(buffer.getvalue(), dtype=np.uint8)

    def box(out):  # nearest up-sampling to 256 px shows every column and row of the box
        x, y = out[..., 0], out[..., 1]
        return np.array([y.min(), x.min(), int(y.max()) - y.min() + 1, int(x.max()) - x.min() + 1], dtype=np.int32)

    ds.config.set_seed(seed)
    pipeline = ds.GeneratorDataset(lambda: ((data,) for _ in range(draws)), ["image"], shuffle=False)
    crop = vision.RandomCropDecodeResize(256, scale=tuple(scale), ratio=tuple(ratio),
                                         interpolation=vision.Inter.NEAREST)
    pipeline = pipeline.map([crop, box], input_columns="image")
    return np.stack([row[0] for row in pipeline.create_tuple_iterator(output_numpy=True, num_epochs=1)])


def timm_crop_boxes(timm, draws, scale, ratio, seed=0):
    """The same from timm's ``RandomResizedCropAndInterpolation.get_params``."""
    from timm.data.transforms import RandomResizedCropAndInterpolation

    image = Image.new("RGB", COORD_SIZE)
    random.seed(seed)
    return np.array([RandomResizedCropAndInterpolation.get_params(image, tuple(scale), tuple(ratio))
                     for _ in range(draws)], dtype=np.int64)


def box_statistics(boxes):
    """Mean and standard error of the area fraction, log aspect (w/h) and centre (x, y as fractions)."""
    width, height = COORD_SIZE
    top, left, h, w = (boxes[:, i].astype(np.float64) for i in range(4))
    values = {"area": h * w / (width * height), "log_aspect": np.log(w / h),
              "center_x": (left + w / 2) / width, "center_y": (top + h / 2) / height}
    return {k: {"mean": float(v.mean()), "se": float(v.std() / math.sqrt(len(v)))} for k, v in values.items()}


def crop_comparison(timm, cfg, draws, seed=0):
    """Box statistics both sides; ``worst_z``: the largest |difference of means| in standard errors."""
    ours = box_statistics(our_crop_boxes(draws, cfg["scale"], cfg["ratio"], seed))
    theirs = box_statistics(timm_crop_boxes(timm, draws, cfg["scale"], cfg["ratio"], seed))
    z = {k: abs(ours[k]["mean"] - theirs[k]["mean"]) / math.hypot(ours[k]["se"], theirs[k]["se"]) for k in ours}
    return {"draws": draws, "image": list(COORD_SIZE), "ours": ours, "timm": theirs, "z": z, "worst_z": max(z.values())}


def erasing_comparison(timm, cfg, draws, size=(3, 56, 48), seed=0):
    """Random-erasing boxes from the same ``random`` seed: how many differ, and the fill's mean / std."""
    from timm.data.random_erasing import RandomErasing as TimmErasing
    import torch

    from src.data.random_erasing import RandomErasing

    ours = RandomErasing(cfg["re_prob"], cfg["re_mode"])
    theirs = TimmErasing(cfg["re_prob"], mode=cfg["re_mode"], max_count=1, device="cpu")
    random.seed(seed)
    our_boxes = [ours.box(size[1], size[2]) for _ in range(draws)]
    random.seed(seed)
    their_boxes, fills = [], []
    for _ in range(draws):
        image = torch.zeros(size)
        theirs(image)
        hit = torch.nonzero(image.abs().sum(0))
        if len(hit) == 0:
            their_boxes.append(None)
            continue
        (top, left), (bottom, right) = hit.min(0).values.tolist(), hit.max(0).values.tolist()
        their_boxes.append((top, left, bottom - top + 1, right - left + 1))
    np.random.seed(seed)
    for _ in range(200):
        erased = ours(np.zeros(size, dtype=np.float32))
        fills.append(erased[erased != 0])
    fills = np.concatenate(fills)
    erased = [b for b in our_boxes if b is not None]
    return {"draws": draws, "differing_boxes": sum(a != b for a, b in zip(our_boxes, their_boxes)),
            "erased_fraction": len(erased) / draws,
            "mean_area": float(np.mean([h * w / (size[1] * size[2]) for _, _, h, w in erased])),
            "fill_mean": float(fills.mean()), "fill_std": float(fills.std())}


def _recorded(ra):
    """Replace every op's image function of a RandAugment by a recorder; returns the record list."""
    calls = []
    for op in ra.ops:
        op.aug_fn = (lambda name: lambda img, *args, **kwargs: calls.append(
            (name, tuple(round(float(a), 9) for a in args))) or img)(op.name)
    return calls


def rand_augment_comparison(timm, cfg, draws, seed=0):
    """RandAugment's chosen ops and their arguments, given the same ``random`` / numpy seeds on both sides."""
    from src.data.transforms import build_image_transforms

    if not cfg["auto_augment"]:
        return None
    ours = next(op for op in build_image_transforms(cfg, True) if type(op).__name__ == "RandAugment")
    theirs = next(op for op in timm_train_transform(timm, cfg).transforms if type(op).__name__ == "RandAugment")
    records = []
    for ra in (ours, theirs):
        calls = _recorded(ra)
        random.seed(seed)
        np.random.seed(seed)
        for _ in range(draws):
            ra(None)
        records.append(calls)
    return {"draws": draws, "calls": [len(r) for r in records],
            "differing_calls": sum(a != b for a, b in zip(*records)) + abs(len(records[0]) - len(records[1]))}


def rand_bbox_065(img_shape, lam, margin=0.0, count=None):
    """timm 0.6.5's CutMix box (the authors' run): ``cy +- cut_h // 2``; timm 1.0 ends the box at
    ``cy + (cut_h + 1) // 2``, one row / column more for an odd cut. Same numpy draws otherwise."""
    ratio = np.sqrt(1 - lam)
    img_h, img_w = img_shape[-2:]
    cut_h, cut_w = int(img_h * ratio), int(img_w * ratio)
    margin_y, margin_x = int(margin * cut_h), int(margin * cut_w)
    cy = np.random.randint(0 + margin_y, img_h - margin_y, size=count)
    cx = np.random.randint(0 + margin_x, img_w - margin_x, size=count)
    return (np.clip(cy - cut_h // 2, 0, img_h), np.clip(cy + cut_h // 2, 0, img_h),
            np.clip(cx - cut_w // 2, 0, img_w), np.clip(cx + cut_w // 2, 0, img_w))


def rand_augment_op_outputs(timm, cfg, seed=0):
    """Each RandAugment op applied once at magnitude 9 (sign and interpolation fixed) to the same 64x48 photo:
    ``{op: max |ours - timm|}`` in 0-255 units (ours on the uint8 array, timm's on the PIL image)."""
    from src.data.transforms import build_image_transforms

    if not cfg["auto_augment"]:
        return None
    ours = next(op for op in build_image_transforms(cfg, True) if type(op).__name__ == "RandAugment")
    theirs = next(op for op in timm_train_transform(timm, cfg).transforms if type(op).__name__ == "RandAugment")
    with tempfile.TemporaryDirectory() as tmp:
        with Image.open(write_jpegs(tmp, sizes=((64, 48),), seed=seed)[0]) as im:
            image = im.convert("RGB")
    array = np.asarray(image)
    out = {}
    for mine, their in zip(ours.ops, theirs.ops):
        random.seed(seed)  # the random sign of a level
        args = mine.level_fn(9.0, mine.hparams) if mine.level_fn else ()
        random.seed(seed)
        their_args = their.level_fn(9.0, their.hparams) if their.level_fn else ()
        a = np.asarray(mine.aug_fn(array.copy(), *args, **dict(mine.kwargs)), dtype=np.int16)
        b = np.asarray(their.aug_fn(image.copy(), *their_args, **dict(their.kwargs)), dtype=np.int16)
        out[their.name] = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
    return out


def mixup_comparison(timm, cfg, batches, seed=0, batch=8, image_size=15, bbox_065=False):
    """Largest difference of mixed images and soft targets over ``batches`` batches from the same numpy seed
    (``bbox_065``: timm's Mixup with timm 0.6.5's CutMix box)."""
    import timm.data.mixup as timm_mixup_module

    from src.data.transforms import build_mixup

    ours, theirs = build_mixup(cfg), timm_mixup(timm, cfg)
    if ours is None:
        return None
    saved = timm_mixup_module.rand_bbox
    if bbox_065:
        timm_mixup_module.rand_bbox = rand_bbox_065
    try:
        return _mixup_batches(ours, theirs, cfg, batches, seed, batch, image_size)
    finally:
        timm_mixup_module.rand_bbox = saved


def _mixup_batches(ours, theirs, cfg, batches, seed, batch, image_size):
    import torch

    rng = np.random.RandomState(seed + 1)
    worst_image = worst_target = 0.0
    kinds, differing = {"mixup": 0, "cutmix": 0}, 0
    for i in range(batches):
        x = rng.standard_normal((batch, 3, image_size, image_size)).astype(np.float32)
        y = rng.randint(0, cfg["num_classes"], size=batch)
        np.random.seed(seed + i)
        x_ours, y_ours = ours(x.copy(), y.astype(np.int32))
        np.random.seed(seed + i)
        x_timm, y_timm = theirs(torch.from_numpy(x.copy()), torch.from_numpy(y))
        worst_image = max(worst_image, float(np.abs(x_ours - x_timm.numpy()).max()))
        worst_target = max(worst_target, float(np.abs(y_ours - y_timm.numpy()).max()))
        kinds["cutmix" if np.any(x_timm.numpy() == x[::-1]) else "mixup"] += 1
        differing += int(not np.allclose(x_ours, x_timm.numpy(), atol=1e-6))
    return {"batches": batches, "differing_batches": differing, "worst_image_diff": worst_image,
            "worst_target_diff": worst_target, "kinds": kinds}


# ------------------------------------------------------------------------------------ all of it

def versions():
    import PIL
    import timm
    import torch
    import torchvision

    return {"timm": timm.__version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "pillow": PIL.__version__}


def run(draws=10000, folder=None):
    from benchmarks.timm_twin import has_real_torchvision, import_timm

    timm = import_timm()
    if not has_real_torchvision(timm):
        raise RuntimeError("timm's transforms need torchvision: pip install --no-deps torchvision==0.28.0")
    import timm.data  # noqa: F401

    result = {"versions": versions(), "eval": [], "train": {}}
    with tempfile.TemporaryDirectory() as tmp:
        write_jpegs(folder or tmp)
        arrays = np.random.RandomState(1).randint(0, 256, size=(3, 32, 32, 3)).astype(np.uint8)
        for recipe in RECIPES:
            for size in EVAL_IMAGE_SIZES:
                result["eval"] += eval_differences(timm, recipe, size, folder or tmp,
                                                   arrays if recipe.startswith("cifar") else None)
    result["eval_max_abs_255"] = max(row["max_abs_255"] for row in result["eval"])
    for recipe in RECIPES:
        cfg = recipe_config(recipe)
        ours, theirs = our_train_parameters(cfg), timm_train_parameters(timm, cfg)
        result["train"][recipe] = {
            "ours": ours, "timm": theirs, "differences": parameter_differences(ours, theirs),
            "crop": crop_comparison(timm, cfg, draws),
            "erasing": erasing_comparison(timm, cfg, draws) if cfg["re_prob"] > 0 else None,
            "rand_augment": rand_augment_comparison(timm, cfg, draws // 10),
            "rand_augment_op_max_abs_255": rand_augment_op_outputs(timm, cfg),
            "mixup": mixup_comparison(timm, cfg, 200),
            "mixup_bbox_065": mixup_comparison(timm, cfg, 200, bbox_065=True),
        }
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description="our data transforms against timm's, per recipe")
    parser.add_argument("--draws", type=int, default=10000, help="random draws per statistic")
    parser.add_argument("--json", help="write the full result here")
    args = parser.parse_args(argv)
    result = run(args.draws)
    if args.json:
        from src.files import write_text_atomic

        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        write_text_atomic(args.json, json.dumps(result, indent=1, default=str) + "\n")
    print(f"eval: max |ours - timm| = {result['eval_max_abs_255']:.4f} / 255 over {len(result['eval'])} images")
    for recipe, row in result["train"].items():
        crop = row["crop"]
        print(f"{recipe}: {len(row['differences'])} parameter differences; crop area {crop['ours']['area']['mean']:.4f} "
              f"vs {crop['timm']['area']['mean']:.4f}, worst z {crop['worst_z']:.2f}"
              + (f"; erasing boxes differing {row['erasing']['differing_boxes']}" if row["erasing"] else "")
              + (f"; RandAugment calls differing {row['rand_augment']['differing_calls']}" if row["rand_augment"] else "")
              + (f"; mixup batches differing {row['mixup']['differing_batches']} of {row['mixup']['batches']} "
                 f"(with timm 0.6.5's CutMix box {row['mixup_bbox_065']['differing_batches']})" if row["mixup"] else ""))
        for line in row["differences"]:
            print("   ", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
