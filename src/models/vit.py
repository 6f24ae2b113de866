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
The attention, MLP, patch embedding and the block-stack skeleton are the shared ones of ``layers.py``.
"""
from mindspore import Parameter, nn, ops
from mindspore.common import initializer as init

from .layers import LN_EPS, Attention, Mlp, PatchEmbed, TokenStackModel, dense, drop_path, drop_path_rates
from .registry import register_model
from .resize import as_array, resample_pos_embed, same_kind



class Block(nn.Cell):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop_path_rate=0.0, norm_eps=LN_EPS):
        super().__init__()
        self.norm1 = nn.LayerNorm((dim,), epsilon=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm((dim,), epsilon=norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = drop_path(drop_path_rate)

    def construct(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class VisionTransformer(TokenStackModel):
    """ViT/DeiT classifier on the cls token; stage features are outputs of ``stage_blocks``."""

    family = "vit"
    stage_kind = "token"
    num_prefix_tokens = 1

    def __init__(self, num_classes=1000, image_size=224, patch_size=16, in_channels=3, embed_dim=768,
                 depth=12, num_heads=12, mlp_ratio=4.0, qkv_bias=True, stage_blocks=None, drop_path_rate=0.0):
        super().__init__()
        self._set_stack(num_classes, image_size, patch_size, embed_dim, depth, stage_blocks, in_channels)
        self.patch_embed = PatchEmbed(patch_size, self.in_channels, embed_dim)
        num_tokens = self.grid * self.grid + self.num_prefix_tokens
        # timm init: cls token ~ N(0, 1e-6), position embedding ~ trunc-normal(0.02).
        self.cls_token = Parameter(init.initializer(init.Normal(1e-6), (1, 1, embed_dim)), name="cls_token")
        self.pos_embed = Parameter(init.initializer(init.TruncatedNormal(0.02), (1, num_tokens, embed_dim)),
                                   name="pos_embed")
        self.blocks = nn.CellList([Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_path_rate=r)
                                   for r in drop_path_rates(drop_path_rate, depth)])
        self.norm = nn.LayerNorm((embed_dim,), epsilon=LN_EPS)
        self.head = dense(embed_dim, self.num_classes)

    def _embed(self, x):
        x = self.patch_embed(x)
        cls = ops.broadcast_to(self.cls_token, (x.shape[0], 1, self.embed_dim))
        return ops.cat((cls, x), axis=1) + self.pos_embed

    def _pool(self, x):
        return self.norm(x)[:, 0]

    def _adapt_to_size(self, params, source):
        """A ``pos_embed`` trained on another patch grid is resampled to this model's (bicubic with
        antialiasing, cls token kept), as timm does when it loads weights at another image size."""
        value = params.get("pos_embed")
        want = tuple(self.pos_embed.shape)
        if value is None or tuple(value.shape) == want or len(value.shape) != 3 or value.shape[2] != want[2]:
            return params  # nothing to do, or a mismatch the loader reports with its own message
        try:
            resized = resample_pos_embed(as_array(value), self.grid, self.num_prefix_tokens)
        except ValueError as err:
            raise ValueError(f"checkpoint '{source}': cannot resample 'pos_embed' to a {self.grid}x{self.grid} "
                             f"grid: {err}") from None
        return dict(params, pos_embed=same_kind(value, resized, "pos_embed"))


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
