"""Blocks shared by the token models (ViT/DeiT, BEiT, Swin, MLP-Mixer/ResMLP, CycleMLP) and their skeleton.

Each model file keeps only what makes it that model; what they have in common lives here: the dense
layer with its init, the exact GELU, the MLP, multi-head self-attention (with a hook for additive
biases such as relative positions), the patch embedding, the stochastic-depth schedule, the
relative-position bias lookup, the checks on image and stage sizes, and ``TokenStackModel``
(embed -> blocks -> pool -> head, with chosen block outputs as the four stages).

Numerics are timm's: exact (erf) GELU, qkv laid out as ``[B, N, 3, heads, head_dim]``, queries
scaled by ``head_dim ** -0.5`` before ``q @ k^T``.
"""
import math

from mindspore import nn, ops
from mindspore.common import initializer as init
from mindcv.models.layers import DropPath

from .base import StageModel, check_in_channels

SQRT_HALF = 1.0 / math.sqrt(2.0)
LN_EPS = 1e-6  # timm's LayerNorm epsilon in ViT / DeiT / BEiT / Mixer (Swin and CycleMLP keep torch's 1e-5)


def dense(in_features, out_features, has_bias=True, weight_init=None, bias_init="zeros"):
    """Linear layer; by default timm's init for transformers: trunc-normal(0.02) weight, zero bias."""
    return nn.Dense(in_features, out_features, has_bias=has_bias,
                    weight_init=init.TruncatedNormal(0.02) if weight_init is None else weight_init,
                    bias_init=bias_init)


def normal_dense(std=0.02):
    """A ``dense`` factory with normal(std) weights: timm's trunc-normal truncates at +-2 absolute, 100 std
    or more away, so it is the same distribution, which MindSpore samples several times faster."""
    def make(in_features, out_features, has_bias=True):
        return dense(in_features, out_features, has_bias, weight_init=init.Normal(std))
    return make


class GELU(nn.Cell):
    """Exact GELU, ``x * Phi(x)`` with the erf form of the normal CDF (timm's ``nn.GELU()``).

    Written as ``x * (erf(x / sqrt 2) * 0.5 + 0.5)``: the same function as MindSpore's
    ``nn.GELU(approximate=False)`` (which divides by sqrt 2 and multiplies by 0.5 last) within float32
    rounding, without its division: faster on CPU forward and backward (docs/model_speed.md).
    """

    def construct(self, x):
        return x * (ops.erf(x * SQRT_HALF) * 0.5 + 0.5)


class Mlp(nn.Cell):
    """fc1 -> exact GELU -> fc2 (timm's ``Mlp`` without dropout).

    ``linear`` builds both layers (``linear(in, out)``); ``fc2_linear`` the second one when it differs.
    """

    def __init__(self, in_features, hidden_features, out_features=None, linear=dense, fc2_linear=None):
        super().__init__()
        self.fc1 = linear(in_features, hidden_features)
        self.act = GELU()
        self.fc2 = (fc2_linear or linear)(hidden_features, out_features or in_features)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Cell):
    """Multi-head self-attention with a fused qkv projection laid out as timm's.

    Subclasses add what makes their attention theirs through two hooks: ``_project_qkv`` (the fused
    projection, e.g. BEiT's q/v-only biases) and ``_add_bias`` (additive terms on the attention logits
    ``[B, heads, N, N]`` before the softmax, e.g. relative positions and shifted-window masks).
    """

    def __init__(self, dim, num_heads, qkv_bias=True, linear=dense, proj_linear=None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = linear(dim, dim * 3, has_bias=qkv_bias)
        self.proj = (proj_linear or linear)(dim, dim)
        self.q_matmul_k = ops.BatchMatMul(transpose_b=True)
        self.attn_matmul_v = ops.BatchMatMul()

    def _project_qkv(self, x):
        return self.qkv(x)

    def _add_bias(self, attn):
        return attn

    def construct(self, x):
        b, n, c = x.shape
        qkv = self._project_qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = ops.unstack(qkv, 0)  # one op instead of three strided slices: about 2x faster on CPU
        attn = ops.softmax(self._add_bias(self.q_matmul_k(q * self.scale, k)), -1)
        out = self.attn_matmul_v(attn, v).transpose(0, 2, 1, 3).reshape(b, n, c)
        return self.proj(out)


def relative_position_bias(table, index, num_tokens, num_heads):
    """``[heads, N, N]`` bias: rows of ``table`` ``[distances, heads]`` picked by the constant ``index`` ``[N*N]``."""
    bias = ops.gather(table, index, 0).reshape(num_tokens, num_tokens, num_heads)
    return bias.transpose(2, 0, 1)


class PatchEmbed(nn.Cell):
    """Non-overlapping ``patch x patch`` convolution flattened to ``[B, grid*grid, E]`` (row-major), then
    ``norm`` (Swin's LayerNorm; none for ViT / BEiT / Mixer)."""

    def __init__(self, patch_size, in_channels, embed_dim, norm=None):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, embed_dim, patch_size, stride=patch_size, pad_mode="valid",
                              has_bias=True)
        self.norm = norm if norm is not None else nn.Identity()

    def construct(self, x):
        x = self.proj(x)
        b, e = x.shape[0], x.shape[1]
        return self.norm(x.reshape(b, e, -1).transpose(0, 2, 1))


def drop_path_rates(drop_path_rate, depth):
    """Stochastic-depth rate per block, rising linearly from 0 to ``drop_path_rate`` (as timm)."""
    if not 0.0 <= float(drop_path_rate) < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    if depth == 1:
        return [float(drop_path_rate)]
    return [float(drop_path_rate) * i / (depth - 1) for i in range(depth)]


def drop_path(rate):
    """Stochastic depth on a residual branch, or an identity when ``rate`` is 0."""
    return DropPath(rate) if rate > 0 else nn.Identity()


def patch_grid(image_size, patch_size):
    """Side of the patch grid; raises ValueError when ``image_size`` is not a multiple of the patch."""
    image_size = int(image_size)
    if image_size < patch_size or image_size % patch_size:
        raise ValueError(
            f"image_size {image_size} is not a positive multiple of the patch size {patch_size}")
    return image_size // patch_size


def default_stage_blocks(depth):
    """1-based indices of the blocks whose outputs are the four stages: (2, 4, 10, 12) for depth 12."""
    step = max(depth // 6, 1)
    return (step, 2 * step, depth - step, depth)


def check_stage_blocks(stage_blocks, depth):
    """Validate four strictly increasing 1-based block indices within ``depth``; return them as a tuple."""
    blocks = tuple(int(b) for b in stage_blocks)
    if len(blocks) != 4 or blocks[0] < 1 or blocks[-1] > depth or any(
            a >= b for a, b in zip(blocks, blocks[1:])):
        raise ValueError(
            f"stage_blocks {tuple(stage_blocks)!r} must be 4 strictly increasing block indices in 1..{depth}")
    return blocks


class TokenStackModel(StageModel):
    """Embed -> a stack of blocks -> pool -> head, with the outputs of ``stage_blocks`` as the stages.

    Subclasses call ``_set_stack`` and define ``_embed``, ``_pool``, ``blocks`` and ``head``. Shared by
    ViT/DeiT, BEiT and Mixer/ResMLP.
    """

    stage_kind = "token"

    def _set_stack(self, num_classes, image_size, patch_size, embed_dim, depth, stage_blocks, in_channels):
        self.grid = patch_grid(image_size, patch_size)
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.in_channels = check_in_channels(in_channels)
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.feature_dim = embed_dim
        self.stage_blocks = check_stage_blocks(
            default_stage_blocks(depth) if stage_blocks is None else stage_blocks, depth)
        # Python constants, so graph mode unrolls the block loop with static choices.
        self._is_stage = tuple(i + 1 in self.stage_blocks for i in range(depth))

    def construct(self, x):
        x = self._embed(x)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self._pool(x))

    def forward_with_stages(self, x):
        x = self._embed(x)
        stages = ()
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if self._is_stage[i]:
                stages = stages + (x,)
        pooled = self._pool(x)
        return self.head(pooled), stages, pooled

    def stage_shapes(self, image_size=None):
        size = self.image_size if image_size is None else image_size
        n = patch_grid(size, self.patch_size) ** 2 + self.num_prefix_tokens
        return [(n, self.embed_dim)] * 4
