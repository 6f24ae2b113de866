"""Image transforms and mixup/cutmix, built from mindcv 0.3.0 with two adaptations.

* mindcv's ImageNet lists start by decoding bytes (``RandomCropDecodeResize`` / ``Decode``): image
  folders keep them (``decode=True``: the file's bytes are decoded in C++, only the crop for training);
  the other readers hand over decoded ``[H, W, 3]`` uint8 arrays, for which those first ops are swapped
  for the same crop on a decoded image / dropped.
* mindcv's ``create_loader`` hard-codes ``label_smoothing=0`` and ``switch_prob=0.5`` for mixup,
  so we build its ``Mixup`` ourselves with the recipe's values.

The same ImageNet recipe serves every dataset: low-resolution sets (CIFAR 32 px, MNIST 28 px) are
up-sampled by RandomResizedCrop (train) or Resize + CenterCrop (val) to ``image_size``, as the
reference does. For ``in_channels == 1`` images are made gray first and reduced to one channel last.
"""
from mindcv.data.mixup import Mixup
from mindcv.data.transforms_factory import create_transforms
from mindspore.dataset import transforms as ds_transforms
from mindspore.dataset import vision


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
    common = dict(mean=mean, std=std, interpolation=cfg["interpolation"])
    if is_training:
        ops = create_transforms(
            "imagenet", image_resize=cfg["image_size"], is_training=True,
            auto_augment=_auto_augment_name(cfg["auto_augment"]),
            scale=tuple(cfg["scale"]), ratio=tuple(cfg["ratio"]), hflip=cfg["hflip"],
            color_jitter=cfg["color_jitter"] or None, re_prob=cfg["re_prob"], **common)
    else:
        ops = create_transforms("imagenet", image_resize=cfg["image_size"], is_training=False,
                                crop_pct=cfg["crop_pct"], **common)
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
