"""timm / Microsoft Swin checkpoints -> our ``SwinTransformer`` (swin_tiny, swin_nano, swin_pico).

Our model keeps timm's (>= 0.9) names, see the table in ``src/models/swin.py``: LayerNorm
``weight / bias`` become ``gamma / beta``, ``head.fc`` becomes ``head``, and the buffers
``relative_position_index`` and ``attn_mask`` are dropped (our model builds them from its image size).

Older timm (< 0.9), the Microsoft release and checkpoints trained with them (such as the OFA-KD
authors' CIFAR-100 teachers) merge patches at the END of stages 1-3 and name the classifier ``head``:
there ``layers.N.downsample`` is our ``layers.{N+1}.downsample``. Such a checkpoint is recognised by
``layers.0.downsample.reduction.weight``.
"""
from .rules import Layout

HEAD = ("head.weight", "head.bias")
BUFFERS = (r"\.relative_position_index$", r"\.attn_mask$")

SWIN = Layout(source="timm SwinTransformer", head=HEAD, skips=BUFFERS,
              renames=((r"^head\.fc\.", "head."),))

SWIN_DOWNSAMPLE_AT_END = Layout(
    source="timm < 0.9 / Microsoft SwinTransformer",
    head=HEAD,
    skips=BUFFERS,
    marker="layers.0.downsample.reduction.weight",
    renames=((r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m[1]) + 1}.downsample."),),
)

LAYOUTS = {arch: (SWIN, SWIN_DOWNSAMPLE_AT_END) for arch in ("swin_tiny", "swin_nano", "swin_pico")}
