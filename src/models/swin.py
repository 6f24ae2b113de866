"""Swin Transformer (Liu et al. 2021) laid out like timm, so timm state dicts map one to one.

Registered: ``swin_tiny`` (embed 96, depths 2-2-6-2, heads 3-6-12-24), ``swin_nano`` (embed 64,
depths 2-2-2-2, heads 2-4-8-16) and ``swin_pico`` (embed 48, same depths and heads); all patch 4,
window 7, MLP ratio 4, qkv bias, exact (erf) GELU, LayerNorm eps 1e-5.

Numerics follow timm's ``swin_tiny_patch4_window7_224`` (timm >= 0.9): the same cyclic shift,
shifted-window attention mask (-100 between tokens of different regions), relative-position index,
patch-merging concat order (x0, x1, x2, x3 = [0::2, 0::2], [1::2, 0::2], [0::2, 1::2], [1::2, 1::2]),
final LayerNorm, mean over tokens, then the head. Any multiple of 32 px runs, as in timm: a stage
whose resolution is <= the window uses window = resolution and no shift; a larger stage whose
resolution is not a multiple of the window is padded with zero tokens at the bottom and right after
the cyclic shift (timm's order), its mask built on the padded map, and cropped after the attention.
So 224 px and every larger multiple of 32 use window 7 in all stages (a 224 px checkpoint loads
unchanged at 256, 288, 384 ...), while smaller inputs shrink the windows of the late stages and with
them the relative-position tables: build the model for the size of the weights you load.

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
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype
from mindspore.common.initializer import TruncatedNormal, initializer

from .base import StageModel, check_in_channels
from .layers import Attention, Mlp, PatchEmbed, dense, drop_path, relative_position_bias
from .registry import register_model
from .resize import other_size_error

MASKED = -100.0  # timm's additive mask value between tokens that were not neighbours before the shift
LN_EPS = 1e-5  # torch's default, which timm's Swin keeps


def stage_windows(image_size, patch_size=4, window_size=7, num_stages=4):
    """Per stage ``(resolution, window, shift)`` for a square input, or ValueError if it cannot be built.

    A stage at resolution <= window uses one window of the whole map and no shift (original Swin);
    a larger one keeps the window and is padded to a whole number of windows (timm >= 0.9).
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
        plan.append((res, res, 0) if res <= window_size else (res, window_size, window_size // 2))
    return plan


def padded_size(res, window):
    """The map side rounded up to a whole number of windows."""
    return -(-res // window) * window


def relative_position_index(window):
    """[N, N] index into the (2w-1)^2 bias table for every query/key pair of a w x w window (timm's)."""
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window - 1)
    return rel[:, :, 0] * (2 * window - 1) + rel[:, :, 1]


def _windows_of(grid, window):
    """[side, side] map -> [num_windows, window*window], windows in row-major order (timm's partition)."""
    n = grid.shape[0] // window
    return grid.reshape(n, window, n, window).transpose(0, 2, 1, 3).reshape(n * n, window * window)


def window_token_order(res, window, shift):
    """Token gather index doing timm's roll(-shift), zero padding and window partition in one step.

    ``tokens[:, order]`` lists the windows of the shifted (and padded) map one after another, each
    row-major; index ``res * res`` stands for the zero padding token appended after the ``res * res`` tokens.
    """
    side = padded_size(res, window)
    pos = np.arange(side)
    src = (pos + shift) % res  # roll(-shift): shifted row/col i holds original i + shift
    inside = pos < res         # then zero padding at the bottom / right
    grid = np.where(inside[:, None] & inside[None, :], src[:, None] * res + src[None, :], res * res)
    return _windows_of(grid, window).reshape(-1)


def shifted_window_mask(res, window, shift):
    """[num_windows, N, N] additive mask of timm's SW-MSA: 0 inside a region, -100 across regions.

    Regions are timm's slices (0, -window), (-window, -shift), (-shift, end) of the padded map.
    """
    side = padded_size(res, window)
    band = np.zeros(side, dtype=np.int64)
    band[side - window:side - shift] = 1
    band[side - shift:] = 2
    labels = _windows_of(band[:, None] * 3 + band[None, :], window)
    return np.where(labels[:, None, :] != labels[:, :, None], MASKED, 0.0).astype(np.float32)


def _norm(c):
    return nn.LayerNorm((c,), epsilon=LN_EPS)


class PatchMerging(nn.Cell):
    """2x2 neighbours concatenated (timm order x0,x1,x2,x3) -> LayerNorm(4C) -> Linear(4C -> 2C, no bias)."""

    def __init__(self, dim, out_dim, res):
        super().__init__()
        self.res = res
        self.norm = _norm(4 * dim)
        self.reduction = dense(4 * dim, out_dim, has_bias=False)

    def construct(self, x):
        b, c = x.shape[0], x.shape[2]
        half = self.res // 2
        x = x.reshape(b, half, 2, half, 2, c)
        # (row-in-pair, col-in-pair) flattened column-major gives [0,0], [1,0], [0,1], [1,1]
        x = ops.transpose(x, (0, 1, 3, 4, 2, 5)).reshape(b, half * half, 4 * c)
        return self.reduction(self.norm(x))


class WindowAttention(Attention):
    """Multi-head self-attention inside windows, with a learned relative-position bias per head and,
    for shifted windows, timm's region mask; both are added to the logits in one pass."""

    def __init__(self, dim, num_heads, window, mask=None):
        super().__init__(dim, num_heads, qkv_bias=True)
        self.area = window * window
        self.relative_position_bias_table = Parameter(
            initializer(TruncatedNormal(0.02), ((2 * window - 1) ** 2, num_heads), mstype.float32),
            name="relative_position_bias_table")
        # constants, not Parameters: they never train and are not saved in checkpoints
        self.relative_position_index = Tensor(relative_position_index(window).reshape(-1), mstype.int32)
        self.masked = mask is not None
        self.attn_mask = Tensor(mask[:, None], mstype.float32) if self.masked else None
        self.num_windows = mask.shape[0] if self.masked else 1

    def _add_bias(self, attn):
        bias = relative_position_bias(self.relative_position_bias_table, self.relative_position_index,
                                      self.area, self.num_heads)
        if not self.masked:
            return attn + bias
        # bias + mask is [windows, heads, N, N], small: add it to the logits of every image at once
        shape = attn.shape
        attn = attn.reshape(-1, self.num_windows, self.num_heads, self.area, self.area) + (bias + self.attn_mask)
        return attn.reshape(shape)


class SwinBlock(nn.Cell):
    """Pre-norm (shifted-)window attention and MLP on [B, res*res, C] tokens."""

    def __init__(self, dim, num_heads, res, window, shift, mlp_ratio=4.0, drop_path_rate=0.0):
        super().__init__()
        self.window = window
        self.partitioned = window < res  # one window covering the map needs no reordering
        self.padded = padded_size(res, window) != res
        mask = shifted_window_mask(res, window, shift) if shift > 0 else None
        self.norm1 = _norm(dim)
        self.attn = WindowAttention(dim, num_heads, window, mask)
        self.drop_path = drop_path(drop_path_rate)
        self.norm2 = _norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        order = window_token_order(res, window, shift)
        self.window_order = Tensor(order, mstype.int32)
        # inverse for the real tokens: where each of the res*res tokens sits in the window layout
        self.token_order = Tensor(np.argsort(order, kind="stable")[:res * res], mstype.int32)

    def construct(self, x):
        b, l, c = x.shape
        y = self.norm1(x)
        if self.padded:
            y = ops.pad(y, (0, 0, 0, 1))  # the zero token that padding positions gather
        if self.partitioned:
            y = ops.gather(y, self.window_order, 1)
        y = self.attn(y.reshape(-1, self.window * self.window, c)).reshape(b, -1, c)
        if self.partitioned:
            y = ops.gather(y, self.token_order, 1)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))

class SwinStage(nn.Cell):
    """Optional patch merging (stages 2-4, as in timm >= 0.9), then the blocks; W-MSA / SW-MSA alternate."""

    def __init__(self, dim_in, dim, res_in, depth, num_heads, window, shift, mlp_ratio, drop_path_rates):
        super().__init__()
        self.downsample = PatchMerging(dim_in, dim, res_in) if dim_in != dim else nn.Identity()
        res = res_in // 2 if dim_in != dim else res_in
        self.blocks = nn.SequentialCell([
            SwinBlock(dim, num_heads, res, window, shift if i % 2 else 0, mlp_ratio, drop_path_rates[i])
            for i in range(depth)])

    def construct(self, x):
        return self.blocks(self.downsample(x))


class SwinTransformer(StageModel):
    """Swin classifier; ``forward_with_stages`` also returns each stage's last-block tokens."""

    family = "vit"
    stage_kind = "token"
    num_prefix_tokens = 0

    def __init__(self, embed_dim, depths, num_heads, num_classes=1000, image_size=224, patch_size=4,
                 window_size=7, mlp_ratio=4.0, drop_path_rate=0.1, in_channels=3):
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(f"swin needs 4 stages, got depths {depths} and heads {num_heads}")
        self.plan = stage_windows(image_size, patch_size, window_size)
        self.num_classes = num_classes
        self.image_size = image_size
        self.in_channels = check_in_channels(in_channels)
        self.patch_size = patch_size
        self.window_size = window_size
        self.embed_dim = embed_dim
        self.widths = [embed_dim * 2 ** i for i in range(4)]
        self.feature_dim = self.widths[-1]
        # stochastic depth grows linearly over all blocks, as in timm (default rate 0.1 too)
        rates = np.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = np.cumsum([0] + list(depths)).tolist()
        self.patch_embed = PatchEmbed(patch_size, self.in_channels, embed_dim, norm=_norm(embed_dim))
        self.layers = nn.CellList([
            SwinStage(self.widths[max(i - 1, 0)], self.widths[i], self.plan[max(i - 1, 0)][0], depths[i],
                      num_heads[i], self.plan[i][1], self.plan[i][2], mlp_ratio,
                      rates[starts[i]:starts[i + 1]])
            for i in range(4)])
        self.norm = _norm(self.feature_dim)
        self.head = dense(self.feature_dim, num_classes)

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

    def _adapt_to_size(self, params, source):
        """Refuses relative-position tables of other windows (they follow the size below the full-window one)."""
        for name, param in self.parameters_and_names():
            value = params.get(name)
            if name.endswith("relative_position_bias_table") and value is not None \
                    and tuple(value.shape) != tuple(param.shape):
                full = self.patch_size * self.window_size * 2 ** (len(self.plan) - 1)
                raise other_size_error(source, name, value.shape, param.shape, self.image_size,
                                       f"Swin's relative-position tables follow the stage windows, which shrink "
                                       f"below {full} px; build the model at the checkpoint's size (every "
                                       f"multiple of 32 from {full} px up shares the same tables)")
        return params


@register_model
def swin_tiny(num_classes=1000, image_size=224, **kwargs):
    return SwinTransformer(96, (2, 2, 6, 2), (3, 6, 12, 24), num_classes, image_size, **kwargs)


@register_model
def swin_nano(num_classes=1000, image_size=224, **kwargs):
    return SwinTransformer(64, (2, 2, 2, 2), (2, 4, 8, 16), num_classes, image_size, **kwargs)


@register_model
def swin_pico(num_classes=1000, image_size=224, **kwargs):
    return SwinTransformer(48, (2, 2, 2, 2), (2, 4, 8, 16), num_classes, image_size, **kwargs)
