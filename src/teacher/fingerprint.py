"""What a teacher-output cache was made for: the training split's fingerprint and the run keys its outputs
depend on (the teacher's input and the view distribution), and the augmentation it cannot replay.

A cache replays crop and flip only: photometric (``auto_augment``, ``color_jitter``, ``re_prob``) and
mixing (``mixup``, ``cutmix``) augmentation is refused unless ``teacher_cache_approx`` is set.
"""
import hashlib
import os

import numpy as np

# keys of the run the cached outputs depend on: the teacher's input and the view distribution
RUN_KEYS = ("dataset", "image_size", "in_channels", "num_classes", "interpolation", "mean", "std",
            "scale", "ratio", "hflip")


def split_fingerprint(source):
    """``{"num_samples", "sha256"}`` of a train source: labels plus pixels (arrays) or file names (folders).

    Memoised on the source: a pipeline made every epoch hashes it once.
    """
    cached = getattr(source, "_teacher_cache_fingerprint", None)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(source.labels, dtype=np.int64).tobytes())
    if hasattr(source, "paths"):  # folder images: class folder / file name (the root may move)
        for path in source.paths:
            digest.update(("/".join(os.path.normpath(path).split(os.sep)[-2:]) + "\n").encode("utf-8"))
    elif hasattr(source, "images"):
        digest.update(np.ascontiguousarray(source.images).data)
    elif hasattr(source, "pool"):
        digest.update(np.ascontiguousarray(source.pool).data)
    fingerprint = {"num_samples": len(source), "sha256": digest.hexdigest()}
    source._teacher_cache_fingerprint = fingerprint
    return fingerprint


def run_fields(cfg):
    """The values of ``RUN_KEYS`` in ``cfg``, as a manifest stores them."""
    out = {}
    for key in RUN_KEYS:
        value = cfg[key]
        out[key] = [float(v) for v in value] if isinstance(value, (list, tuple)) else value
    return out


def unreplayable_keys(cfg):
    """The run's random augmentation that a cache cannot replay (``key=value`` strings): photometric and mixing."""
    keys = []
    if cfg["auto_augment"]:
        keys.append(f"auto_augment={cfg['auto_augment']}")
    elif cfg["color_jitter"] > 0:  # colour jitter is unused when auto_augment is set
        keys.append(f"color_jitter={cfg['color_jitter']:g}")
    for key in ("re_prob", "mixup", "cutmix"):
        if cfg[key] > 0:
            keys.append(f"{key}={cfg[key]:g}")
    return keys


def check_replayable(cfg):
    """ValueError naming the keys when the recipe has augmentation a cache cannot replay, unless approximate."""
    keys = unreplayable_keys(cfg)
    if keys and not cfg["teacher_cache_approx"]:
        off = " ".join(k.split("=")[0] + ("=null" if k.startswith("auto_augment=") else "=0") for k in keys)
        raise ValueError(f"teacher_cache: {', '.join(keys)} cannot be replayed from a teacher-output cache (only "
                         f"crop and flip are); turn them off with {off} (on the cache tool's command and on "
                         f"every train command that reads the cache), or set teacher_cache_approx: true to use "
                         f"the teacher's outputs on the cropped/flipped view (see docs/teacher_cache.md)")
    return keys
