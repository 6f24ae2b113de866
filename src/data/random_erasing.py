"""timm's random erasing, in place of MindSpore's ``RandomErasing``, which draws the aspect ratio uniformly in
[0.3, 3.3] (mean log aspect +0.43: mostly wide boxes) instead of log-uniformly in [0.3, 1/0.3], takes areas up
to 0.33 instead of 1/3, sets the height as ``round(w / aspect)`` and fills with a constant unless asked for
noise; the authors' train.py erases with per-pixel normal noise (timm's "pixel" mode, its default).
"""
import math
import random

import numpy as np


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
