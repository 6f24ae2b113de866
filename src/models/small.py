"""Small low-resolution variants (patch 4, 6 blocks) for CPU demos and the Fashion-MNIST study.

They reuse the ViT / ResMLP / ResNet classes; only the sizes differ. At 32 px a patch-4 model sees an
8x8 grid, like a 224 px patch-16 model sees 14x14. Stage features are the outputs of blocks 1, 2, 5, 6.
"""
from .cnn import BasicBlock, resnet
from .mlp import MlpMixer
from .registry import register_model
from .vit import VisionTransformer


@register_model
def vit_p4_pico(num_classes=1000, image_size=32, **kwargs):
    """ViT, patch 4, width 96, 6 blocks, 3 heads (about 0.7M parameters at 10 classes)."""
    return VisionTransformer(num_classes=num_classes, image_size=image_size, patch_size=4, embed_dim=96,
                             depth=6, num_heads=3, **kwargs)


@register_model
def vit_p4_mini(num_classes=1000, image_size=32, **kwargs):
    """ViT, patch 4, width 192, 6 blocks, 3 heads (about 2.7M parameters at 10 classes)."""
    return VisionTransformer(num_classes=num_classes, image_size=image_size, patch_size=4, embed_dim=192,
                             depth=6, num_heads=3, **kwargs)


@register_model
def resmlp_p4_pico(num_classes=1000, image_size=32, **kwargs):
    """ResMLP, patch 4, width 128, 6 blocks."""
    return MlpMixer(num_classes=num_classes, image_size=image_size, patch_size=4, embed_dim=128, depth=6,
                    block="resmlp", **kwargs)


@register_model
def resnet10(num_classes=1000, image_size=224, **kwargs):
    """ResNet with one basic block per stage (the ResNet-18 widths)."""
    return resnet("resnet10", BasicBlock, [1, 1, 1, 1], num_classes, image_size, kwargs)
