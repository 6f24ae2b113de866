"""MobileNetV1 as the OFA-KD authors define it: the student of the paper's ImageNet "MobileNetV2" rows.

The authors' code trains its own MobileNetV1 (inherited from earlier logit-distillation work) wherever the
ImageNet tables say MobileNetV2; on CIFAR-100 the student is timm's ``mobilenetv2_100`` (see
docs/paper_setups.md). Layout, as theirs: ``model.0`` = 3x3 stride-2 conv (32 channels) + BN + ReLU,
``model.1..13`` = depthwise-separable blocks (dw 3x3 + BN + ReLU, pw 1x1 + BN + ReLU), global average pool,
``fc``. Parameter names equal the authors' (``model.N.M``, ``fc``) up to MindSpore's BatchNorm leaves.

Stage features are the outputs of blocks 3, 5, 11 and 13 *before their last ReLU*, as the authors take
them: (128, 56, 56), (256, 28, 28), (512, 14, 14), (1024, 7, 7) at 224 px; pooled width 1024.
"""
from mindspore import nn

from .cnn import CNNStageMixin, cnn_options, head_dropout
from .registry import register_model

STEM_WIDTH = 32
# Output width and stride of the 13 depthwise-separable blocks (model.1 .. model.13).
BLOCK_WIDTHS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
BLOCK_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
STAGE_ENDS = (3, 5, 11, 13)  # indices into ``model`` whose pre-activation outputs are stages 1..4


class ConvBlock(nn.SequentialCell):
    """conv -> BN -> ReLU [-> conv -> BN -> ReLU], numbered like the authors' ``nn.Sequential``."""

    def pre_activation(self, x):
        """The block's output before its last ReLU (where stage features are read)."""
        for cell in self.cell_list[:-1]:
            x = cell(x)
        return x

    def construct(self, x):
        return self.cell_list[-1](self.pre_activation(x))


def _conv(c_in, c_out, kernel, stride=1, groups=1):
    # Weight init left at MindSpore's default, HeUniform(sqrt(5)): PyTorch's default, which the authors' model keeps.
    return nn.Conv2d(c_in, c_out, kernel, stride=stride, pad_mode="pad", padding=kernel // 2, group=groups,
                     has_bias=False)


def _bn(channels):
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


def stem(c_in, c_out, stride):
    return ConvBlock([_conv(c_in, c_out, 3, stride), _bn(c_out), nn.ReLU()])


def depthwise_separable(c_in, c_out, stride):
    return ConvBlock([_conv(c_in, c_in, 3, stride, groups=c_in), _bn(c_in), nn.ReLU(),
                      _conv(c_in, c_out, 1), _bn(c_out), nn.ReLU()])


class MobileNetV1(CNNStageMixin):
    """MobileNetV1 (width 1.0) with the stage-feature contract of ``base.StageModel``.

    Unlike the authors' factory it honours ``num_classes``, and pools globally instead of with a fixed
    7x7 window (the same at 224 px, and any input size works).
    """

    def __init__(self, num_classes=1000, image_size=224, in_channels=3, drop_rate=0.0):
        super().__init__()
        blocks = [stem(int(in_channels), STEM_WIDTH, 2)]
        width = STEM_WIDTH
        for out, stride in zip(BLOCK_WIDTHS, BLOCK_STRIDES):
            blocks.append(depthwise_separable(width, out, stride))
            width = out
        self.model = nn.SequentialCell(blocks)
        self.stage_ends = STAGE_ENDS
        self.relu = nn.ReLU()
        self.head_drop = head_dropout(drop_rate)
        self.fc = nn.Dense(width, int(num_classes))
        self._set_contract(num_classes, image_size, width, in_channels)

    def _stage_cells(self):
        cells = list(self.model)
        starts = (0,) + tuple(end + 1 for end in STAGE_ENDS[:-1])
        return [cells[start:end + 1] for start, end in zip(starts, STAGE_ENDS)]

    def forward_with_stages(self, x):
        stages = ()
        index = 0
        for block in self.model:
            if index in self.stage_ends:
                feat = block.pre_activation(x)
                stages = stages + (feat,)
                x = self.relu(feat)
            else:
                x = block(x)
            index += 1
        pooled = x.mean(axis=(2, 3))
        logits = self.fc(self.head_drop(pooled))
        return logits, stages, pooled

    def construct(self, x):
        pooled = self.model(x).mean(axis=(2, 3))
        return self.fc(self.head_drop(pooled))


@register_model
def mobilenetv1(num_classes=1000, image_size=224, **kwargs):
    """The OFA-KD authors' MobileNetV1 (4,231,976 parameters at 1000 classes)."""
    kwargs = cnn_options("mobilenetv1", kwargs)
    return MobileNetV1(num_classes=num_classes, image_size=image_size, **kwargs)
