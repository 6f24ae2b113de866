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
* RandAugment's operations are timm's (``rand_augment.with_timm_ops``) and so is random erasing
  (``random_erasing.RandomErasing``): mindcv's / MindSpore's differ (see those files).

The same ImageNet recipe serves every dataset: low-resolution sets (CIFAR 32 px, MNIST 28 px) are
up-sampled by RandomResizedCrop (train) or Resize + CenterCrop (val) to ``image_size``, as the
reference does. For ``in_channels == 1`` images are made gray first and reduced to one channel last.
"""
import math

import numpy as np
from mindcv.data.mixup import Mixup
from mindcv.data.transforms_factory import create_transforms
from mindspore.dataset import transforms as ds_transforms
from mindspore.dataset import vision
from PIL import Image

from .rand_augment import with_timm_ops
from .random_erasing import RandomErasing

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
        ops = [with_timm_ops(op, PIL_FILTERS[cfg["interpolation"]]) if type(op).__name__ == "RandAugment" else op for op in ops]
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
