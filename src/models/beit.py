"""BEiT v2 classifiers (timm ``beitv2_{base,large}_patch16_224`` layout and numerics) with stage features.

The architecture: a 16x16 patch embedding, a cls token, no absolute position embedding, and in every
block a relative position bias of its own (table of ``(2*Gh-1)*(2*Gw-1) + 3`` rows by heads; the
three extra rows hold the cls->token, token->cls and cls->cls biases). Attention has a bias on q and
v but none on k. Blocks use layer scale (``gamma_1``, ``gamma_2``), LayerNorm eps 1e-6 and exact
(erf) GELU. The classifier averages the patch tokens (cls left out), applies ``fc_norm`` and ``head``;
timm's final ``norm`` is an Identity for this head and is left out here.

Parameter names, ours vs. the timm checkpoint (``N`` = block index):

=================================================  =================================================
timm / BEiT v2 checkpoint                          this model
=================================================  =================================================
``cls_token``                                      ``cls_token``
``patch_embed.proj.weight`` / ``.bias``            ``patch_embed.proj.weight`` / ``.bias``
``blocks.N.norm1.weight`` / ``.bias``              ``blocks.N.norm1.gamma`` / ``.beta``
``blocks.N.attn.qkv.weight``                       ``blocks.N.attn.qkv.weight``
``blocks.N.attn.q_bias`` / ``.v_bias``             ``blocks.N.attn.q_bias`` / ``.v_bias``
``blocks.N.attn.relative_position_bias_table``     ``blocks.N.attn.relative_position_bias_table``
``blocks.N.attn.relative_position_index``          not a parameter (rebuilt from the grid; drop it)
``blocks.N.attn.proj.weight`` / ``.bias``          ``blocks.N.attn.proj.weight`` / ``.bias``
``blocks.N.norm2.weight`` / ``.bias``              ``blocks.N.norm2.gamma`` / ``.beta``
``blocks.N.mlp.fc1.weight`` / ``.bias``            ``blocks.N.mlp.fc1.weight`` / ``.bias``
``blocks.N.mlp.fc2.weight`` / ``.bias``            ``blocks.N.mlp.fc2.weight`` / ``.bias``
``blocks.N.gamma_1`` / ``blocks.N.gamma_2``        ``blocks.N.gamma_1`` / ``blocks.N.gamma_2``
``fc_norm.weight`` / ``.bias``                     ``fc_norm.gamma`` / ``.beta``
``head.weight`` / ``.bias``                        ``head.weight`` / ``.bias``
=================================================  =================================================

All tensors keep timm's shapes (Linear weights ``[out, in]``, conv weights ``[out, in, kh, kw]``).
"""
import math

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype
from mindspore.common.initializer import Normal, initializer

from .layers import (LN_EPS, Attention, Mlp, PatchEmbed, TokenStackModel, drop_path, drop_path_rates, normal_dense,
                     relative_position_bias)
from .registry import register_model
from .resize import other_size_error


def relative_position_index(grid_h, grid_w):
    """Index ``[N+1, N+1]`` (N = grid_h * grid_w, cls first) into a block's relative-position bias table.

    Patch pairs use ``(dy + Gh - 1) * (2*Gw - 1) + (dx + Gw - 1)``; the last three table rows are
    cls->token (row 0 of the index), token->cls (column 0) and cls->cls (the corner).
    """
    num_distances = (2 * grid_h - 1) * (2 * grid_w - 1) + 3
    coords = np.stack(np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")).reshape(2, -1)
    relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0)
    patch_index = (relative[..., 0] + grid_h - 1) * (2 * grid_w - 1) + (relative[..., 1] + grid_w - 1)
    num_tokens = grid_h * grid_w + 1
    index = np.zeros((num_tokens, num_tokens), dtype=np.int32)
    index[1:, 1:] = patch_index
    index[0, :] = num_distances - 3
    index[:, 0] = num_distances - 2
    index[0, 0] = num_distances - 1
    return index


class RelPosAttention(Attention):
    """Self-attention with q/v biases (no k bias) and a learned relative position bias per block."""

    def __init__(self, dim, num_heads, grid_size, proj_std=0.02):
        super().__init__(dim, num_heads, qkv_bias=False, linear=normal_dense(0.02),
                         proj_linear=normal_dense(proj_std))
        self.q_bias = Parameter(initializer("zeros", (dim,), mstype.float32), name="q_bias")
        self.v_bias = Parameter(initializer("zeros", (dim,), mstype.float32), name="v_bias")
        grid_h, grid_w = grid_size
        num_distances = (2 * grid_h - 1) * (2 * grid_w - 1) + 3
        self.relative_position_bias_table = Parameter(
            initializer("zeros", (num_distances, num_heads), mstype.float32),
            name="relative_position_bias_table")
        self.num_tokens = grid_h * grid_w + 1
        # A constant, not a Parameter: it is fixed by the grid and never trained or saved.
        self.relative_position_index = Tensor(relative_position_index(grid_h, grid_w).reshape(-1),
                                              mstype.int32)

    def _project_qkv(self, x):
        qkv_bias = ops.concat((self.q_bias, ops.zeros_like(self.q_bias), self.v_bias))
        return ops.dense(x, self.qkv.weight, qkv_bias)

    def _add_bias(self, attn):
        bias = relative_position_bias(self.relative_position_bias_table, self.relative_position_index,
                                      self.num_tokens, self.num_heads)
        return attn + ops.expand_dims(bias, 0)


class BeitBlock(nn.Cell):
    """Pre-norm transformer block with layer scale: x + g1 * attn(norm1(x)), then x + g2 * mlp(norm2(x))."""

    def __init__(self, dim, num_heads, grid_size, mlp_ratio=4.0, init_values=1e-5, drop_path_rate=0.0,
                 block_number=1):
        super().__init__()
        # timm rescales the residual-branch output layers of block n (from 1) by 1 / sqrt(2 n).
        residual_std = 0.02 / math.sqrt(2.0 * block_number)
        self.norm1 = nn.LayerNorm((dim,), epsilon=LN_EPS)
        self.attn = RelPosAttention(dim, num_heads, grid_size, proj_std=residual_std)
        self.norm2 = nn.LayerNorm((dim,), epsilon=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), linear=normal_dense(0.02), fc2_linear=normal_dense(residual_std))
        self.gamma_1 = Parameter(initializer(float(init_values), (dim,), mstype.float32), name="gamma_1")
        self.gamma_2 = Parameter(initializer(float(init_values), (dim,), mstype.float32), name="gamma_2")
        self.drop_path = drop_path(drop_path_rate)

    def construct(self, x):
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


class Beit(TokenStackModel):
    """BEiT (v2) image classifier with a mean-pooled head; stage features are outputs of chosen blocks.

    ``image_size`` must be a multiple of ``patch_size``: the relative position tables are built for that
    grid, so the model only accepts inputs of that size.
    """

    family = "vit"
    num_prefix_tokens = 1

    def __init__(self, num_classes=1000, image_size=224, patch_size=16, in_channels=3, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4.0, init_values=1e-5, stage_blocks=(2, 4, 10, 12),
                 drop_path_rate=0.0, head_init_scale=0.001):
        super().__init__()
        self._set_stack(num_classes, image_size, patch_size, embed_dim, depth, stage_blocks, in_channels)
        self.patch_embed = PatchEmbed(patch_size, self.in_channels, embed_dim)
        self.cls_token = Parameter(initializer(Normal(0.02), (1, 1, embed_dim), mstype.float32),
                                   name="cls_token")
        self.blocks = nn.CellList([
            BeitBlock(embed_dim, num_heads, (self.grid, self.grid), mlp_ratio, init_values, rate,
                      block_number=i + 1)
            for i, rate in enumerate(drop_path_rates(drop_path_rate, depth))])
        self.fc_norm = nn.LayerNorm((embed_dim,), epsilon=LN_EPS)
        self.head = normal_dense(0.02 * head_init_scale)(embed_dim, self.num_classes)

    def _embed(self, x):
        tokens = self.patch_embed(x)
        cls = ops.broadcast_to(self.cls_token, (tokens.shape[0], 1, self.embed_dim))
        return ops.concat((cls.astype(tokens.dtype), tokens), axis=1)

    def _pool(self, x):
        return self.fc_norm(x[:, 1:].mean(axis=1))

    def _adapt_to_size(self, params, source):
        """Refuses relative-position tables of another patch grid (no resampling of them is provided)."""
        name = "blocks.0.attn.relative_position_bias_table"
        value, want = params.get(name), tuple(self.blocks[0].attn.relative_position_bias_table.shape)
        if value is not None and tuple(value.shape) != want:
            raise other_size_error(source, name, value.shape, want, self.image_size,
                                   "BEiT's relative-position tables follow the patch grid; build the model at the "
                                   "checkpoint's size")
        return params


@register_model
def beitv2_base(num_classes=1000, image_size=224, **kwargs):
    """BEiT v2 base, patch 16 (timm ``beitv2_base_patch16_224``); stages after blocks 2, 4, 10, 12."""
    return Beit(num_classes=num_classes, image_size=image_size, patch_size=16, embed_dim=768, depth=12,
                num_heads=12, init_values=1e-5, stage_blocks=(2, 4, 10, 12), **kwargs)


@register_model
def beitv2_large(num_classes=1000, image_size=224, **kwargs):
    """BEiT v2 large, patch 16 (timm ``beitv2_large_patch16_224``); stages after blocks 2, 4, 22, 24."""
    return Beit(num_classes=num_classes, image_size=image_size, patch_size=16, embed_dim=1024, depth=24,
                num_heads=16, init_values=1e-5, stage_blocks=(2, 4, 22, 24), **kwargs)
