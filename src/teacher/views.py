"""The views a teacher-output cache holds: K crops and flips of every training image, drawn reproducibly.

Views are drawn from ``(seed, image index, view)`` alone with RandomResizedCrop's algorithm (10 tries of
an area in ``scale`` and a log-uniform aspect ratio in ``ratio``, then a centre crop), plus the flip flag,
so any process (any writer rank, any training rank) draws the same box for the same image and view.
Training walks the K views in rounds of K epochs (``view_schedule``).
"""
import math

import numpy as np

MAX_ATTEMPTS = 10  # RandomResizedCrop's tries before its centre-crop fallback
SCHEDULE_SALT = 0x7EAC  # keeps the view schedule's stream apart from other draws seeded with the run's seed


def draw_view(seed, index, view, height, width, scale, ratio, hflip):
    """``(top, left, height, width, flip)`` of view ``view`` of image ``index`` (``height`` x ``width`` pixels).

    RandomResizedCrop's algorithm with a generator seeded by ``(seed, index, view)`` only, so any process
    draws the same box for the same image and view.
    """
    rng = np.random.default_rng([int(seed), int(index), int(view)])
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    box = None
    for _ in range(MAX_ATTEMPTS):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            box = (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
            break
    if box is None:  # centre crop at the nearest allowed aspect ratio
        in_ratio = width / height
        if in_ratio < min(ratio):
            w, h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            w, h = int(round(height * max(ratio))), height
        else:
            w, h = width, height
        box = ((height - h) // 2, (width - w) // 2, h, w)
    flip = int(rng.random() < hflip)
    return (*box, flip)


def view_schedule(num_images, views, seed, epoch):
    """Which cached view every image uses at ``epoch`` (int64 ``[num_images]``).

    Epochs come in rounds of ``views``: in round ``epoch // views`` each image walks through its own
    seeded permutation of the views, so every view is used once before any repeats.
    """
    rnd, position = divmod(int(epoch), int(views))
    rng = np.random.default_rng([int(seed), rnd, SCHEDULE_SALT])
    keys = rng.random((int(num_images), int(views)), dtype=np.float32)
    return np.argsort(keys, axis=1, kind="stable")[:, position].astype(np.int64)
