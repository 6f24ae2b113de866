"""Swin Transformer (Liu et al. 2021) laid out like timm, so timm state dicts map one to one.

Registered: ``swin_tiny`` (embed 96, depths 2-2-6-2, heads 3-6-12-24), ``swin_nano`` (embed 64,
depths 2-2-2-2, heads 2-4-8-16) and ``swin_pico`` (embed 48, same depths and heads); all patch 4,
window 7, MLP ratio 4, qkv bias, exact (erf) GELU, LayerNorm eps 1e-5.

Numerics follow timm's ``swin_tiny_patch4_window7_224``: the same cyclic shift, shifted-window
attention mask (-100 between tokens of different regions), relative-position index, patch-merging
concat order (x0, x1, x2, x3 = [0::2, 0::2], [1::2, 0::2], [0::2, 1::2], [1::2, 1::2]), final
LayerNorm, mean over tokens, then the head. Like the original Swin, a stage whose resolution is
<= the window uses window = resolution and no shift, so relative-position tables (and therefore
parameter shapes) depend on ``image_size``; build the model for the size of the weights you load.

Parameter names, timm (>= 0.9, downsample at the start of stages 2-4) -> ours:

| timm                                             | ours                                             |
| ------------------------------------------------ | ------------------------------------------------ |
| patch_embed.proj.weight / .bias                  | patch_embed.proj.weight / .bias                  |
| patch_embed.norm.weight / .bias                  | patch_embed.norm.gamma / .beta                   |
| layers.N.downsample.norm.weight / .bias (N>=1)   | layers.N.downsample.norm.gamma / .beta           |
| layers.N.downsample.reduction.weight (N>=1)      | layers.N.downsample.reduction.weight             |
| layers.N.blocks.M.norm1.weight / .bias           | layers.N.blocks.M.norm1.gamma / .beta            |
| layers.N.blocks.M.attn.qkv.weight / .bias        | layers.N.blocks.M.attn.qkv.weight / .bias        |
| layers.N.blocks.M.attn.relative_position_bias_table | layers.N.blocks.M.attn.relative_position_bias_table |
| layers.N.blocks.M.attn.proj.weight / .bias       | layers.N.blocks.M.attn.proj.weight / .bias       |
| layers.N.blocks.M.norm2.weight / .bias           | layers.N.blocks.M.norm2.gamma / .beta            |
| layers.N.blocks.M.mlp.fc1 / fc2 .weight / .bias  | layers.N.blocks.M.mlp.fc1 / fc2 .weight / .bias  |
| norm.weight / .bias                              | norm.gamma / .beta                               |
| head.fc.weight / .bias                           | head.weight / .bias                              |
| ...relative_position_index, ...attn_mask (buffers) | constants, not parameters: skip them          |

Older timm (< 0.9) and the Microsoft checkpoints put the merge at the END of stages 1-3:
``layers.N.downsample.*`` there is our ``layers.{N+1}.downsample.*``, and ``head.*`` is ``head.*``.
Linear and conv weights have the same [out, in(, kh, kw)] layout in both frameworks.

Stage features (for distillation branches) are the token outputs ``[B, H*W, C]`` of the last block
of each stage, before the next stage's patch merging.
"""
import math

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype
from mindspore.common.initializer import TruncatedNormal, initializer
from mindcv.models.layers import DropPath

from .base import StageModel
from .registry import register_model

MASKED = -100.0  # timm's additive mask value between tokens that were not neighbours before the shift


def stage_windows(image_size, patch_size=4, window_size=7, num_stages=4):
    """Per stage ``(resolution, window, shift)`` for a square input, or ValueError if it cannot be built.

    A stage at resolution <= window uses one window of the whole map and no shift (original Swin).
    """
    image_size = int(image_size)
    multiple = patch_size * 2 ** (num_stages - 1)
    if image_size < multiple or image_size % multiple:
        raise ValueError(
            f"swin image_size {image_size} is not allowed: it must be a positive multiple of {multiple} "
            f"(patch {patch_size} x {2 ** (num_stages - 1)})")
    plan = []
    for i in range(num_stages):
        res = image_size // patch_size // 2 ** i
        if res <= window_size:
            plan.append((res, res, 0))
        elif res % window_size:
            raise ValueError(
                f"swin image_size {image_size} is not allowed: stage {i + 1} resolution {res} is neither "
                f"<= nor a multiple of window {window_size} (multiples of "
                f"{math.lcm(multiple, patch_size * window_size)} always work)")
        else:
            plan.append((res, window_size, window_size // 2))
    return plan


def relative_position_index(window):
    """[N, N] index into the (2w-1)^2 bias table for every query/key pair of a w x w window (timm's)."""
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window - 1)
    return rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]


def _windows_of(grid, window):
    """[res, res] map -> [num_windows, window*window], windows in row-major order (timm's partition)."""
    n = grid.shape[0] // window
    return grid.reshape(n, window, n, window).transpose(0, 2, 1, 3).reshape(n * n, window * window)


def window_token_order(res, window, shift):
    """Token gather index doing timm's roll(-shift) + window partition in one step.

    ``tokens[:, order]`` lists the windows of the shifted map one after another, each row-major.
    """
    src = (np.arange(res) + shift) % res  # roll(-shift): shifted row/col i holds original i + shift
    return _windows_of(src[:, None] * res + src[None, :], window).reshape(-1)


def shifted_window_mask(res, window, shift):
    """[num_windows, N, N] additive mask of timm's SW-MSA: 0 inside a region, -100 across regions."""
    band = np.zeros(res, dtype=np.int64)
    band[res - window:res - shift] = 1
    band[res - shift:] = 2
    labels = _windows_of(band[:, None] * 3 + band[None, :], window)
    return np.where(labels[:, None, :] != labels[:, :, None], MASKED, 0.0).astype(np.float32)


def _dense(c_in, c_out, has_bias=True):
    # timm's init: trunc-normal std 0.02 weights, zero bias
    return nn.Dense(c_in, c_out, weight_init=TruncatedNormal(0.02), bias_init="zeros", has_bias=has_bias)


def _norm(c):
    return nn.LayerNorm((c,), epsilon=1e-5)


class PatchEmbed(nn.Cell):
    """Non-overlapping patch x patch conv, then LayerNorm over the embedding: [B,3,H,W] -> [B,L,E]."""

    def __init__(self, patch_size, embed_dim, in_chans=3):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size, pad_mode="valid",
                              has_bias=True)
        self.norm = _norm(embed_dim)

    def construct(self, x):
        x = self.proj(x)
        b, c = x.shape[0], x.shape[1]
        return self.norm(ops.transpose(x.reshape(b, c, -1), (0, 2, 1)))


class PatchMerging(nn.Cell):
    """2x2 neighbours concatenated (timm order x0,x1,x2,x3) -> LayerNorm(4C) -> Linear(4C -> 2C, no bias)."""

    def __init__(self, dim, out_dim, res):
        super().__init__()
        self.res = res
        self.norm = _norm(4 * dim)
        self.reduction = _dense(4 * dim, out_dim, has_bias=False)

    def construct(self, x):
        b, c = x.shape[0], x.shape[2]
        half = self.res // 2
        x = x.reshape(b, half, 2, half, 2, c)
        # (row-in-pair, col-in-pair) flattened column-major gives [0,0], [1,0], [0,1], [1,1]
        x = ops.transpose(x, (0, 1, 3, 4, 2, 5)).reshape(b, half * half, 4 * c)
        return self.reduction(self.norm(x))


class Mlp(nn.Cell):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = _dense(dim, hidden)
        self.act = nn.GELU(approximate=False)  # timm uses the exact erf GELU
        self.fc2 = _dense(hidden, dim)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


class WindowAttention(nn.Cell):
    """Multi-head self-attention inside windows, with a learned relative-position bias per head."""

    def __init__(self, dim, num_heads, window, mask=None):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.area = window * window
        self.qkv = _dense(dim, 3 * dim)
        self.proj = _dense(dim, dim)
        self.relative_position_bias_table = Parameter(
            initializer(TruncatedNormal(0.02), ((2 * window - 1) ** 2, num_heads), mstype.float32),
            name="relative_position_bias_table")
        # constants, not Parameters: they never train and are not saved in checkpoints
        self.relative_position_index = Tensor(relative_position_index(window).reshape(-1), mstype.int32)
        self.masked = mask is not None
        self.attn_mask = Tensor(mask[None, :, None], mstype.float32) if self.masked else None
        self.num_windows = mask.shape[0] if self.masked else 1

    def construct(self, x):
        bw, n, c = x.shape
        qkv = ops.transpose(self.qkv(x).reshape(bw, n, 3, self.num_heads, self.head_dim), (2, 0, 3, 1, 4))
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
        bias = ops.gather(self.relative_position_bias_table, self.relative_position_index, 0)
        attn = attn + ops.transpose(bias.reshape(self.area, self.area, self.num_heads), (2, 0, 1))
        if self.masked:
            attn = attn.reshape(-1, self.num_windows, self.num_heads, n, n) + self.attn_mask
            attn = attn.reshape(bw, self.num_heads, n, n)
        attn = ops.softmax(attn, axis=-1)
        x = ops.transpose(ops.matmul(attn, v), (0, 2, 1, 3)).reshape(bw, n, c)
        return self.proj(x)


class SwinBlock(nn.Cell):
    """Pre-norm (shifted-)window attention and MLP on [B, res*res, C] tokens."""

    def __init__(self, dim, num_heads, res, window, shift, mlp_ratio=4.0, drop_path=0.0):
        super().__init__()
        self.window = window
        self.shift = shift
        self.partitioned = window < res  # one window covering the map needs no reordering
        mask = shifted_window_mask(res, window, shift) if shift > 0 else None
        self.norm1 = _norm(dim)
        self.attn = WindowAttention(dim, num_heads, window, mask)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = _norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        order = window_token_order(res, window, shift)
        self.window_order = Tensor(order, mstype.int32)
        self.token_order = Tensor(np.argsort(order), mstype.int32)  # inverse: windows back to the map

    def construct(self, x):
        b, l, c = x.shape
        y = self.norm1(x)
        if self.partitioned:
            y = ops.gather(y, self.window_order, 1)
        y = self.attn(y.reshape(-1, self.window * self.window, c)).reshape(b, l, c)
        if self.partitioned:
            y = ops.gather(y, self.token_order, 1)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class SwinStage(nn.Cell):
    """Optional patch merging (stages 2-4, as in timm >= 0.9), then the blocks; W-MSA / SW-MSA alternate."""

    def __init__(self, dim_in, dim, res_in, depth, num_heads, window, shift, mlp_ratio, drop_paths):
        super().__init__()
        self.downsample = PatchMerging(dim_in, dim, res_in) if dim_in != dim else nn.Identity()
        res = res_in // 2 if dim_in != dim else res_in
        self.blocks = nn.SequentialCell([
            SwinBlock(dim, num_heads, res, window, shift if i % 2 else 0, mlp_ratio, drop_paths[i])
            for i in range(depth)])

    def construct(self, x):
        return self.blocks(self.downsample(x))


class SwinTransformer(StageModel):
    """Swin classifier; ``forward_with_stages`` also returns each stage's last-block tokens."""

    family = "vit"
    stage_kind = "token"
    num_prefix_tokens = 0

    def __init__(self, embed_dim, depths, num_heads, num_classes=1000, image_size=224, patch_size=4,
                 window_size=7, mlp_ratio=4.0, drop_path_rate=0.1):
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(f"swin needs 4 stages, got depths {depths} and heads {num_heads}")
        self.plan = stage_windows(image_size, patch_size, window_size)
        self.num_classes = num_classes
        self.image_size = image_size
        self.patch_size = patch_size
        self.window_size = window_size
        self.embed_dim = embed_dim
        self.widths = [embed_dim * 2 ** i for i in range(4)]
        self.feature_dim = self.widths[-1]
        # stochastic depth grows linearly over all blocks, as in timm (default rate 0.1 too)
        rates = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = np.cumsum([0] + list(depths)).tolist()
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.layers = nn.CellList([
            SwinStage(self.widths[max(i - 1, 0)], self.widths[i], self.plan[max(i - 1, 0)][0], depths[i],
                      num_heads[i], self.plan[i][1], self.plan[i][2], mlp_ratio,
                      rates[starts[i]:starts[i + 1]])
            for i in range(4)])
        self.norm = _norm(self.feature_dim)
        self.head = _dense(self.feature_dim, num_classes)

    def forward_with_stages(self, x):
        x = self.patch_embed(x)
        s1 = self.layers[0](x)
        s2 = self.layers[1](s1)
        s3 = self.layers[2](s2)
        s4 = self.layers[3](s3)
        pooled = self.norm(s4).mean(axis=1)
        return self.head(pooled), (s1, s2, s3, s4), pooled

    def construct(self, x):
        return self.forward_with_stages(x)[0]

    def stage_shapes(self, image_size=None):
        size = self.image_size if image_size is None else image_size
        plan = stage_windows(size, self.patch_size, self.window_size)
        return [(res * res, width) for (res, _, _), width in zip(plan, self.widths)]


@register_model
def swin_tiny(num_classes=1000, image_size=224, **kwargs):
    return SwinTransformer(96, (2, 2, 6, 2), (3, 6, 12, 24), num_classes, image_size, **kwargs)


@register_model
def swin_nano(num_classes=1000, image_size=224, **kwargs):
    return SwinTransformer(64, (2, 2, 2, 2), (2, 4, 8, 16), num_classes, image_size, **kwargs)


@register_model
def swin_pico(num_classes=1000, image_size=224, **kwargs):
    return SwinTransformer(48, (2, 2, 2, 2), (2, 4, 8, 16), num_classes, image_size, **kwargs)
