"""Map a source state dict onto one of our architectures: names one to one and shapes equal, or a refusal.

Framework-free (NumPy arrays in, NumPy arrays out): the model only contributes its parameter names and
shapes, so the rules can be checked without building a network.
"""
from dataclasses import dataclass

import numpy as np

from . import beit, cnn, cyclemlp, mlp, swin, vit
from .rules import mindspore_leaf, pick_layout

LAYOUTS = {}
for _family in (cnn, vit, swin, mlp, beit, cyclemlp):
    LAYOUTS.update(_family.LAYOUTS)

# Parameters whose shape follows the input size: a mismatch there means another --image-size.
_SIZE_DEPENDENT = ("relative_position_bias_table", "pos_embed", "linear_tokens", "mlp_tokens")


@dataclass
class Mapping:
    """The outcome of a successful mapping."""

    params: dict        # our parameter name -> float32 ndarray of our shape
    layout: str         # which source layout was recognised
    skipped: list       # source names dropped on purpose (buffers our models rebuild)
    dropped_head: list  # source names of the classifier left out (drop_head)
    random_head: list   # our classifier parameters left at their random init (drop_head)
    resampled: list     # our parameters resized to the model's input size (``adapt``), with their source shape


def convertible_archs():
    return sorted(LAYOUTS)


def layout_for(arch, names):
    """The source layout of ``arch`` that a checkpoint with these tensor ``names`` uses."""
    if arch not in LAYOUTS:
        raise ValueError(f"no checkpoint conversion for arch '{arch}'; convertible: {', '.join(convertible_archs())}")
    return pick_layout(LAYOUTS[arch], names)


def infer_num_classes(arch, state):
    """Classes of the checkpoint's classifier (rows of its head weight), or None for a headless checkpoint."""
    layout = layout_for(arch, state)
    for name, value in state.items():
        if not layout.skipped(name) and layout.target(name) == layout.head[0]:
            return int(value.shape[0])
    return None


def _names(items, limit=6):
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown + (f" (+{len(items) - limit} more)" if len(items) > limit else "")


def map_state_dict(arch, state, expected, source="checkpoint", drop_head=False, adapt=None, layout=None):
    """Rename ``state`` ({source name: ndarray}) onto ``expected`` ({our name: shape}) of ``arch``.

    Every expected parameter must receive exactly one tensor of its shape and every source tensor must
    land on a parameter, except known buffers (skipped) and, with ``drop_head``, the classifier (left at
    its random init). Anything else raises ValueError in one line naming the tensors. ``adapt``
    ({our name: ndarray} -> the same) may first fit size-dependent tensors to the model (the model's
    ``adapt_checkpoint``, e.g. a position embedding resampled to another image size). ``layout`` maps
    parts that are no registry model (e.g. ``branches.BRANCHES``, the distillers' exit branches); ``arch``
    then only names them in messages.
    """
    layout = layout or layout_for(arch, state)
    expected = {k: tuple(v) for k, v in expected.items()}
    head = set(layout.head)
    params, origin, skipped, dropped, unexpected = {}, {}, [], [], []
    for name, value in state.items():
        if layout.skipped(name):
            skipped.append(name)
            continue
        ours = mindspore_leaf(layout.target(name), expected)
        if drop_head and ours in head:
            dropped.append(name)
        elif ours not in expected:
            unexpected.append(name if ours == name else f"{name} (as {ours})")
        elif ours in origin:
            raise ValueError(f"'{source}': tensors '{origin[ours]}' and '{name}' both map onto '{ours}' of {arch}")
        else:
            origin[ours] = name
            params[ours] = value
    missing = [k for k in expected if k not in params and not (drop_head and k in head)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} parameter(s) of ours missing from it: {_names(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensor(s) in it: {_names(unexpected)}")
        raise ValueError(f"'{source}' does not map one to one onto {arch} (read as {layout.source} layout): "
                         + "; ".join(parts))
    resampled = []
    if adapt is not None:
        before = {k: tuple(v.shape) for k, v in params.items()}
        params = adapt(params)
        resampled = [(k, before[k], tuple(v.shape)) for k, v in params.items() if tuple(v.shape) != before[k]]
    mismatched = []
    for ours, value in params.items():
        want = expected[ours]
        if value.dtype.kind != "f":
            raise ValueError(f"'{source}': tensor '{origin[ours]}' is {value.dtype}, {arch} expects floating point")
        if value.shape != want:
            if layout.may_reshape(ours) and value.size == int(np.prod(want)):
                value = value.reshape(want)
            else:
                mismatched.append(ours)
                continue
        params[ours] = np.ascontiguousarray(value, dtype=np.float32)
    if mismatched:
        # A body mismatch says more (another architecture or image size) than a head one; weight before bias.
        mismatched.sort(key=lambda n: (n in head, layout.head.index(n) if n in head else 0))
        ours = mismatched[0]
        got, want = tuple(params[ours].shape), expected[ours]
        if ours in head and got[0] != want[0] and got[1:] == want[1:]:
            hint = (f": the checkpoint has {got[0]} classes, the model {want[0]}; convert with --num-classes "
                    f"{got[0]}, or with --drop-head to leave the head randomly initialised")
        elif any(part in ours for part in _SIZE_DEPENDENT):
            hint = ": the checkpoint was trained at another image size (set --image-size to it)"
        else:
            hint = ": is it a checkpoint of another architecture?"
        others = f" (and {len(mismatched) - 1} more: {_names(mismatched[1:], 4)})" if len(mismatched) > 1 else ""
        raise ValueError(f"'{source}': tensor '{origin[ours]}' has shape {got}, {arch} expects {want} for "
                         f"'{ours}'{others}{hint}")
    random_head = sorted(head - set(params)) if drop_head else []
    return Mapping(params, layout.source, skipped, dropped, random_head, resampled)
