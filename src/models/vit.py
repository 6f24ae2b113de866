"""Vision Transformer / DeiT (Dosovitskiy et al. 2021; Touvron et al. 2021), numerically equal to timm.

Layout follows timm's ``VisionTransformer`` so that every timm tensor maps to exactly one of ours
with the same shape (MindSpore ``nn.Dense`` / ``nn.Conv2d`` store weights as torch does, so no
transposes are needed); only MindSpore's LayerNorm parameter names (``gamma`` / ``beta``) differ:

====================================  ====================================
timm name                             our name
====================================  ====================================
patch_embed.proj.weight / .bias       patch_embed.proj.weight / .bias
cls_token                             cls_token
pos_embed                             pos_embed
blocks.N.norm1.weight / .bias         blocks.N.norm1.gamma / .beta
blocks.N.attn.qkv.weight / .bias      blocks.N.attn.qkv.weight / .bias
blocks.N.attn.proj.weight / .bias     blocks.N.attn.proj.weight / .bias
blocks.N.norm2.weight / .bias         blocks.N.norm2.gamma / .beta
blocks.N.mlp.fc1.weight / .bias       blocks.N.mlp.fc1.weight / .bias
blocks.N.mlp.fc2.weight / .bias       blocks.N.mlp.fc2.weight / .bias
norm.weight / .bias                   norm.gamma / .beta
head.weight / .bias                   head.weight / .bias
====================================  ====================================

Numerics as in timm: exact (erf) GELU, LayerNorm eps 1e-6, qkv laid out as
``[B, N, 3, heads, head_dim]``, queries scaled by ``head_dim ** -0.5`` before ``q @ k^T``.
``PatchEmbed``, ``Mlp`` and the image-size / stage-block checks are shared with ``mlp.py``.
"""
from mindspore import Parameter, nn, ops
from mindspore.common import initializer as init

from mindcv.models.layers import DropPath

from .base import StageModel
from .registry import register_model

LN_EPS = 1e-6


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


def dense(in_features, out_features, has_bias=True):
    """Linear layer with timm's ViT init: trunc-normal(0.02) weight, zero bias."""
    return nn.Dense(in_features, out_features, has_bias=has_bias,
                    weight_init=init.TruncatedNormal(0.02), bias_init="zeros")


class PatchEmbed(nn.Cell):
    """Non-overlapping ``patch x patch`` convolution, flattened to a ``[B, grid*grid, E]`` sequence."""

    def __init__(self, patch_size, in_chans, embed_dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size,
                              pad_mode="valid", has_bias=True)

    def construct(self, x):
        x = self.proj(x)
        b, e = x.shape[0], x.shape[1]
        return x.reshape(b, e, -1).transpose(0, 2, 1)


class Mlp(nn.Cell):
    """fc1 -> exact GELU -> fc2 (timm's ``Mlp`` without dropout)."""

    def __init__(self, in_features, hidden_features, out_features=None, linear=dense):
        super().__init__()
        self.fc1 = linear(in_features, hidden_features)
        # MindSpore's nn.GELU defaults to the tanh approximation; timm uses the erf form.
        self.act = nn.GELU(approximate=False)
        self.fc2 = linear(hidden_features, out_features or in_features)

    def construct(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Cell):
    """Multi-head self-attention with a fused qkv projection laid out as timm's."""

    def __init__(self, dim, num_heads, qkv_bias=True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = dense(dim, dim * 3, has_bias=qkv_bias)
        self.proj = dense(dim, dim)
        self.q_matmul_k = ops.BatchMatMul(transpose_b=True)
        self.attn_matmul_v = ops.BatchMatMul()
        self.softmax = nn.Softmax(axis=-1)

    def construct(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        q, k, v = ops.unstack(qkv, 0)  # one op instead of three slices: about 2x faster attention on CPU
        attn = self.softmax(self.q_matmul_k(q * self.scale, k))
        out = self.attn_matmul_v(attn, v).transpose(0, 2, 1, 3).reshape(b, n, c)
        return self.proj(out)


class Block(nn.Cell):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm((dim,), epsilon=LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm((dim,), epsilon=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def construct(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def drop_path_rates(drop_path_rate, depth):
    """Stochastic-depth rate per block, rising linearly from 0 to ``drop_path_rate`` (as timm)."""
    if not 0.0 <= float(drop_path_rate) < 1.0:
        raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
    if depth == 1:
        return [float(drop_path_rate)]
    return [float(drop_path_rate) * i / (depth - 1) for i in range(depth)]


class TokenStackModel(StageModel):
    """Embed -> a stack of blocks -> pool -> head, with the outputs of ``stage_blocks`` as the stages.

    Subclasses define ``_embed``, ``_pool``, ``blocks``, ``head`` and ``_is_stage`` (one Python bool per
    block, so graph mode unrolls the loop with static choices). Shared by ViT/DeiT and Mixer/ResMLP.
    """

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


class VisionTransformer(TokenStackModel):
    """ViT/DeiT classifier on the cls token; stage features are outputs of ``stage_blocks``."""

    family = "vit"
    stage_kind = "token"
    num_prefix_tokens = 1

    def __init__(self, num_classes=1000, image_size=224, patch_size=16, in_chans=3, embed_dim=768,
                 depth=12, num_heads=12, mlp_ratio=4.0, qkv_bias=True, stage_blocks=None, drop_path_rate=0.0):
        super().__init__()
        self.grid = patch_grid(image_size, patch_size)
        self.num_classes = int(num_classes)
        self.image_size = int(image_size)
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.depth = depth
        self.feature_dim = embed_dim
        self.stage_blocks = check_stage_blocks(
            default_stage_blocks(depth) if stage_blocks is None else stage_blocks, depth)
        # Python constants, so graph mode unrolls the block loop with static choices.
        self._is_stage = tuple(i + 1 in self.stage_blocks for i in range(depth))

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        num_tokens = self.grid * self.grid + self.num_prefix_tokens
        # timm init: cls token ~ N(0, 1e-6), position embedding ~ trunc-normal(0.02).
        self.cls_token = Parameter(init.initializer(init.Normal(1e-6), (1, 1, embed_dim)), name="cls_token")
        self.pos_embed = Parameter(init.initializer(init.TruncatedNormal(0.02), (1, num_tokens, embed_dim)),
                                   name="pos_embed")
        self.blocks = nn.CellList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_path=r)
                                   for r in drop_path_rates(drop_path_rate, depth)])
        self.norm = nn.LayerNorm((embed_dim,), epsilon=LN_EPS)
        self.head = dense(embed_dim, self.num_classes)

    def _embed(self, x):
        x = self.patch_embed(x)
        cls = ops.broadcast_to(self.cls_token, (x.shape[0], 1, self.embed_dim))
        return ops.cat((cls, x), axis=1) + self.pos_embed

    def _pool(self, x):
        return self.norm(x)[:, 0]

    def stage_shapes(self, image_size=None):
        size = self.image_size if image_size is None else image_size
        n = patch_grid(size, self.patch_size) ** 2 + self.num_prefix_tokens
        return [(n, self.embed_dim)] * 4


def _vit(num_classes, image_size, embed_dim, num_heads, **kwargs):
    return VisionTransformer(num_classes=num_classes, image_size=image_size, patch_size=16,
                             embed_dim=embed_dim, depth=12, num_heads=num_heads, **kwargs)


@register_model
def deit_tiny(num_classes=1000, image_size=224, **kwargs):
    """DeiT-Ti/16 (timm ``deit_tiny_patch16_224``)."""
    return _vit(num_classes, image_size, 192, 3, **kwargs)


@register_model
def deit_small(num_classes=1000, image_size=224, **kwargs):
    """DeiT-S/16 (timm ``deit_small_patch16_224``)."""
    return _vit(num_classes, image_size, 384, 6, **kwargs)


@register_model
def vit_small(num_classes=1000, image_size=224, **kwargs):
    """ViT-S/16 (timm ``vit_small_patch16_224``): the same architecture as DeiT-S."""
    return _vit(num_classes, image_size, 384, 6, **kwargs)


@register_model
def vit_base(num_classes=1000, image_size=224, **kwargs):
    """ViT-B/16 (timm ``vit_base_patch16_224``)."""
    return _vit(num_classes, image_size, 768, 12, **kwargs)
