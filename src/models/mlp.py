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
``beta + alpha * x``, mean-pooled head. timm mixes tokens by applying its linear layers to the
``[B, E, N]`` transpose; we multiply by their weights from the left (``W @ x`` on ``[B, N, E]``),
the same sums without the two transposes, and ResMLP's Affine and layer scale are folded around that
product (see ``ResBlock``).
"""
import math

from mindspore import Parameter, nn, ops
from mindspore.common import initializer as init

from .layers import LN_EPS, Mlp, PatchEmbed, TokenStackModel, dense, drop_path, drop_path_rates
from .registry import register_model



def mixer_dense(in_features, out_features):
    """Linear layer with timm's Mixer init: xavier-uniform weight, bias ~ N(0, 1e-6)."""
    return dense(in_features, out_features, weight_init=init.XavierUniform(), bias_init=init.Normal(1e-6))


def mix_tokens(linear, x):
    """``linear`` applied along the token axis of ``x`` ``[B, N, E]``: timm's ``linear(x^T)^T`` as ``W @ x``."""
    return ops.matmul(linear.weight, x) + linear.bias.reshape(-1, 1)


class Affine(nn.Cell):
    """ResMLP's per-channel affine 'norm': ``beta + alpha * x``, parameters shaped ``[1, 1, dim]``."""

    def __init__(self, dim):
        super().__init__()
        self.alpha = Parameter(init.initializer("ones", (1, 1, dim)), name="alpha")
        self.beta = Parameter(init.initializer("zeros", (1, 1, dim)), name="beta")

    def construct(self, x):
        return self.beta + self.alpha * x


class MixerBlock(nn.Cell):
    """x + token-MLP over patches, then x + channel-MLP; both pre-LayerNorm."""

    def __init__(self, dim, seq_len, tokens_dim, channels_dim, drop_path_rate=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm((dim,), epsilon=LN_EPS)
        self.mlp_tokens = Mlp(seq_len, tokens_dim, linear=mixer_dense)
        self.norm2 = nn.LayerNorm((dim,), epsilon=LN_EPS)
        self.mlp_channels = Mlp(dim, channels_dim, linear=mixer_dense)
        self.drop_path = drop_path(drop_path_rate)

    def construct(self, x):
        tokens = self.mlp_tokens
        y = mix_tokens(tokens.fc2, tokens.act(mix_tokens(tokens.fc1, self.norm1(x))))
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp_channels(self.norm2(x)))


class ResBlock(nn.Cell):
    """ResMLP block: linear token mixing and a channel MLP, each after Affine and before layer scale.

    The token branch ``ls1 * linear_tokens(norm1(x))`` (along tokens) is computed as
    ``(W @ x) * (ls1 * alpha) + ls1 * (rowsum(W) beta + b)``: the same function with one product and two
    element-wise passes over the activations instead of five.
    """

    def __init__(self, dim, seq_len, mlp_ratio=4, init_values=0.1, drop_path_rate=0.0):
        super().__init__()
        self.norm1 = Affine(dim)
        # timm's name test ('mlp' in name) gives this linear xavier weight and a zero bias.
        self.linear_tokens = dense(seq_len, seq_len, weight_init=init.XavierUniform())
        self.norm2 = Affine(dim)
        self.mlp_channels = Mlp(dim, int(dim * mlp_ratio), linear=mixer_dense)
        self.ls1 = Parameter(init.initializer(init.Constant(init_values), (dim,)), name="ls1")
        self.ls2 = Parameter(init.initializer(init.Constant(init_values), (dim,)), name="ls2")
        self.drop_path = drop_path(drop_path_rate)

    def construct(self, x):
        weight, bias = self.linear_tokens.weight, self.linear_tokens.bias
        shift = self.ls1 * (weight.sum(1).reshape(-1, 1) * self.norm1.beta.reshape(1, -1) + bias.reshape(-1, 1))
        x = x + self.drop_path(ops.matmul(weight, x) * (self.ls1 * self.norm1.alpha) + shift)
        return x + self.drop_path(self.ls2 * self.mlp_channels(self.norm2(x)))


class MlpMixer(TokenStackModel):
    """Patch embedding -> token/channel-mixing blocks -> norm -> mean over tokens -> head.

    ``block`` is "mixer" (MLP-Mixer, LayerNorm) or "resmlp" (ResMLP, Affine). The token-mixing
    widths equal the number of patches, so the model runs only at the ``image_size`` it was built for,
    and weights trained at one size do not load at another (``adapt_checkpoint`` refuses them: unlike a
    position embedding, a token-mixing matrix has no meaningful resampling).
    """

    family = "mlp"
    num_prefix_tokens = 0

    def __init__(self, num_classes=1000, image_size=224, patch_size=16, in_channels=3, embed_dim=768,
                 depth=12, block="mixer", tokens_dim=384, mlp_ratio=4.0, init_values=0.1,
                 stage_blocks=None, drop_path_rate=0.0):
        super().__init__()
        if block not in ("mixer", "resmlp"):
            raise ValueError(f"block {block!r} is not one of 'mixer', 'resmlp'")
        self._set_stack(num_classes, image_size, patch_size, embed_dim, depth, stage_blocks, in_channels)
        seq_len = self.grid * self.grid
        self.stem = PatchEmbed(patch_size, self.in_channels, embed_dim)
        if block == "mixer":
            blocks = [MixerBlock(embed_dim, seq_len, tokens_dim, int(embed_dim * mlp_ratio), drop_path_rate=r)
                      for r in drop_path_rates(drop_path_rate, depth)]
            self.norm = nn.LayerNorm((embed_dim,), epsilon=LN_EPS)
        else:
            blocks = [ResBlock(embed_dim, seq_len, mlp_ratio, init_values, drop_path_rate=r)
                      for r in drop_path_rates(drop_path_rate, depth)]
            self.norm = Affine(embed_dim)
        self.blocks = nn.CellList(blocks)
        # timm zero-initialises the classifier of these models.
        self.head = nn.Dense(embed_dim, self.num_classes, weight_init="zeros", bias_init="zeros")
        self._init_patch_embed(self.in_channels * patch_size * patch_size)

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

    def _adapt_to_size(self, params, source):
        """Refuses weights trained at another size: token-mixing layers are tied to the token count."""
        tokens = self.grid * self.grid
        for name in ("blocks.0.mlp_tokens.fc1.weight", "blocks.0.linear_tokens.weight"):
            value = params.get(name)
            if value is not None and len(value.shape) == 2 and value.shape[1] != tokens:
                side = math.isqrt(int(value.shape[1]))
                raise ValueError(
                    f"checkpoint '{source}': '{name}' mixes {value.shape[1]} tokens ({side}x{side} patches, "
                    f"{side * self.patch_size} px), this model is built for {tokens} ({self.image_size} px); "
                    f"token-mixing weights are tied to the token count and cannot be resampled: build the "
                    f"model at {side * self.patch_size} px")
        return params


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
