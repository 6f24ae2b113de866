"""The contract every model in the registry fulfils.

A model is an ``nn.Cell`` whose ``construct(x)`` returns logits and which also offers

* ``forward_with_stages(x) -> (logits, (s1, s2, s3, s4), pooled)`` in one forward pass;
  stage features are ``[B, C, H, W]`` for spatial models and ``[B, N, E]`` for token models
  (prefix tokens such as the ViT cls token included, in front);
* ``stage_shapes(image_size=None) -> [shape] * 4`` computed from the model's own
  hyper-parameters (``(C, H, W)`` or ``(N, E)``, batch dimension left out);
* ``feature_dim`` (width of ``pooled``), ``num_classes``, ``image_size``, ``in_channels`` (1 or 3);
* ``stage_kind`` ("conv" for spatial maps, "token" for token sequences), ``family``
  ("cnn", "vit" or "mlp") and ``num_prefix_tokens`` (cls tokens in token stage features);
* ``adapt_checkpoint(params, source) -> params``: weights trained for 3 input channels or at another
  input size made to fit this model (RGB stem kernels summed for a grayscale model; ViT/DeiT resample
  their position embedding), or a ValueError saying why they cannot.
"""
from mindspore import nn

from .resize import fit_input_channels

FAMILIES = ("cnn", "vit", "mlp")
STAGE_KINDS = ("conv", "token")


def check_in_channels(in_channels):
    """The number of image channels as an int; ValueError unless 1 (grayscale) or 3 (RGB)."""
    if in_channels not in (1, 3) or isinstance(in_channels, bool):
        raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels!r}")
    return int(in_channels)


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

    def adapt_checkpoint(self, params, source="checkpoint"):
        """``params`` ({name: ndarray / Tensor / Parameter}) made to fit this model, or ValueError naming
        ``source`` when they cannot be: an RGB input kernel is summed over its channels for a grayscale
        model (as timm does), then ``_adapt_to_size`` fits what depends on the input size."""
        return self._adapt_to_size(fit_input_channels(self, params), source)

    def _adapt_to_size(self, params, source):
        """Entries trained at another input size, fitted to this model's. Default: unchanged (convolution
        and dense weights do not depend on the input size)."""
        return params
