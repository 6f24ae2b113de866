"""ConvNeXt (Liu et al. 2022) with mindcv 0.3.0's parameter names, timm's numerics, and stage features.

The layout (and so checkpoint names) is mindcv's: ``feature`` alternates a down-sampling layer (stem
first: conv 4x4/4 + LayerNorm; then LayerNorm + conv 2x2/2) and a stage of blocks; ``norm`` is the
final LayerNorm on the pooled features and ``classifier`` the head. A block is depthwise conv 7x7 ->
(channels-last) LayerNorm -> ``pwconv1`` -> exact GELU -> ``pwconv2`` -> layer scale ``gamma_`` ->
residual, all LayerNorms with eps 1e-6. Two things differ from mindcv's code, not from the function:
the GELU is the exact (erf) one, as timm's (mindcv's default is the tanh approximation), and the
layer scale is folded into ``pwconv2`` (``(gamma * W) h + gamma * b``): a [C, 4C] product per call
instead of a pass over every activation.
"""
from mindspore import Parameter, nn, ops
from mindspore.common import initializer as init

from .cnn import CNNStageMixin, cnn_options, head_dropout
from .base import check_in_channels
from .layers import GELU, drop_path, drop_path_rates
from .registry import register_model

LN_EPS = 1e-6


def _conv(c_in, c_out, kernel, stride=1, group=1):
    # timm's init: trunc-normal(0.02) weights, zero bias; 'same' padding as mindcv (exact for the stem
    # and down-sampling convs whenever the size divides, and the depthwise 7x7's padding of 3)
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, group=group, has_bias=True, pad_mode="same",
                     weight_init=init.TruncatedNormal(0.02), bias_init="zeros")


def _dense(c_in, c_out):
    return nn.Dense(c_in, c_out, weight_init=init.TruncatedNormal(0.02), bias_init="zeros")


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over C of a ``[B, C, H, W]`` map (mindcv's ``ConvNextLayerNorm`` with ``norm_axis=1``)."""

    def __init__(self, channels):
        super().__init__((channels,), epsilon=LN_EPS)

    def construct(self, x):
        y, _, _ = self.layer_norm(x.transpose(0, 2, 3, 1), self.gamma, self.beta)
        return y.transpose(0, 3, 1, 2)


class ConvNeXtBlock(nn.Cell):
    """x + gamma * pwconv2(GELU(pwconv1(LayerNorm(dwconv(x))))) on ``[B, C, H, W]``."""

    def __init__(self, dim, drop_path_rate=0.0, layer_scale_init_value=1e-6):
        super().__init__()
        self.dwconv = _conv(dim, dim, 7, group=dim)
        self.norm = nn.LayerNorm((dim,), epsilon=LN_EPS)
        self.pwconv1 = _dense(dim, 4 * dim)
        self.act = GELU()
        self.pwconv2 = _dense(4 * dim, dim)
        self.gamma_ = Parameter(init.initializer(init.Constant(layer_scale_init_value), (dim,)), name="gamma_")
        self.drop_path = drop_path(drop_path_rate)

    def construct(self, x):
        y = self.act(self.pwconv1(self.norm(self.dwconv(x).transpose(0, 2, 3, 1))))
        # layer scale folded into the last projection: the same function, one pass over y fewer
        y = ops.dense(y, self.pwconv2.weight * self.gamma_.reshape(-1, 1), self.pwconv2.bias * self.gamma_)
        return x + self.drop_path(y.transpose(0, 3, 1, 2))


class ConvNeXtStages(CNNStageMixin):
    """ConvNeXt classifier; stages are the outputs of the 4 block stages, pooled is norm(mean(stage 4))."""

    def __init__(self, depths, dims, num_classes=1000, image_size=224, drop_rate=0.0, drop_path_rate=0.0,
                 in_channels=3, layer_scale_init_value=1e-6):
        super().__init__()
        rates = drop_path_rates(drop_path_rate, sum(depths))
        layers, first = [], 0
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            if i == 0:
                layers.append(nn.SequentialCell([_conv(check_in_channels(in_channels), dim, 4, stride=4),
                                                 ChannelsFirstLayerNorm(dim)]))
            else:
                layers.append(nn.SequentialCell([ChannelsFirstLayerNorm(dims[i - 1]),
                                                 _conv(dims[i - 1], dim, 2, stride=2)]))
            layers.append(nn.SequentialCell([ConvNeXtBlock(dim, rate, layer_scale_init_value)
                                             for rate in rates[first:first + depth]]))
            first += depth
        self.feature = nn.SequentialCell(layers)
        self.norm = nn.LayerNorm((dims[-1],), epsilon=LN_EPS)
        self.head_drop = head_dropout(drop_rate)
        self.classifier = _dense(dims[-1], num_classes)
        self._set_contract(num_classes, image_size, dims[-1], in_channels)

    def _stage_cells(self):
        # ``feature`` alternates down-sampling layer (stem first) and block stage.
        return [[self.feature[2 * i], self.feature[2 * i + 1]] for i in range(4)]

    def construct(self, x):
        return self.classifier(self.head_drop(self.norm(self.feature(x).mean([-2, -1]))))

    def forward_with_stages(self, x):
        stages = ()
        index = 0
        for cell in self.feature:
            x = cell(x)
            if index % 2 == 1:
                stages = stages + (x,)
            index += 1
        pooled = self.norm(x.mean([-2, -1]))
        logits = self.classifier(self.head_drop(pooled))
        return logits, stages, pooled


@register_model
def convnext_tiny(num_classes=1000, image_size=224, **kwargs):
    kwargs = cnn_options("convnext_tiny", kwargs, drop_path=True)
    return ConvNeXtStages([3, 3, 9, 3], [96, 192, 384, 768], num_classes=num_classes, image_size=image_size,
                          **kwargs)
