"""timm MLP-Mixer / ResMLP checkpoints -> our ``MlpMixer`` (mixer_b16, resmlp_12, resmlp_p4_pico).

Our model keeps timm's names (``stem.proj``, ``blocks.N.mlp_tokens`` / ``linear_tokens``,
``mlp_channels``, ``ls1`` / ``ls2``, Affine ``alpha`` / ``beta``; see ``src/models/mlp.py``); only
LayerNorm ``weight / bias`` become ``gamma / beta``.

The original Facebook ResMLP release names things differently; as timm's own filter does, we accept it:

==========================  ==========================
Facebook ResMLP             ours
==========================  ==========================
``patch_embed.proj``        ``stem.proj``
``blocks.N.attn``           ``blocks.N.linear_tokens``
``blocks.N.mlp.fc1 / fc2``  ``blocks.N.mlp_channels.fc1 / fc2``
``blocks.N.gamma_1 / _2``   ``blocks.N.ls1 / ls2``
``*.alpha / *.beta [dim]``  ``*.alpha / *.beta [1, 1, dim]``
==========================  ==========================
"""
from .rules import Layout

HEAD = ("head.weight", "head.bias")

MIXER = Layout(source="timm MlpMixer", head=HEAD)

RESMLP_FACEBOOK = Layout(
    source="Facebook ResMLP release",
    head=HEAD,
    marker="patch_embed.proj.weight",
    renames=(
        (r"^patch_embed\.", "stem."),
        (r"\.attn\.", ".linear_tokens."),
        (r"\.mlp\.", ".mlp_channels."),
        (r"\.gamma_(\d)$", r".ls\1"),
    ),
    reshape=(r"\.(alpha|beta)$",),
)

LAYOUTS = {
    "mixer_b16": (MIXER,),
    "resmlp_12": (MIXER, RESMLP_FACEBOOK),
    "resmlp_p4_pico": (MIXER, RESMLP_FACEBOOK),
}
