"""Weights trained for other inputs, made to fit a model: position-embedding resampling, grayscale stems.

A ViT/DeiT position embedding holds one vector per patch of the grid it was trained on (plus the cls
token's). timm resamples the patch part to a new grid with antialiased bicubic interpolation
(``torch.nn.functional.interpolate(mode='bicubic', antialias=True, align_corners=False)``) and keeps
the prefix tokens as they are; ``resample_pos_embed`` computes exactly that (in float64, as two
separable weight matrices), so a checkpoint loads at 112 or 384 px with the numbers timm would give.

A model built for grayscale input (``in_channels=1``) takes an RGB checkpoint with its input kernel
summed over the three channels, timm's ``adapt_input_conv``: a gray image fed to the summed kernel
gives what the RGB model gives for that image repeated in R, G and B.
"""
import math

import numpy as np
from mindspore import Parameter, Tensor


def _keys_cubic(x, a=-0.5):
    """Keys' cubic convolution kernel with a = -0.5, the filter of PyTorch's antialiased bicubic."""
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


def bicubic_antialias_matrix(in_size, out_size):
    """``[out_size, in_size]`` weights of PyTorch's antialiased bicubic resize along one axis.

    Output pixel ``i`` is centred at ``scale * (i + 0.5)`` in the input (``scale = in / out``); when
    shrinking, the filter is stretched by ``scale``; taps outside the input are dropped and the rest
    renormalised (no border replication).
    """
    scale = in_size / out_size
    support = 2.0 * scale if scale >= 1.0 else 2.0
    inv_scale = 1.0 / scale if scale >= 1.0 else 1.0
    matrix = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = scale * (i + 0.5)
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), in_size)
        weights = np.array([_keys_cubic((j - center + 0.5) * inv_scale) for j in range(first, last)])
        total = weights.sum()
        matrix[i, first:last] = weights / total if total != 0.0 else weights
    return matrix


def resample_pos_embed(pos_embed, new_grid, num_prefix_tokens=1):
    """``[1, P + g*g, E]`` position embedding (P prefix tokens first, then a g x g grid, row-major) ->
    ``[1, P + n*n, E]`` for an n x n grid (``new_grid = n``); the prefix rows are kept as they are."""
    pos_embed = np.asarray(pos_embed)
    patches = pos_embed.shape[1] - num_prefix_tokens
    old_grid = math.isqrt(patches)
    if pos_embed.ndim != 3 or pos_embed.shape[0] != 1 or old_grid * old_grid != patches:
        raise ValueError(f"a position embedding of shape {tuple(pos_embed.shape)} is not [1, {num_prefix_tokens} + "
                         f"a square grid, dim]")
    grid = pos_embed[0, num_prefix_tokens:].astype(np.float64).reshape(old_grid, old_grid, -1)
    matrix = bicubic_antialias_matrix(old_grid, new_grid)
    resized = np.einsum("hi,wj,ije->hwe", matrix, matrix, grid).reshape(1, new_grid * new_grid, -1)
    out = np.concatenate([pos_embed[:, :num_prefix_tokens].astype(np.float64), resized], axis=1)
    return out.astype(pos_embed.dtype)


def as_array(value):
    """NumPy value of a checkpoint entry (ndarray, Tensor or Parameter)."""
    return value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)


def same_kind(original, array, name):
    """``array`` as the kind of checkpoint entry ``original`` was: a Parameter for MindSpore entries."""
    return Parameter(Tensor(array), name=name) if isinstance(original, (Parameter, Tensor)) else array


def fit_input_channels(model, params):
    """``params`` with every 3-channel input kernel ``[O, 3, ...]`` summed to ``[O, 1, ...]`` where ``model``
    (built with ``in_channels=1``) has a 1-channel kernel of that name; unchanged for an RGB model."""
    if getattr(model, "in_channels", 3) != 1:
        return params
    fitted = dict(params)
    for name, param in model.parameters_and_names():
        value = params.get(name)
        shape, want = (tuple(value.shape) if value is not None else ()), tuple(param.shape)
        if len(shape) >= 3 and len(want) == len(shape) and shape[1] == 3 and want[1] == 1 \
                and shape[0] == want[0] and shape[2:] == want[2:]:
            fitted[name] = same_kind(value, as_array(value).sum(axis=1, keepdims=True), name)
    return fitted


def other_size_error(source, name, got, want, image_size, why):
    """The one-line refusal of a size-dependent tensor that cannot be fitted: ValueError saying ``why``."""
    return ValueError(f"checkpoint '{source}': '{name}' has shape {tuple(got)}, this model ({image_size} px) expects "
                      f"{tuple(want)}: {why}")
