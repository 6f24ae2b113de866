"""The plan of a teacher-output cache: its files, arrays and sizes, written as ``plan.json`` before any array and
completed into ``manifest.json`` (written last, atomically) when every part is done.

A cache directory holds ``manifest.json`` and, for each rank ``r`` of the ``G`` ranks that wrote it, one
``.npy`` file per array covering the images ``[start, stop)`` of its part:

* ``views`` int32 ``[n, K, 5]``: crop top, left, height, width (pixels of the decoded image) and flip flag;
* ``logits`` ``[n, K, C]`` (float16 or float32), or with top-k storage ``topk_logp`` ``[n, K, k]`` (the
  k largest log-probabilities) and ``topk_index`` ``[n, K, k]`` (their classes);
* optionally ``feature`` ``[n, K, D]``: the teacher's pooled final feature.

Rows are image-major (``(image - start) * K + view``): a training rank touches only the pages of the
images it reads, and any number of training ranks can read a cache written by any number of ranks.
"""
import json

import numpy as np

from .fingerprint import run_fields, unreplayable_keys

FORMAT = "ofakd-teacher-cache"
VERSION = 1
MANIFEST = "manifest.json"
PLAN = "plan.json"
PARTIAL_SUFFIX = ".partial"
OUTPUT_NAMES = ("logits", "feature")
DTYPES = ("float16", "float32")


def stored_arrays(outputs, num_classes, feature_dim, views, dtype, topk):
    """``{array name: (numpy dtype, shape of one image's rows)}`` of a cache."""
    arrays = {"views": ("int32", [views, 5])}
    if "logits" in outputs:
        if topk:
            arrays["topk_logp"] = (dtype, [views, topk])
            arrays["topk_index"] = ("int16" if num_classes <= np.iinfo(np.int16).max else "int32", [views, topk])
        else:
            arrays["logits"] = (dtype, [views, num_classes])
    if "feature" in outputs:
        arrays["feature"] = (dtype, [views, feature_dim])
    return arrays


def part_range(num_images, rank, group_size):
    """Images ``[start, stop)`` that writer rank ``rank`` of ``group_size`` caches."""
    return num_images * rank // group_size, num_images * (rank + 1) // group_size


def part_file(name, rank, group_size):
    return f"{name}-{rank:05d}-of-{group_size:05d}.npy"


def make_plan(cfg, fingerprint, teacher, views, dtype="float16", topk=0, outputs=("logits",), ranks=1):
    """The manifest of the cache a run will write, before any timing fields.

    ``teacher``: ``{"name", "checkpoint", "sha256", "feature_dim", "params"}``.
    """
    if views < 1:
        raise ValueError(f"--views must be >= 1, got {views}")
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {'|'.join(DTYPES)}, got {dtype!r}")
    num_classes = int(cfg["num_classes"])
    if topk and not 1 <= topk < num_classes:
        raise ValueError(f"--topk must be in 1..{num_classes - 1} (num_classes={num_classes}) or 0 for full logits, "
                         f"got {topk}")
    unknown = [name for name in outputs if name not in OUTPUT_NAMES]
    if unknown or "logits" not in outputs:
        raise ValueError(f"cache outputs must include 'logits' and come from {OUTPUT_NAMES}, got {list(outputs)}")
    arrays = stored_arrays(outputs, num_classes, teacher["feature_dim"], views, dtype, topk)
    per_image = sum(np.dtype(dt).itemsize * int(np.prod(shape)) for dt, shape in arrays.values())
    count = fingerprint["num_samples"]
    parts = []
    for rank in range(ranks):
        start, stop = part_range(count, rank, ranks)
        parts.append({"start": start, "stop": stop,
                      "files": {name: part_file(name, rank, ranks) for name in arrays}})
    return {
        "format": FORMAT, "version": VERSION,
        "teacher": teacher["name"], "teacher_checkpoint": teacher["checkpoint"],
        "teacher_sha256": teacher["sha256"], "teacher_feature_dim": int(teacher["feature_dim"]),
        "teacher_params": int(teacher["params"]), "amp_level": cfg["amp_level"],
        "run": run_fields(cfg),
        "split": dict(fingerprint),
        "augmentation": {"approx": bool(cfg["teacher_cache_approx"]), "not_replayed": unreplayable_keys(cfg)},
        "views": int(views), "seed": int(cfg["seed"]), "dtype": dtype, "topk": int(topk), "outputs": list(outputs),
        "arrays": {name: {"dtype": dt, "shape_per_image": list(shape)} for name, (dt, shape) in arrays.items()},
        "bytes_per_image": int(per_image), "total_bytes": int(per_image * count),
        "ranks": int(ranks), "parts": parts,
    }


def first_difference(old, new, prefix=""):
    """Dotted name of the first field (in ``new``'s order) where two plans differ, or None."""
    for key in list(new) + [k for k in old if k not in new]:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found = first_difference(a, b, f"{prefix}{key}.")
            if found:
                return found
        elif a != b:
            return f"{prefix}{key}"
    return None


def lookup(data, dotted):
    """The value at ``dotted`` ("a.b.c") in nested dicts, or None."""
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def short(value):
    """``value`` as JSON, cut to 60 characters (for one-line messages)."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_json(path, what):
    """The JSON document at ``path``; ValueError naming the file and the ``what`` it should hold."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the {what} ({type(err).__name__}: {err})") from None
