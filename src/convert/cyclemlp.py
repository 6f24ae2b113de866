"""CycleMLP authors' checkpoints (``cycle_mlp.py`` layout) -> our ``CycleNet`` (cyclemlp_b1 .. b5).

Our model keeps the authors' names (``patch_embed.proj``, ``network.S.N...``, ``norm``, ``head``; see
``src/models/cyclemlp.py``): LayerNorm ``weight / bias`` become ``gamma / beta`` and the fixed
``sfc_h.offset`` / ``sfc_w.offset`` buffers of every CycleFC are dropped (our CycleFC builds its shifts
from the channel count).
"""
from .rules import Layout

CYCLEMLP = Layout(source="CycleMLP authors' CycleNet", head=("head.weight", "head.bias"),
                  skips=(r"\.sfc_[hw]\.offset$",))

LAYOUTS = {f"cyclemlp_b{i}": (CYCLEMLP,) for i in range(1, 6)}
