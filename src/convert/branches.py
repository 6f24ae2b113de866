"""The distillers' trainable parts outside the student: OFA exit branches and the RSD projector.

They are built from the method (docs/method.md, "Exit branches"), so a PyTorch twin written with the
same module names (``branches.N.features.K.op.M`` for a CNN student's SepConv stack, ``branches.N.merge``,
``prefix_proj``, ``blocks.K`` (timm's ``Block``) and ``head`` for a token student, ``branches.0.net.K`` for
the RSD projector) maps one to one: only the normalisation leaves change (BatchNorm / LayerNorm
``weight / bias / running_*`` -> ``gamma / beta / moving_*``, ``rules.mindspore_leaf``), and
``num_batches_tracked`` is dropped. Used by ``python -m benchmarks equivalence`` to start our branches
from the twin's initial weights.
"""
from .rules import Layout

BRANCHES = Layout(source="OFA exit branches / RSD projector (module names of docs/method.md)", head=())
