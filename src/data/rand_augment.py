"""RandAugment with timm's operations, on mindcv's ``RandAugment`` (which draws ops and magnitudes as timm does).

Where mindcv 0.3.0's operations differ from timm's (measured against timm 1.0.31 at magnitude 9):
its lists lack SolarizeAdd (14 ops: each drawn with probability 1/14 instead of 1/15); its Posterize keeps
``8 - bits`` bits (7 instead of 1 at magnitude 9); its Solarize thresholds are on a 0-255 scale (timm:
0-256); its Shear / Translate / Rotate use MindSpore's affine about the image centre (up to 244 grey levels
from timm's); its Equalize is up to 22 levels off. Its TranslateX/Y already translate by a fraction of the
size: they are timm's TranslateXRel/YRel. ``with_timm_ops`` fixes all of these; the four enhance ops
(Color, Contrast, Brightness, Sharpness) stay mindcv's, within one grey level of timm's.
"""
import numpy as np
from mindcv.data.auto_augment import AugmentOp
from PIL import Image, ImageOps

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


def with_timm_ops(rand_augment, resample):
    """mindcv's ``RandAugment`` with timm's ops: SolarizeAdd inserted after (increasing) Solarize, timm's
    Posterize and Solarize, and the relative translations under timm's names (mindcv's TranslateX/Y already
    translate by a fraction). ``resample``: the PIL filter of the geometric ops (the recipe's interpolation)."""
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
                         "resample": resample}
        ops.append(op)
        if op.name in ("Solarize", "SolarizeIncreasing"):
            added = AugmentOp("Solarize", prob=op.prob, magnitude=op.magnitude, hparams=op.hparams)
            added.name, added.aug_fn, added.level_fn = "SolarizeAdd", solarize_add, solarize_add_level
            ops.append(added)
    rand_augment.ops = ops
    return rand_augment
