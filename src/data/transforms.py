"""Image transforms and mixup/cutmix, built from mindcv 0.3.0 with these adaptations.

* mindcv's ImageNet lists start by decoding bytes (``RandomCropDecodeResize`` / ``Decode``): image
  folders keep them (``decode=True``: the file's bytes are decoded in C++, only the crop for training);
  the other readers hand over decoded ``[H, W, 3]`` uint8 arrays, for which those first ops are swapped
  for the same crop on a decoded image / dropped.
* mindcv's ``create_loader`` hard-codes ``label_smoothing=0`` and ``switch_prob=0.5`` for mixup,
  so we build its ``Mixup`` ourselves with the recipe's values.
* Evaluation resizes and crops as timm's ``create_transform(is_training=False)`` does with torchvision on
  PIL images (``ResizeCenterCrop``): mindcv's C++ ``Resize`` rounds the long side and does not antialias
  (up to 181/255 apart on a 1024x683 JPEG at 96 px); this one is within 1/255 of timm.
* RandAugment has timm's 15 operations: mindcv's lists lack SolarizeAdd (so each other op was drawn with
  probability 1/14 instead of 1/15); its TranslateX/Y are timm's TranslateXRel/YRel (0.45 of the size).
  Posterize keeps ``bits`` high bits as in timm (mindcv kept ``8 - bits``: at magnitude 9 seven bits instead
  of one), Solarize thresholds are on timm's 0-256 scale (mindcv's 0-255 is one level off), and the
  geometric ops and Equalize run on PIL images as timm's do (mindcv's shear about the centre, not the corner).
* Random erasing is timm's (``RandomErasing``): MindSpore's draws the aspect ratio uniformly in
  [0.3, 3.3], not log-uniformly in [0.3, 1/0.3], over an area of at most 0.33 instead of 1/3, and fills
  with a constant unless asked for noise.

The same ImageNet recipe serves every dataset: low-resolution sets (CIFAR 32 px, MNIST 28 px) are
up-sampled by RandomResizedCrop (train) or Resize + CenterCrop (val) to ``image_size``, as the
reference does. For ``in_channels == 1`` images are made gray first and reduced to one channel last.
"""
import math
import random

import numpy as np
from mindcv.data.auto_augment import AugmentOp
from mindcv.data.mixup import Mixup
from mindcv.data.transforms_factory import create_transforms
from mindspore.dataset import transforms as ds_transforms
from mindspore.dataset import vision
from PIL import Image, ImageOps

# PIL's resampling filters by interpolation name, as torchvision maps them for PIL images ("area" is the box filter)
PIL_FILTERS = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST, "area": Image.BOX}


def eval_scale_size(image_size, crop_pct):
    """The shorter side before the centre crop: ``floor(image_size / crop_pct)`` (256 for 224 at 0.875)."""
    return int(math.floor(image_size / crop_pct))


def resized_size(height, width, size):
    """``(h, w)`` after torchvision's ``Resize(size)`` with an int size: the shorter side becomes ``size``,
    the longer one ``int(size * long / short)`` (truncated: 500x375 -> 341x256)."""
    short, long = min(height, width), max(height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


def center_crop_box(height, width, crop):
    """``(top, left)`` of torchvision's ``CenterCrop(crop)``: offsets rounded half to even, as Python's round."""
    return int(round((height - crop) / 2.0)), int(round((width - crop) / 2.0))


class ResizeCenterCrop:
    """``[H, W, 3]`` uint8 -> ``[crop, crop, 3]`` uint8: timm's evaluation geometry (torchvision ``Resize`` to
    ``floor(crop / crop_pct)`` on the shorter side with PIL's antialiasing filter, then ``CenterCrop``)."""

    def __init__(self, crop, crop_pct, interpolation):
        if interpolation not in PIL_FILTERS:
            raise ValueError(f"interpolation must be one of {', '.join(PIL_FILTERS)}, got {interpolation!r}")
        self.crop, self.size = int(crop), eval_scale_size(crop, crop_pct)
        self.filter = PIL_FILTERS[interpolation]

    def __call__(self, image):
        height, width = image.shape[:2]
        new_h, new_w = resized_size(height, width, self.size)
        if (new_h, new_w) != (height, width):  # torchvision hands an image of the right size on untouched
            image = np.asarray(Image.fromarray(image).resize((new_w, new_h), self.filter))
        top, left = center_crop_box(new_h, new_w, self.crop)
        return np.ascontiguousarray(image[top:top + self.crop, left:left + self.crop])


class RandomErasing:
    """timm's ``RandomErasing`` on a normalised ``[C, H, W]`` float32 image, one box (``re_count`` 1).

    With probability ``prob``: up to 10 tries of an area ``uniform(0.02, 1/3) * H * W`` and an aspect ratio
    ``exp(uniform(log 0.3, log(1/0.3)))``, ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))``;
    the first box inside the image is placed uniformly and filled per pixel with standard normal noise
    (``mode`` "pixel", the authors' default), one value per channel ("rand") or zeros ("const").
    Geometry draws use Python's ``random`` in timm's order (the same seed gives timm's boxes).
    """

    MODES = ("pixel", "rand", "const")

    def __init__(self, prob, mode="pixel", min_area=0.02, max_area=1 / 3, min_aspect=0.3, max_attempts=10):
        if mode not in self.MODES:
            raise ValueError(f"random erasing mode must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.prob, self.mode = float(prob), mode
        self.min_area, self.max_area = float(min_area), float(max_area)
        self.log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
        self.max_attempts = int(max_attempts)

    def box(self, height, width):
        """``(top, left, h, w)`` of one draw, or None (no erasing)."""
        if random.random() > self.prob:
            return None
        area = height * width
        for _ in range(self.max_attempts):
            target_area = random.uniform(self.min_area, self.max_area) * area
            aspect = math.exp(random.uniform(*self.log_aspect))
            h = int(round(math.sqrt(target_area * aspect)))
            w = int(round(math.sqrt(target_area / aspect)))
            if w < width and h < height:
                return random.randint(0, height - h), random.randint(0, width - w), h, w
        return None

    def __call__(self, image):
        channels, height, width = image.shape
        box = self.box(height, width)
        if box is None:
            return image
        top, left, h, w = box
        image = image.copy()
        if self.mode == "pixel":
            fill = np.random.standard_normal((channels, h, w))
        elif self.mode == "rand":
            fill = np.random.standard_normal((channels, 1, 1))
        else:
            fill = 0.0
        image[:, top:top + h, left:left + w] = fill
        return image


def _auto_augment_name(name):
    # timm spells RandAugment 'rand-m9-...', mindcv 'randaug-m9-...'
    if name and name.startswith("rand-"):
        return "randaug-" + name[len("rand-"):]
    return name


def _three(values):
    values = list(values)
    return values * 3 if len(values) == 1 else values


def _on_decoded_images(ops):
    """mindcv's op list with its decode step replaced by its equivalent on decoded arrays."""
    out = []
    for op in ops:
        if isinstance(op, vision.RandomCropDecodeResize):
            out.append(vision.RandomResizedCrop(op.size, scale=op.scale, ratio=op.ratio,
                                                interpolation=op.interpolation, max_attempts=op.max_attempts))
        elif isinstance(op, vision.Decode):
            continue
        else:
            out.append(op)
    return out


def solarize_add(image, add, thresh=128, **_):
    """timm's SolarizeAdd on an ``[H, W, C]`` uint8 array: ``add`` to every value below ``thresh``, at most 255."""
    raised = np.minimum(image.astype(np.int16) + add, 255).astype(np.uint8)
    return np.where(image < thresh, raised, image)


def solarize_add_level(level, _hparams):
    """timm's magnitude -> SolarizeAdd argument: ``min(128, int(level / 10 * 110))``."""
    return min(128, int((level / 10.0) * 110)),


def posterize(image, bits_to_keep, **_):
    """timm's (PIL's) Posterize on a uint8 array: keep the ``bits_to_keep`` high bits (8 or more: unchanged)."""
    if bits_to_keep >= 8:
        return image
    return image & np.uint8((0xFF << (8 - bits_to_keep)) & 0xFF)


def solarize(image, thresh, **_):
    """timm's (PIL's) Solarize on a uint8 array: invert every value >= ``thresh`` (256: none)."""
    return np.where(image >= thresh, 255 - image, image).astype(np.uint8)


def solarize_level(level, _hparams):
    """timm's magnitude -> Solarize threshold: ``min(256, int(level / 10 * 256))``."""
    return min(256, int((level / 10.0) * 256)),


def solarize_increasing_level(level, hparams):
    return 256 - solarize_level(level, hparams)[0],


class _OnPil:
    """An op on ``[H, W, 3]`` uint8 arrays from one on PIL images (the geometric ops, as timm runs them);
    a class so that worker processes can unpickle it."""

    def __init__(self, transform):
        self.transform = transform

    def __call__(self, image, *args, **kwargs):
        return np.asarray(self.transform(Image.fromarray(image), *args, **kwargs))


def _affine(image, matrix, fillcolor, resample):
    # PIL maps each output pixel (x, y) to input (a x + b y + c, d x + e y + f), about the top-left corner
    return image.transform(image.size, Image.AFFINE, matrix, resample=resample, fillcolor=fillcolor)


def shear_x(image, factor, fillcolor, resample):
    return _affine(image, (1, factor, 0, 0, 1, 0), fillcolor, resample)


def shear_y(image, factor, fillcolor, resample):
    return _affine(image, (1, 0, 0, factor, 1, 0), fillcolor, resample)


def translate_x_rel(image, fraction, fillcolor, resample):
    return _affine(image, (1, 0, fraction * image.size[0], 0, 1, 0), fillcolor, resample)


def translate_y_rel(image, fraction, fillcolor, resample):
    return _affine(image, (1, 0, 0, 0, 1, fraction * image.size[1]), fillcolor, resample)


def rotate(image, degrees, fillcolor, resample):
    return image.rotate(degrees, resample=resample, fillcolor=fillcolor)


def equalize(image, **_):
    return ImageOps.equalize(image)


# op name -> (image function, magnitude -> arguments or None to keep mindcv's): where mindcv differs from timm
_TIMM_OPS = {"Posterize": (posterize, None), "PosterizeIncreasing": (posterize, None),
             "PosterizeOriginal": (posterize, None), "Solarize": (solarize, solarize_level),
             "SolarizeIncreasing": (solarize, solarize_increasing_level),
             "ShearX": (_OnPil(shear_x), None), "ShearY": (_OnPil(shear_y), None),
             "TranslateXRel": (_OnPil(translate_x_rel), None), "TranslateYRel": (_OnPil(translate_y_rel), None),
             "Rotate": (_OnPil(rotate), None), "Equalize": (_OnPil(equalize), None)}
_GEOMETRIC = ("ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "Rotate")


def with_timm_ops(rand_augment, interpolation):
    """mindcv's ``RandAugment`` with timm's ops: SolarizeAdd inserted after (increasing) Solarize, timm's
    Posterize and Solarize, and the relative translations under timm's names (mindcv's TranslateX/Y already
    translate by a fraction)."""
    if rand_augment.choice_weights is not None:  # weighted policies ("-w0") keep mindcv's list and weights
        return rand_augment
    ops = []
    for op in rand_augment.ops:
        if op.name in ("TranslateX", "TranslateY"):
            op.name += "Rel"
        if op.name in _TIMM_OPS:
            op.aug_fn, level_fn = _TIMM_OPS[op.name]
            op.level_fn = level_fn or op.level_fn
        if op.name in _GEOMETRIC:  # timm fills uncovered pixels with the mean colour
            op.kwargs = {"fillcolor": tuple(int(v) for v in op.hparams["img_mean"]),
                         "resample": PIL_FILTERS[interpolation]}
        ops.append(op)
        if op.name in ("Solarize", "SolarizeIncreasing"):
            added = AugmentOp("Solarize", prob=op.prob, magnitude=op.magnitude, hparams=op.hparams)
            added.name, added.aug_fn, added.level_fn = "SolarizeAdd", solarize_add, solarize_add_level
            ops.append(added)
    rand_augment.ops = ops
    return rand_augment


def build_image_transforms(cfg, is_training, decode=False):
    """Ops mapping a decoded ``[H, W, 3]`` uint8 image (``decode``: an encoded file's bytes) to a
    normalised ``[C, H, W]`` float32 one."""
    mean = [255.0 * m for m in _three(cfg["mean"])]
    std = [255.0 * s for s in _three(cfg["std"])]
    if is_training:
        ops = create_transforms(
            "imagenet", image_resize=cfg["image_size"], is_training=True,
            auto_augment=_auto_augment_name(cfg["auto_augment"]),
            scale=tuple(cfg["scale"]), ratio=tuple(cfg["ratio"]), hflip=cfg["hflip"],
            color_jitter=cfg["color_jitter"] or None, re_prob=0.0, mean=mean, std=std,
            interpolation=cfg["interpolation"])
        ops = [with_timm_ops(op, cfg["interpolation"]) if type(op).__name__ == "RandAugment" else op for op in ops]
        if cfg["re_prob"] > 0:
            ops.append(RandomErasing(cfg["re_prob"], cfg["re_mode"]))
    else:
        ops = [vision.Decode(), ResizeCenterCrop(cfg["image_size"], cfg["crop_pct"], cfg["interpolation"]),
               vision.Normalize(mean=mean, std=std), vision.HWC2CHW()]
    if not decode:
        ops = _on_decoded_images(ops)
    decoded_at = 1 if decode else 0  # where ops start working on a decoded image: after the decoding op
    if cfg["in_channels"] == 1:
        to_gray = [vision.ConvertColor(vision.ConvertMode.COLOR_RGB2GRAY),
                   vision.ConvertColor(vision.ConvertMode.COLOR_GRAY2RGB)]
        at = next(i for i, op in enumerate(ops) if isinstance(op, vision.HWC2CHW)) + 1
        # three equal gray channels go through the RGB ops; keep one of them at the end
        ops = ops[:decoded_at] + to_gray + ops[decoded_at:at] + [ds_transforms.Slice(slice(0, 1))] + ops[at:]
    return ops


def build_replay_transforms(cfg, photometric=True):
    """The train transforms split around their random geometry: ``(before, crop, after)``.

    ``crop`` is the RandomResizedCrop op (its ``size`` and ``interpolation`` serve to replay a given box);
    the horizontal flip after it is dropped (a replayed view brings its own flag). ``photometric=False``
    leaves out colour jitter, auto-augment and random erasing: what the teacher of a cache sees.
    """
    if not photometric:
        cfg = dict(cfg, color_jitter=0.0, auto_augment=None, re_prob=0.0)
    ops = build_image_transforms(cfg, True)
    at = next(i for i, op in enumerate(ops) if isinstance(op, vision.RandomResizedCrop))
    after = ops[at + 1:]
    if after and isinstance(after[0], vision.RandomHorizontalFlip):
        after = after[1:]
    return ops[:at], ops[at], after


def build_mixup(cfg):
    """mindcv's batch-level ``Mixup`` for the recipe, or None when mixup and cutmix are off.

    It maps ``(images [B, C, H, W], labels [B] int)`` to ``(images, soft labels [B, num_classes]
    float32)`` whose rows sum to 1; label smoothing is folded into the soft labels, so the loss
    must not smooth them again.
    """
    if cfg["mixup"] <= 0 and cfg["cutmix"] <= 0:
        return None
    return Mixup(mixup_alpha=cfg["mixup"], cutmix_alpha=cfg["cutmix"], cutmix_minmax=None,
                 prob=cfg["mixup_prob"], switch_prob=cfg["mixup_switch_prob"], mode="batch",
                 label_smoothing=cfg["label_smoothing"], num_classes=cfg["num_classes"])
