"""timm ViT / DeiT checkpoints -> our ``VisionTransformer`` (deit_*, vit_*, and the small vit_p4_*).

Our model keeps timm's names (see ``src/models/vit.py``); only LayerNorm ``weight / bias`` become
``gamma / beta``, which ``rules.mindspore_leaf`` does. The facebookresearch DeiT releases use the
same names (wrapped under ``model``, which the reader unwraps).
"""
from .rules import Layout

VIT = Layout(source="timm VisionTransformer", head=("head.weight", "head.bias"))

LAYOUTS = {arch: (VIT,) for arch in ("deit_tiny", "deit_small", "vit_small", "vit_base",
                                   "vit_p4_pico", "vit_p4_mini")}
