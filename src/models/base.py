"""The contract every model in the registry fulfils.

A model is an ``nn.Cell`` whose ``construct(x)`` returns logits and which also offers

* ``forward_with_stages(x) -> (logits, (s1, s2, s3, s4), pooled)`` in one forward pass;
  stage features are ``[B, C, H, W]`` for spatial models and ``[B, N, E]`` for token models
  (prefix tokens such as the ViT cls token included, in front);
* ``stage_shapes(image_size=None) -> [shape] * 4`` computed from the model's own
  hyper-parameters (``(C, H, W)`` or ``(N, E)``, batch dimension left out);
* ``feature_dim`` (width of ``pooled``), ``num_classes``, ``image_size``;
* ``stage_kind`` ("conv" for spatial maps, "token" for token sequences), ``family``
  ("cnn", "vit" or "mlp") and ``num_prefix_tokens`` (cls tokens in token stage features).
"""
from mindspore import nn

FAMILIES = ("cnn", "vit", "mlp")
STAGE_KINDS = ("conv", "token")


def conv_out(size, kernel, stride, padding=0, dilation=1):
    """Output length of a convolution / pooling with explicit padding (floor rounding)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def same_out(size, stride):
    """Output length of a 'same'-padded convolution / pooling."""
    return -(-size // stride)


class StageModel(nn.Cell):
    """Base class (or mixin, placed after an ``nn.Cell`` subclass) for registry models."""

    family = "cnn"
    stage_kind = "conv"
    num_prefix_tokens = 0

    def forward_with_stages(self, x):
        raise NotImplementedError

    def stage_shapes(self, image_size=None):
        raise NotImplementedError
