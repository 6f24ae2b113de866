"""timm / torchvision CNN checkpoints -> our mindcv-based ResNet, MobileNetV2 and ConvNeXt, and the
OFA-KD authors' MobileNetV1.

==========================================  ==========================================
timm name                                   ours (mindcv layout)
==========================================  ==========================================
ResNet (timm ``resnet18/34/50`` and our resnet10, also torchvision's layout)
``layerN.M.downsample.0 / .1``               ``layerN.M.down_sample.0 / .1``
``fc``                                       ``classifier``
(conv1, bn1, layerN.M.convK / bnK)           same names
MobileNetV2 (timm ``mobilenetv2_100``)
``conv_stem`` / ``bn1``                      ``features.0`` / ``features.1``
``blocks.0.0.conv_dw / bn1 / conv_pw / bn2``  ``features.3.layers.0 / 1 / 3 / 4``
``blocks.S.B.conv_pw / bn1 / conv_dw / bn2 / conv_pwl / bn3``  ``features.K.layers.0/1/3/4/6/7``
                                             (K = 3 + number of blocks before S.B)
``conv_head`` / ``bn2``                      ``features.20`` / ``features.21``
``classifier``                               ``classifier.1``
ConvNeXt (timm ``convnext_tiny``)
``stem.0`` / ``stem.1``                      ``feature.0.0`` / ``feature.0.1``
``stages.N.downsample.0 / .1``               ``feature.{2N}.0 / .1``
``stages.N.blocks.M.conv_dw / norm``         ``feature.{2N+1}.M.dwconv / norm``
``stages.N.blocks.M.mlp.fc1 / fc2``          ``feature.{2N+1}.M.pwconv1 / pwconv2``
``stages.N.blocks.M.gamma``                  ``feature.{2N+1}.M.gamma_``
``head.norm`` / ``head.fc``                  ``norm`` / ``classifier``
MobileNetV1 (the OFA-KD authors' ``custom_model/mobilenetv1.py``)
``model.N.M`` / ``fc``                       same names (``model.14``, their 7x7 pool, has no tensors)
==========================================  ==========================================

BatchNorm ``weight / bias / running_mean / running_var`` and LayerNorm ``weight / bias`` become
``gamma / beta / moving_mean / moving_variance`` (``rules.mindspore_leaf``); ``num_batches_tracked``
is dropped. The original Facebook ConvNeXt release (``downsample_layers.N``, ``stages.N.M``, ``head``)
is accepted too.
"""
from .rules import Layout

RESNET = Layout(
    source="timm / torchvision ResNet",
    head=("classifier.weight", "classifier.bias"),
    renames=((r"\.downsample\.", ".down_sample."), (r"^fc\.", "classifier.")),
)

# Blocks per stage of timm's mobilenetv2_100; mindcv's ``features`` holds them flat after the stem
# (conv, BN, ReLU6 at features.0-2).
MOBILENETV2_STAGE_DEPTHS = (1, 2, 3, 4, 3, 3, 1)
_MBV2_FIRST_BLOCK = 3
_MBV2_HEAD_CONV = _MBV2_FIRST_BLOCK + sum(MOBILENETV2_STAGE_DEPTHS)
# Position of each timm sub-layer inside mindcv's InvertedResidual ``layers`` (ReLU6 cells in between).
_MBV2_DEPTHWISE_FIRST = {"conv_dw": 0, "bn1": 1, "conv_pw": 3, "bn2": 4}  # stage 0: no expansion
_MBV2_INVERTED = {"conv_pw": 0, "bn1": 1, "conv_dw": 3, "bn2": 4, "conv_pwl": 6, "bn3": 7}


def _mbv2_block(match):
    stage, block, layer = int(match[1]), int(match[2]), match[3]
    index = _MBV2_FIRST_BLOCK + sum(MOBILENETV2_STAGE_DEPTHS[:stage]) + block
    slots = _MBV2_DEPTHWISE_FIRST if stage == 0 else _MBV2_INVERTED
    return f"features.{index}.layers.{slots.get(layer, layer)}."


MOBILENETV2 = Layout(
    source="timm mobilenetv2_100",
    head=("classifier.1.weight", "classifier.1.bias"),
    renames=(
        (r"^blocks\.(\d+)\.(\d+)\.(\w+)\.", _mbv2_block),
        (r"^conv_stem\.", "features.0."),
        (r"^bn1\.", "features.1."),
        (r"^conv_head\.", f"features.{_MBV2_HEAD_CONV}."),
        (r"^bn2\.", f"features.{_MBV2_HEAD_CONV + 1}."),
        (r"^classifier\.", "classifier.1."),
    ),
)

_CONVNEXT_BLOCK_RENAMES = (
    (r"\.conv_dw\.", ".dwconv."),
    (r"\.mlp\.fc1\.", ".pwconv1."),
    (r"\.mlp\.fc2\.", ".pwconv2."),
    (r"\.gamma$", ".gamma_"),
)

CONVNEXT = Layout(
    source="timm convnext_tiny",
    head=("classifier.weight", "classifier.bias"),
    renames=(
        (r"^stem\.", "feature.0."),
        (r"^stages\.(\d+)\.downsample\.", lambda m: f"feature.{2 * int(m[1])}."),
        (r"^stages\.(\d+)\.blocks\.", lambda m: f"feature.{2 * int(m[1]) + 1}."),
        (r"^head\.norm\.", "norm."),
        (r"^head\.fc\.", "classifier."),
    ) + _CONVNEXT_BLOCK_RENAMES,
)

CONVNEXT_FACEBOOK = Layout(
    source="Facebook ConvNeXt release",
    head=("classifier.weight", "classifier.bias"),
    marker="downsample_layers.0.0.weight",
    renames=(
        (r"^downsample_layers\.(\d+)\.", lambda m: f"feature.{2 * int(m[1])}."),
        (r"^stages\.(\d+)\.", lambda m: f"feature.{2 * int(m[1]) + 1}."),
        (r"^head\.", "classifier."),
    ) + _CONVNEXT_BLOCK_RENAMES,
)

MOBILENETV1 = Layout(
    source="OFA-KD authors' mobilenetv1",
    head=("fc.weight", "fc.bias"),
)

LAYOUTS = {
    "resnet10": (RESNET,),
    "resnet18": (RESNET,),
    "resnet34": (RESNET,),
    "resnet50": (RESNET,),
    "mobilenetv2_100": (MOBILENETV2,),
    "mobilenetv1": (MOBILENETV1,),
    "convnext_tiny": (CONVNEXT, CONVNEXT_FACEBOOK),
}
