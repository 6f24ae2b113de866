"""CNN students and teachers: ResNet-18/34/50 and MobileNetV2-1.0 (ConvNeXt-T is in ``convnext.py``).

Each model subclasses mindcv 0.3.0's class, so parameter names (and so checkpoints) stay mindcv's;
what is added is the stage-feature contract of ``base.StageModel``, the input channels, and timm's
stem max-pool on ResNet.
"""
from mindspore import nn, ops
from mindcv.models.mobilenetv2 import MobileNetV2
from mindcv.models import resnet as mindcv_resnet
from mindcv.models.resnet import ResNet

from .base import StageModel, check_in_channels, conv_out, same_out
from .registry import register_model

# Subtrees that run beside the main path (residual shortcuts): they never change the map size.
_SHORTCUT_NAMES = ("down_sample",)


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _image_hw(image_size):
    """(H, W) from an int or an (H, W) pair; ValueError for anything else."""
    hw = _pair(image_size)
    if len(hw) != 2 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in hw):
        raise ValueError(f"image_size must be a positive int or an (H, W) pair of them, got {image_size!r}")
    return hw


def _layer_out(layer, hw):
    """(H, W) after one convolution / pooling layer, from its own kernel, stride, padding and pad_mode."""
    kernel, stride = _pair(layer.kernel_size), _pair(layer.stride)
    dilation = _pair(getattr(layer, "dilation", 1))
    mode = str(layer.pad_mode).lower()
    if mode == "same":
        return tuple(same_out(n, s) for n, s in zip(hw, stride))
    if mode == "valid":
        return tuple(conv_out(n, k, s, 0, d) for n, k, s, d in zip(hw, kernel, stride, dilation))
    if mode == "pad" and isinstance(layer, nn.Conv2d):
        padding = layer.padding
        # MindSpore pads either one int on all sides or (top, bottom, left, right).
        pads = (padding * 2, padding * 2) if isinstance(padding, int) else (
            padding[0] + padding[1], padding[2] + padding[3])
        return tuple(conv_out(n + p, k, s, 0, d) for n, p, k, s, d in zip(hw, pads, kernel, stride, dilation))
    if mode == "pad":
        # Pooling in pad mode keeps one symmetric padding per axis, (depth, H, W) for MaxPool2d.
        padding = layer.padding
        pads = (padding, padding) if isinstance(padding, int) else tuple(padding[-2:])
        return tuple(conv_out(n, k, s, p) for n, k, s, p in zip(hw, kernel, stride, pads))
    if isinstance(layer, StemMaxPool):
        return tuple(conv_out(n, k, s, layer.padding) for n, k, s in zip(hw, kernel, stride))
    raise ValueError(f"cannot size {type(layer).__name__} with pad_mode '{layer.pad_mode}'; "
                     "allowed: Conv2d with same/valid/pad, pooling with same/valid")


def _walk_main_path(cells, hw, channels):
    """Push (H, W) and the channel count through the convs / pools of ``cells``, in definition order."""
    for cell in cells:
        for name, layer in cell.cells_and_names():
            if any(part in _SHORTCUT_NAMES for part in name.split(".")):
                continue
            if isinstance(layer, nn.Conv2d):
                hw = _layer_out(layer, hw)
                channels = layer.out_channels
            elif isinstance(layer, (nn.MaxPool2d, nn.AvgPool2d, StemMaxPool)):
                hw = _layer_out(layer, hw)
    return hw, channels


def _layer_stride(cell):
    """Total down-sampling factor of one cell's main path (product of its conv / pool strides)."""
    factor = 1
    for name, layer in cell.cells_and_names():
        if any(part in _SHORTCUT_NAMES for part in name.split(".")):
            continue
        if isinstance(layer, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, StemMaxPool)):
            factor *= _pair(layer.stride)[0]
    return factor


def head_dropout(drop_rate):
    """Dropout in front of the classifier; ValueError outside [0, 1)."""
    rate = float(drop_rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate!r}")
    return nn.Dropout(p=rate) if rate > 0 else nn.Identity()


def cnn_options(name, kwargs, drop_path=False):
    """Checked builder options; ValueError for unknown ones or stochastic depth where there is none."""
    allowed = ("drop_rate", "drop_path_rate", "in_channels")
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"{name} got unknown option(s) {unknown}; allowed: {', '.join(allowed)}")
    options = dict(kwargs)
    if not drop_path:
        # mindcv's ResNet / MobileNetV2 blocks have no stochastic depth to switch on.
        rate = options.pop("drop_path_rate", 0.0)
        if float(rate) != 0.0:
            raise ValueError(f"{name} has no stochastic depth: drop_path_rate must be 0, got {rate!r}")
    return options


class StemMaxPool(nn.Cell):
    """timm's / torchvision's ResNet stem pool: max over 3x3 windows, stride 2, padded by 1 on every side.

    mindcv pads 'same' (bottom / right only), which shifts every window by a pixel. ``nn.MaxPool2d`` in
    'pad' mode gets the windows right but runs MaxPool3DWithArgmax, several times slower on CPU; the
    plain 3-D max-pool kernel with the same explicit padding gives the same numbers at mindcv's speed.
    """

    kernel_size = 3
    stride = 2
    padding = 1
    pad_mode = "explicit"

    def __init__(self):
        super().__init__()
        self.pool = ops.MaxPool3D(kernel_size=(1, 3, 3), strides=(1, 2, 2), pad_mode="pad",
                                  pad_list=(0, 0, 1, 1, 1, 1))

    def construct(self, x):
        return self.pool(x.unsqueeze(2)).squeeze(2)


class BasicBlock(mindcv_resnet.BasicBlock):
    """mindcv's basic block with the residual added out of place.

    mindcv writes ``out += identity``; in GRAPH_MODE an in-place add on a tensor compiles to an Add and an
    Assign that copies the sum back into ``out``: one more pass over the block's output in every forward
    (the Assign kernels of an eval forward, 9 % of ResNet-50's kernel time when measured). Same parameters,
    same numbers.
    """

    def construct(self, x):
        identity = x
        if self.down_sample is not None:
            identity = self.down_sample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(mindcv_resnet.Bottleneck):
    """mindcv's bottleneck block with the residual added out of place (see ``BasicBlock``)."""

    def construct(self, x):
        identity = x
        if self.down_sample is not None:
            identity = self.down_sample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class CNNStageMixin(StageModel):
    """Stage-shape bookkeeping shared by the CNNs: subclasses list the cells of each stage."""

    family = "cnn"
    stage_kind = "conv"
    num_prefix_tokens = 0

    def _set_contract(self, num_classes, image_size, feature_dim, in_channels=3):
        _image_hw(image_size)
        self.in_channels = check_in_channels(in_channels)
        self.num_classes = int(num_classes)
        self.image_size = image_size
        self.feature_dim = int(feature_dim)

    def _stage_cells(self):
        """Four lists of cells whose main paths, run in turn, produce stage 1..4 (stem goes in stage 1)."""
        raise NotImplementedError

    def stage_shapes(self, image_size=None):
        hw = _image_hw(self.image_size if image_size is None else image_size)
        channels = None
        shapes = []
        for cells in self._stage_cells():
            hw, channels = _walk_main_path(cells, hw, channels)
            shapes.append((channels,) + tuple(hw))
        return shapes


class ResNetStages(ResNet, CNNStageMixin):
    """mindcv ResNet; stages are layer1..layer4, pooled is the global average of layer4."""

    def __init__(self, block, layers, num_classes=1000, image_size=224, drop_rate=0.0, in_channels=3):
        super().__init__(block=block, layers=layers, num_classes=num_classes,
                         in_channels=check_in_channels(in_channels))
        # timm / torchvision pad the stem max-pool by 1 on every side; mindcv's 'same' pads bottom/right
        # only, which shifts every pooling window by a pixel (logits off by ~2e-2 with timm's weights).
        self.max_pool = StemMaxPool()
        self.head_drop = head_dropout(drop_rate)
        self._set_contract(num_classes, image_size, self.num_features, in_channels)

    def _stage_cells(self):
        return [[self.conv1, self.max_pool, self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def forward_head(self, x):
        return self.classifier(self.head_drop(self.pool(x)))

    def forward_with_stages(self, x):
        x = self.max_pool(self.relu(self.bn1(self.conv1(x))))
        s1 = self.layer1(x)
        s2 = self.layer2(s1)
        s3 = self.layer3(s2)
        s4 = self.layer4(s3)
        pooled = self.pool(s4)
        logits = self.classifier(self.head_drop(pooled))
        return logits, (s1, s2, s3, s4), pooled


class MobileNetV2Stages(MobileNetV2, CNNStageMixin):
    """mindcv MobileNetV2; stages end at the last block of stride 4, 8, 16 and at the 1x1 conv head."""

    def __init__(self, num_classes=1000, image_size=224, drop_rate=0.0, alpha=1.0, in_channels=3):
        super().__init__(alpha=alpha, num_classes=num_classes, in_channels=check_in_channels(in_channels))
        # mindcv hard-codes Dropout(0.2) here; the reference (timm) default is no dropout.
        self.classifier[0] = head_dropout(drop_rate)
        self.stage_ends = self._find_stage_ends()
        self._set_contract(num_classes, image_size, self.classifier[1].in_channels, in_channels)

    def _find_stage_ends(self):
        """Indices into ``features`` where stages 1..4 end, from the layers' own strides."""
        ends = {}
        reduction = 1
        for index, cell in enumerate(self.features):
            reduction *= _layer_stride(cell)
            ends[reduction] = index
        missing = [r for r in (4, 8, 16) if r not in ends]
        if missing:
            raise ValueError(f"MobileNetV2 features never reach stride {missing}; cannot place stages")
        return (ends[4], ends[8], ends[16], len(self.features) - 1)

    def _stage_cells(self):
        cells = list(self.features)
        starts = (0,) + tuple(end + 1 for end in self.stage_ends[:3])
        return [cells[start:end + 1] for start, end in zip(starts, self.stage_ends)]

    def forward_with_stages(self, x):
        stages = ()
        index = 0
        for cell in self.features:
            x = cell(x)
            if index in self.stage_ends:
                stages = stages + (x,)
            index += 1
        pooled = self.pool(x)
        logits = self.classifier(pooled)
        return logits, stages, pooled


def resnet(name, block, layers, num_classes, image_size, options):
    """A registered ResNet: mindcv's ``block`` repeated ``layers`` times per stage, with checked ``options``."""
    return ResNetStages(block, layers, num_classes=num_classes, image_size=image_size, **cnn_options(name, options))


@register_model
def resnet18(num_classes=1000, image_size=224, **kwargs):
    return resnet("resnet18", BasicBlock, [2, 2, 2, 2], num_classes, image_size, kwargs)


@register_model
def resnet34(num_classes=1000, image_size=224, **kwargs):
    return resnet("resnet34", BasicBlock, [3, 4, 6, 3], num_classes, image_size, kwargs)


@register_model
def resnet50(num_classes=1000, image_size=224, **kwargs):
    return resnet("resnet50", Bottleneck, [3, 4, 6, 3], num_classes, image_size, kwargs)


@register_model
def mobilenetv2_100(num_classes=1000, image_size=224, **kwargs):
    kwargs = cnn_options("mobilenetv2_100", kwargs)
    return MobileNetV2Stages(num_classes=num_classes, image_size=image_size, alpha=1.0, **kwargs)
