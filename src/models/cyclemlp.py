"""CycleMLP-B1..B5 (Chen et al., ICLR 2022; layout of the authors' ``cycle_mlp.py``) with stage features.

The network: ``patch_embed`` (conv 7x7, stride 4, pad 2), then ``network`` = [stage 1, downsample,
stage 2, downsample, stage 3, downsample, stage 4] where a stage is a sequence of CycleBlocks and a
downsample is a conv 3x3, stride 2, pad 1; then ``norm`` (LayerNorm over channels), mean over tokens
and ``head``. Blocks work on channels-last maps ``[B, H, W, C]`` with LayerNorm (eps 1e-5) over C:
``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``, where ``attn`` is the CycleMLP token mixer
(two CycleFC branches along W and H, a channel Linear, and a softmax re-weighting of the three).

CycleFC is, in the authors' code, torchvision's ``deform_conv2d`` with a 1x1 kernel and fixed integer
offsets: channel ``c`` is read at a shift of ``(c + k // 2) % k - k // 2`` pixels along one axis (zero
outside the image), then all channels are mixed by the 1x1 weight. We compute exactly that with
shifted copies of the input and per-channel masks, followed by a dense projection, so no deformable
convolution kernel is needed. The authors' ``sfc_h`` has kernel (1, 3) and shifts along W; ``sfc_w``
has kernel (3, 1) and shifts along H (their names, kept).

Parameter names, ours vs. the authors' checkpoint (``S`` = index in ``network``: stages are 0, 2, 4,
6 and downsamples 1, 3, 5; ``N`` = block index in the stage):

===========================================  ===========================================
authors' checkpoint (PyTorch)                this model
===========================================  ===========================================
``patch_embed.proj.weight`` / ``.bias``      ``patch_embed.proj.weight`` / ``.bias``
``network.S.N.norm1.weight`` / ``.bias``     ``network.S.N.norm1.gamma`` / ``.beta``
``network.S.N.attn.mlp_c.weight``            ``network.S.N.attn.mlp_c.weight`` (no bias)
``network.S.N.attn.sfc_h.weight`` / ``.bias``  ``network.S.N.attn.sfc_h.weight`` / ``.bias``
``network.S.N.attn.sfc_h.offset``            not a parameter (a fixed buffer; drop it)
``network.S.N.attn.sfc_w.weight`` / ``.bias``  ``network.S.N.attn.sfc_w.weight`` / ``.bias``
``network.S.N.attn.sfc_w.offset``            not a parameter (drop it)
``network.S.N.attn.reweight.fc1.weight`` / ``.bias``  same name
``network.S.N.attn.reweight.fc2.weight`` / ``.bias``  same name
``network.S.N.attn.proj.weight`` / ``.bias``  same name
``network.S.N.norm2.weight`` / ``.bias``     ``network.S.N.norm2.gamma`` / ``.beta``
``network.S.N.mlp.fc1.weight`` / ``.bias``   same name
``network.S.N.mlp.fc2.weight`` / ``.bias``   same name
``network.S.proj.weight`` / ``.bias``        same name (S odd: downsample conv)
``norm.weight`` / ``.bias``                  ``norm.gamma`` / ``.beta``
``head.weight`` / ``.bias``                  ``head.weight`` / ``.bias``
===========================================  ===========================================

All tensors keep the authors' shapes (CycleFC weight ``[out, in, 1, 1]``, Linear ``[out, in]``).
"""
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype
from mindspore.common.initializer import Normal, initializer

from .base import StageModel, check_in_channels, conv_out
from .layers import Mlp, drop_path, drop_path_rates, normal_dense
from .registry import register_model

# (layers per stage, widths, mlp ratios) as in the authors' CycleMLP_B1..B5.
CYCLEMLP_CONFIGS = {
    "cyclemlp_b1": ((2, 2, 4, 2), (64, 128, 320, 512), (4, 4, 4, 4)),
    "cyclemlp_b2": ((2, 3, 10, 3), (64, 128, 320, 512), (4, 4, 4, 4)),
    "cyclemlp_b3": ((3, 4, 18, 3), (64, 128, 320, 512), (8, 8, 4, 4)),
    "cyclemlp_b4": ((3, 8, 27, 3), (64, 128, 320, 512), (8, 8, 4, 4)),
    "cyclemlp_b5": ((3, 4, 24, 3), (96, 192, 384, 768), (4, 4, 4, 4)),
}
# (kernel, stride, padding) of the stem and of each downsampling conv.
STEM_CONV = (7, 4, 2)
DOWNSAMPLE_CONV = (3, 2, 1)


def cycle_offsets(channels, kernel):
    """Shift of each channel along the CycleFC axis: ``(c + kernel // 2) % kernel - kernel // 2``."""
    return [(c + kernel // 2) % kernel - kernel // 2 for c in range(channels)]


_dense = normal_dense(0.02)  # the authors' init: trunc-normal(0.02) weights (truncated at +-2), zero bias


class CycleFC(nn.Cell):
    """Cycle fully-connected layer on channels-last input ``[B, H, W, C_in] -> [B, H, W, C_out]``.

    ``kernel_size`` is ``(1, k)`` (shift along W) or ``(k, 1)`` (shift along H). Equals torchvision's
    ``deform_conv2d`` with a 1x1 weight and the authors' fixed offsets, zero outside the image.
    """

    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        kernel_h, kernel_w = kernel_size
        if min(kernel_h, kernel_w) != 1:
            raise ValueError(f"CycleFC kernel_size must be (1, k) or (k, 1), got {kernel_size}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (kernel_h, kernel_w)
        kernel = max(kernel_h, kernel_w)
        self.axis = 2 if kernel_h == 1 else 1  # channels-last: W is axis 2, H is axis 1
        offsets = np.array(cycle_offsets(in_channels, kernel))
        self.shifts = tuple(int(s) for s in np.unique(offsets))
        self.pad = max(abs(s) for s in self.shifts)
        # ops.pad lists (before, after) pairs from the last axis backwards.
        self.pad_spec = (0, 0, self.pad, self.pad) if self.axis == 2 else (0, 0, 0, 0, self.pad, self.pad)
        # masks[i, c] = 1 where channel c is read at shift self.shifts[i].
        self.masks = Tensor(np.stack([offsets == s for s in self.shifts]).astype(np.float32))
        self.weight = Parameter(initializer(Normal(0.02), (out_channels, in_channels, 1, 1),
                                            mstype.float32), name="weight")
        self.bias = Parameter(initializer("zeros", (out_channels,), mstype.float32), name="bias")

    def construct(self, x):
        length = x.shape[self.axis]
        padded = ops.pad(x, self.pad_spec) if self.pad > 0 else x
        masks = self.masks.astype(x.dtype)
        sampled = None
        for i, shift in enumerate(self.shifts):
            # Position p of this copy holds x[p + shift] (zero where p + shift leaves the image).
            part = ops.narrow(padded, self.axis, self.pad + shift, length) * masks[i]
            sampled = part if sampled is None else sampled + part
        weight = self.weight.reshape(self.out_channels, self.in_channels).astype(x.dtype)
        return ops.dense(sampled, weight, self.bias.astype(x.dtype))


class CycleMixer(nn.Cell):
    """CycleMLP token mixer (the authors' ``CycleMLP``): W-cycle, H-cycle and channel branches, re-weighted."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim
        self.mlp_c = _dense(dim, dim, has_bias=False)
        self.sfc_h = CycleFC(dim, dim, (1, 3))
        self.sfc_w = CycleFC(dim, dim, (3, 1))
        self.reweight = Mlp(dim, dim // 4, dim * 3, linear=_dense)
        self.proj = _dense(dim, dim)

    def construct(self, x):
        b = x.shape[0]
        h = self.sfc_h(x)
        w = self.sfc_w(x)
        c = self.mlp_c(x)
        a = (h + w + c).mean(axis=(1, 2))
        # reweight output is laid out [B, C, 3]: softmax over the three branches per channel.
        a = self.reweight(a).reshape(b, self.dim, 3).transpose(2, 0, 1)
        a = ops.softmax(a, axis=0).reshape(3, b, 1, 1, self.dim)
        return self.proj(h * a[0] + w * a[1] + c * a[2])


class CycleBlock(nn.Cell):
    """x + mixer(norm1(x)), then x + mlp(norm2(x)); channels-last."""

    def __init__(self, dim, mlp_ratio, drop_path_rate=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm((dim,), epsilon=1e-5)
        self.attn = CycleMixer(dim)
        self.norm2 = nn.LayerNorm((dim,), epsilon=1e-5)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim, linear=_dense)
        self.drop_path = drop_path(drop_path_rate)

    def construct(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class StemEmbed(nn.Cell):
    """Overlapping patch embedding ``[B, 3, H, W] -> [B, H/4, W/4, C]`` (conv 7x7, stride 4, pad 2)."""

    def __init__(self, embed_dim, in_channels=3):
        super().__init__()
        kernel, stride, padding = STEM_CONV
        self.proj = nn.Conv2d(in_channels, embed_dim, kernel, stride, pad_mode="pad", padding=padding,
                              has_bias=True)

    def construct(self, x):
        return self.proj(x).transpose(0, 2, 3, 1)


class Downsample(nn.Cell):
    """Channels-last conv 3x3, stride 2, pad 1 between stages."""

    def __init__(self, in_dim, out_dim):
        super().__init__()
        kernel, stride, padding = DOWNSAMPLE_CONV
        self.proj = nn.Conv2d(in_dim, out_dim, kernel, stride, pad_mode="pad", padding=padding,
                              has_bias=True)

    def construct(self, x):
        return self.proj(x.transpose(0, 3, 1, 2)).transpose(0, 2, 3, 1)


class CycleNet(StageModel):
    """CycleMLP classifier; stage features are the four stage outputs as ``[B, C, H, W]`` maps."""

    family = "mlp"
    stage_kind = "conv"
    num_prefix_tokens = 0

    def __init__(self, layers, embed_dims, mlp_ratios, num_classes=1000, image_size=224, drop_path_rate=0.0,
                 in_channels=3):
        super().__init__()
        if len(layers) != 4 or len(embed_dims) != 4 or len(mlp_ratios) != 4:
            raise ValueError(f"CycleNet needs 4 stages, got layers={layers}, embed_dims={embed_dims}, "
                             f"mlp_ratios={mlp_ratios}")
        if image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size}")
        self.num_classes = num_classes
        self.image_size = image_size
        self.in_channels = check_in_channels(in_channels)
        self.embed_dims = tuple(embed_dims)
        self.feature_dim = embed_dims[-1]
        self.patch_embed = StemEmbed(embed_dims[0], self.in_channels)
        # Stochastic depth grows linearly over all blocks, as in the authors' basic_blocks.
        all_rates = drop_path_rates(drop_path_rate, sum(layers))
        network = []
        first = 0
        for i, depth in enumerate(layers):
            rates = all_rates[first:first + depth]
            network.append(nn.SequentialCell([CycleBlock(embed_dims[i], mlp_ratios[i], r) for r in rates]))
            first += depth
            if i < 3:
                network.append(Downsample(embed_dims[i], embed_dims[i + 1]))
        self.network = nn.CellList(network)
        self.norm = nn.LayerNorm((embed_dims[-1],), epsilon=1e-5)
        self.head = _dense(embed_dims[-1], num_classes)

    def _head(self, x):
        b, h, w, c = x.shape
        pooled = self.norm(x.reshape(b, h * w, c)).mean(axis=1)
        return self.head(pooled), pooled

    def construct(self, x):
        x = self.patch_embed(x)
        for cell in self.network:
            x = cell(x)
        return self._head(x)[0]

    def forward_with_stages(self, x):
        x = self.patch_embed(x)
        stages = ()
        for i, cell in enumerate(self.network):
            x = cell(x)
            if i % 2 == 0:
                stages = stages + (x.transpose(0, 3, 1, 2),)
        logits, pooled = self._head(x)
        return logits, stages, pooled

    def stage_shapes(self, image_size=None):
        size = self.image_size if image_size is None else int(image_size)
        if size < 1:
            raise ValueError(f"image_size must be a positive integer, got {size}")
        side = conv_out(size, *STEM_CONV)
        shapes = []
        for i, dim in enumerate(self.embed_dims):
            if i > 0:
                side = conv_out(side, *DOWNSAMPLE_CONV)
            if side < 1:
                raise ValueError(f"image_size {size} is too small for CycleMLP (stage {i + 1} would be empty)")
            shapes.append((dim, side, side))
        return shapes


def _cyclemlp(name, num_classes, image_size, **kwargs):
    layers, embed_dims, mlp_ratios = CYCLEMLP_CONFIGS[name]
    return CycleNet(layers, embed_dims, mlp_ratios, num_classes=num_classes, image_size=image_size, **kwargs)


@register_model
def cyclemlp_b1(num_classes=1000, image_size=224, **kwargs):
    """CycleMLP-B1: layers 2-2-4-2, widths 64-128-320-512, mlp ratio 4."""
    return _cyclemlp("cyclemlp_b1", num_classes, image_size, **kwargs)


@register_model
def cyclemlp_b2(num_classes=1000, image_size=224, **kwargs):
    """CycleMLP-B2: layers 2-3-10-3, widths 64-128-320-512, mlp ratio 4."""
    return _cyclemlp("cyclemlp_b2", num_classes, image_size, **kwargs)


@register_model
def cyclemlp_b3(num_classes=1000, image_size=224, **kwargs):
    """CycleMLP-B3: layers 3-4-18-3, widths 64-128-320-512, mlp ratios 8-8-4-4."""
    return _cyclemlp("cyclemlp_b3", num_classes, image_size, **kwargs)


@register_model
def cyclemlp_b4(num_classes=1000, image_size=224, **kwargs):
    """CycleMLP-B4: layers 3-8-27-3, widths 64-128-320-512, mlp ratios 8-8-4-4."""
    return _cyclemlp("cyclemlp_b4", num_classes, image_size, **kwargs)


@register_model
def cyclemlp_b5(num_classes=1000, image_size=224, **kwargs):
    """CycleMLP-B5: layers 3-4-24-3, widths 96-192-384-768, mlp ratio 4."""
    return _cyclemlp("cyclemlp_b5", num_classes, image_size, **kwargs)
