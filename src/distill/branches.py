"""Exit branches: map one student stage's features to logits (docs/method.md, "Exit branches").

``ConvBranch`` serves students whose stages are spatial maps ``[B, C, H, W]`` (CNNs, CycleMLP);
``TokenBranch`` serves token students ``[B, N, E]`` (ViT/DeiT, Swin, Mixer, ResMLP).
Branches exist only during training: the exported student never contains them.
"""
import math

from mindspore import nn, ops
from mindspore.common import initializer as init

from src.models.layers import GELU
from src.models.vit import Block

FINAL_GRID = 7  # token branches merge patches until about 7 x 7 remain, as at the last CNN stage
BRANCH_LN_EPS = 1e-5  # torch's LayerNorm default, which the reference's branch blocks and patch merging use


def _conv(c_in, c_out, kernel, stride=1, groups=1, bias=False):
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, pad_mode="pad", padding=kernel // 2, group=groups,
                     has_bias=bias, weight_init=init.HeNormal(mode="fan_out", nonlinearity="relu"),
                     bias_init="zeros")


def _bn(channels):
    return nn.BatchNorm2d(channels, momentum=0.9, gamma_init="ones", beta_init="zeros")


def _linear(d_in, d_out, bias=True):
    return nn.Dense(d_in, d_out, has_bias=bias, weight_init=init.TruncatedNormal(0.02), bias_init="zeros")


class SepConv(nn.Cell):
    """Depthwise-separable down-sampling block: (dw3x3/2 -> 1x1 -> BN -> ReLU) -> (dw3x3 -> 1x1 -> BN -> ReLU)."""

    def __init__(self, c_in, c_out):
        super().__init__()
        self.op = nn.SequentialCell([
            _conv(c_in, c_in, 3, stride=2, groups=c_in), _conv(c_in, c_in, 1), _bn(c_in), nn.ReLU(),
            _conv(c_in, c_in, 3, groups=c_in), _conv(c_in, c_out, 1), _bn(c_out), nn.ReLU(),
        ])

    def construct(self, x):
        return self.op(x)


class ConvBranch(nn.Cell):
    """Stage map ``[B, C, H, W]`` -> logits.

    Stages 1..3 halve the resolution ``4 - stage`` times with SepConv blocks (doubling channels, the
    last one emitting ``width``); stage 4 uses a 1x1 conv. Then global average pool and a linear head.
    """

    def __init__(self, in_channels, stage, width, num_classes):
        super().__init__()
        if stage == 4:
            layers = [_conv(in_channels, width, 1, bias=True)]
        else:
            num_blocks = 4 - stage
            chans = [in_channels * 2 ** k for k in range(num_blocks)] + [width]
            layers = [SepConv(chans[k], chans[k + 1]) for k in range(num_blocks)]
        self.features = nn.SequentialCell(layers)
        self.head = _linear(width, num_classes)

    def construct(self, x):
        x = self.features(x)
        return self.head(x.mean(axis=(2, 3)))


class PatchMerging(nn.Cell):
    """2x2 neighbouring tokens -> concat (4E) -> LayerNorm -> Linear(4E -> out, no bias) -> optional GELU."""

    def __init__(self, grid, dim, out_dim, act=True):
        super().__init__()
        self.grid = grid
        self.norm = nn.LayerNorm((4 * dim,), epsilon=BRANCH_LN_EPS)
        self.reduction = _linear(4 * dim, out_dim, bias=False)
        self.act = GELU() if act else nn.Identity()  # exact (erf) GELU, the form that is fastest on CPU

    def construct(self, x):
        b, _, c = x.shape
        g = self.grid // 2
        # [B, H, W, C] with H = 2h + dh, W = 2w + dw; concat order (dh, dw) = (0,0), (1,0), (0,1), (1,1).
        x = x.reshape(b, g, 2, g, 2, c).transpose(0, 1, 3, 4, 2, 5).reshape(b, g * g, 4 * c)
        return self.act(self.reduction(self.norm(x)))


class TokenBranch(nn.Cell):
    """Token stage ``[B, P + N, E]`` (P prefix/cls tokens) -> logits.

    Patch tokens are merged Swin-style until about 7x7 remain (prefix tokens bypass the merge and are
    put back in front), then ``max(4 - stage, 1)`` transformer blocks of width ``width`` (4 heads, no
    qkv bias) run on all tokens; the read-out is the first prefix token, or the token mean without one.
    """

    def __init__(self, num_tokens, embed_dim, stage, width, num_classes, num_prefix_tokens=0):
        super().__init__()
        num_patches = num_tokens - num_prefix_tokens
        grid = math.isqrt(num_patches)
        if grid * grid != num_patches:
            raise ValueError(f"stage {stage}: {num_patches} patch tokens do not form a square grid")
        merge_num = max(int(math.log2(grid / FINAL_GRID)), 0)
        if grid % (2 ** merge_num):
            raise ValueError(f"stage {stage}: a {grid}x{grid} token grid cannot be merged {merge_num} times "
                             f"(halving towards {FINAL_GRID}x{FINAL_GRID}); choose an image size whose stage "
                             f"grids are divisible by {2 ** merge_num}")
        self.num_prefix_tokens = num_prefix_tokens
        merges = []
        dim = embed_dim
        for i in range(merge_num):
            merges.append(PatchMerging(grid // 2 ** i, dim, width, act=(i == 0 or i != merge_num - 1)))
            dim = width
        if dim != width:  # no merge and a stage narrower than the student: project the width (our extension)
            merges.append(_linear(dim, width))
        self.merge = nn.SequentialCell(merges) if merges else nn.Identity()
        self.prefix_proj = _linear(embed_dim, width) if (num_prefix_tokens and embed_dim != width) else nn.Identity()
        # the reference's timm 0.6.5 Block: torch's LayerNorm, eps 1e-5 (our ViTs use timm's 1e-6)
        self.blocks = nn.SequentialCell([Block(width, num_heads=4, qkv_bias=False, norm_eps=BRANCH_LN_EPS)
                                         for _ in range(max(4 - stage, 1))])
        self.head = _linear(width, num_classes)

    def construct(self, x):
        p = self.num_prefix_tokens
        if p > 0:
            prefix = self.prefix_proj(x[:, :p])
            x = ops.concat((prefix, self.merge(x[:, p:])), axis=1)
            feat = self.blocks(x)[:, 0]
        else:
            feat = self.blocks(self.merge(x)).mean(axis=1)
        return self.head(feat)


def build_branch(student, stage, stage_shape, teacher_dim, num_classes):
    """The exit branch for ``stage`` of ``student`` (its ``stage_kind`` picks the conv or token form)."""
    student_dim = int(student.feature_dim)
    if student.stage_kind == "conv":
        if len(stage_shape) != 3:
            raise ValueError(f"stage {stage}: a conv branch needs a (C, H, W) stage shape, got {stage_shape}")
        return ConvBranch(stage_shape[0], stage, max(student_dim, teacher_dim), num_classes)
    if student.stage_kind == "token":
        if len(stage_shape) != 2:
            raise ValueError(f"stage {stage}: a token branch needs an (N, E) stage shape, got {stage_shape}")
        return TokenBranch(stage_shape[0], stage_shape[1], stage, student_dim, num_classes,
                           num_prefix_tokens=int(student.num_prefix_tokens))
    raise ValueError(f"student stage_kind must be 'conv' or 'token', got {student.stage_kind!r}")
