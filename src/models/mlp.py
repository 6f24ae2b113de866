"""MLP-Mixer (Tolstikhin et al. 2021) and ResMLP (Touvron et al. 2021), numerically equal to timm.

Layout follows timm's ``MlpMixer`` with ``MixerBlock`` / ``ResBlock`` so that every timm tensor
maps to exactly one of ours with the same shape (MindSpore ``nn.Dense`` / ``nn.Conv2d`` store
weights as torch does, so no transposes are needed); only MindSpore's LayerNorm parameter names
(``gamma`` / ``beta``) differ:

========================================  ========================================
timm name                                 our name
========================================  ========================================
stem.proj.weight / .bias                  stem.proj.weight / .bias
blocks.N.norm1.weight / .bias   (Mixer)   blocks.N.norm1.gamma / .beta
blocks.N.mlp_tokens.fc1/fc2.weight/.bias  blocks.N.mlp_tokens.fc1/fc2.weight/.bias
blocks.N.norm2.weight / .bias   (Mixer)   blocks.N.norm2.gamma / .beta
blocks.N.mlp_channels.fc1/fc2.*           blocks.N.mlp_channels.fc1/fc2.*
norm.weight / .bias             (Mixer)   norm.gamma / .beta
blocks.N.norm1.alpha / .beta   (ResMLP)   blocks.N.norm1.alpha / .beta
blocks.N.linear_tokens.weight / .bias     blocks.N.linear_tokens.weight / .bias
blocks.N.norm2.alpha / .beta   (ResMLP)   blocks.N.norm2.alpha / .beta
blocks.N.ls1 / blocks.N.ls2    (ResMLP)   blocks.N.ls1 / blocks.N.ls2
norm.alpha / .beta             (ResMLP)   norm.alpha / .beta
head.weight / .bias                       head.weight / .bias
========================================  ========================================

Numerics as in timm: exact (erf) GELU, LayerNorm eps 1e-6, Affine
``beta + alpha * x``, token mixing applied to the ``[B, E, N]`` transpose, mean-pooled head.
"""
import math

from mindspore import Parameter, nn
from mindspore.common import initializer as init

from .registry import register_model
from mindcv.models.layers import DropPath

from .vit import (LN_EPS, Mlp, PatchEmbed, TokenStackModel, check_stage_blocks, default_stage_blocks,
                  drop_path_rates, patch_grid)


def mixer_dense(in_features, out_features):
    """Linear layer with timm's Mixer init: xavier-uniform weight, bias ~ N(0, 1e-6)."""
    return nn.Dense(in_features, out_features, weight_init=init.XavierUniform(),
                    bias_init=init.Normal(1e-6))


class Affine(nn.Cell):
    """ResMLP's per-channel affine 'norm': ``beta + alpha * x``, parameters shaped ``[1, 1, dim]``."""

    def __init__(self, dim):
        super().__init__()
        self.alpha = Parameter(init.initializer("ones", (1, 1, dim)), name="alpha")
        self.beta = Parameter(init.initializer("zeros", (1, 1, dim)), name="beta")

    def construct(self, x):
        return self.beta + self.alpha * x


class MixerBlock(nn.Cell):
    """x + token-MLP over patches (on the transpose), then x + channel-MLP; both pre-LayerNorm."""

    def __init__(self, dim, seq_len, tokens_dim, channels_dim, drop_path=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm((dim,), epsilon=LN_EPS)
        self.mlp_tokens = Mlp(seq_len, tokens_dim, linear=mixer_dense)
        self.norm2 = nn.LayerNorm((dim,), epsilon=LN_EPS)
        self.mlp_channels = Mlp(dim, channels_dim, linear=mixer_dense)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def construct(self, x):
        x = x + self.drop_path(self.mlp_tokens(self.norm1(x).transpose(0, 2, 1)).transpose(0, 2, 1))
        return x + self.drop_path(self.mlp_channels(self.norm2(x)))


class ResBlock(nn.Cell):
    """ResMLP block: linear token mixing and a channel MLP, each after Affine and before layer scale."""

    def __init__(self, dim, seq_len, mlp_ratio=4, init_values=0.1, drop_path=0.0):
        super().__init__()
        self.norm1 = Affine(dim)
        # timm's name test ('mlp' in name) gives this linear xavier weight and a zero bias.
        self.linear_tokens = nn.Dense(seq_len, seq_len, weight_init=init.XavierUniform(), bias_init="zeros")
        self.norm2 = Affine(dim)
        self.mlp_channels = Mlp(dim, int(dim * mlp_ratio), linear=mixer_dense)
        self.ls1 = Parameter(init.initializer(init.Constant(init_values), (dim,)), name="ls1")
        self.ls2 = Parameter(init.initializer(init.Constant(init_values), (dim,)), name="ls2")
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def construct(self, x):
        x = x + self.drop_path(self.ls1 * self.linear_tokens(self.norm1(x).transpose(0, 2, 1)).transpose(0, 2, 1))
        return x + self.drop_path(self.ls2 * self.mlp_channels(self.norm2(x)))


class MlpMixer(TokenStackModel):
    """Patch embedding -> token/channel-mixing blocks -> norm -> mean over tokens -> head.

    ``block`` is "mixer" (MLP-Mixer, LayerNorm) or "resmlp" (ResMLP, Affine). The token-mixing
    widths equal the number of patches, so the model runs only at the ``image_size`` it was built for.
    """

    family = "mlp"
    stage_kind = "token"
    num_prefix_tokens = 0

    def __init__(self, num_classes=1000, image_size=224, patch_size=16, in_chans=3, embed_dim=768,
                 depth=12, block="mixer", tokens_dim=384, mlp_ratio=4.0, init_values=0.1,
                 stage_blocks=None, drop_path_rate=0.0):
        super().__init__()
        if block not in ("mixer", "resmlp"):
            raise ValueError(f"block {block!r} is not one of 'mixer', 'resmlp'")
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

        seq_len = self.grid * self.grid
        self.stem = PatchEmbed(patch_size, in_chans, embed_dim)
        if block == "mixer":
            blocks = [MixerBlock(embed_dim, seq_len, tokens_dim, int(embed_dim * mlp_ratio), drop_path=r)
                      for r in drop_path_rates(drop_path_rate, depth)]
            self.norm = nn.LayerNorm((embed_dim,), epsilon=LN_EPS)
        else:
            blocks = [ResBlock(embed_dim, seq_len, mlp_ratio, init_values, drop_path=r)
                      for r in drop_path_rates(drop_path_rate, depth)]
            self.norm = Affine(embed_dim)
        self.blocks = nn.CellList(blocks)
        # timm zero-initialises the classifier of these models.
        self.head = nn.Dense(embed_dim, self.num_classes, weight_init="zeros", bias_init="zeros")
        self._init_patch_embed(in_chans * patch_size * patch_size)

    def _init_patch_embed(self, fan_in):
        # timm: LeCun-normal (truncated at 2 std) conv weight, zero bias.
        std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
        proj = self.stem.proj
        proj.weight.set_data(init.initializer(init.TruncatedNormal(std, a=-2 * std, b=2 * std),
                                              proj.weight.shape))
        proj.bias.set_data(init.initializer("zeros", proj.bias.shape))

    def _pool(self, x):
        return self.norm(x).mean(axis=1)

    def _embed(self, x):
        return self.stem(x)

    def stage_shapes(self, image_size=None):
        size = self.image_size if image_size is None else image_size
        return [(patch_grid(size, self.patch_size) ** 2, self.embed_dim)] * 4


@register_model
def mixer_b16(num_classes=1000, image_size=224, **kwargs):
    """MLP-Mixer B/16 (timm ``mixer_b16_224``): width 768, 12 blocks, token-MLP 384, channel-MLP 3072."""
    return MlpMixer(num_classes=num_classes, image_size=image_size, patch_size=16, embed_dim=768,
                    depth=12, block="mixer", tokens_dim=384, mlp_ratio=4.0, **kwargs)


@register_model
def resmlp_12(num_classes=1000, image_size=224, **kwargs):
    """ResMLP-S12 (timm ``resmlp_12_224``): width 384, 12 blocks, layer scale 0.1, MLP ratio 4."""
    return MlpMixer(num_classes=num_classes, image_size=image_size, patch_size=16, embed_dim=384,
                    depth=12, block="resmlp", mlp_ratio=4, init_values=0.1, **kwargs)
