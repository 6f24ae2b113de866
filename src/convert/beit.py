"""timm BEiT v2 checkpoints -> our ``Beit`` (beitv2_base, beitv2_large).

Our model keeps timm's names (see ``src/models/beit.py``): LayerNorm ``weight / bias`` become
``gamma / beta`` and each block's ``attn.relative_position_index`` buffer is dropped (our model
builds it from its image size). timm keeps ``k_bias`` out of the state dict, so there is none to drop.
"""
from .rules import Layout

BEIT = Layout(source="timm Beit", head=("head.weight", "head.bias"),
              skips=(r"\.relative_position_index$",))

LAYOUTS = {"beitv2_base": (BEIT,), "beitv2_large": (BEIT,)}
