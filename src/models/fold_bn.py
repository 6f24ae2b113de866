"""Inference form of a frozen network: every BatchNorm folded into the convolution or dense layer before it.

In eval mode a BatchNorm is a fixed affine map per channel, ``y = s * (x - mean) + beta`` with
``s = gamma / sqrt(var + eps)``; after a convolution ``x = W * h + b`` it is the same convolution with

    W' = s[:, None, None, None] * W        b' = s * (b - mean) + beta       (b = 0 without a bias)

(``W'`` rows scaled for a dense layer). ``fold_batchnorm(net)`` replaces, in place, each such conv (or dense)
layer by a biased one holding ``W'`` and ``b'``, and the BatchNorm by an identity: one pass over the
activations fewer per BatchNorm, no BatchNorm kernel (which MindSpore runs with its moving statistics as
writable state, so it also orders the graph around state updates), and nothing left to train or update.
The products are computed in float64 and stored in float32: the folded network equals the unfolded one
within float32 rounding (``tests/test_fold_bn.py`` checks every CNN of the registry that has BatchNorm).

Which pairs fold: a BatchNorm (``nn.BatchNorm2d`` / ``nn.BatchNorm1d``) defined in its parent cell right
after an ``nn.Conv2d`` / ``nn.Dense`` sibling whose output width it normalises. That is how every BatchNorm
of the registry's CNNs is written (mindcv's ResNet blocks and shortcuts, MobileNetV2, MobileNetV1), and
each of them is called right after that layer. A BatchNorm elsewhere stays as it is (in eval mode) and is
counted in the returned ``FoldReport``. Models without BatchNorm (ConvNeXt's LayerNorms normalise per
position with statistics of the input itself, which no weight can absorb; the token models) are left
unchanged.

The folded network is for inference only: its parameters do not require gradients, and its parameter
names are those of the layers they replace (``<conv>.weight``, ``<conv>.bias``), so nothing new appears
under another name. Checkpoints keep being written from, and loaded into, the unfolded network.
"""
from dataclasses import dataclass

import numpy as np

from mindspore import Tensor, nn


@dataclass(frozen=True)
class FoldReport:
    """What ``fold_batchnorm`` did: BatchNorms folded, and BatchNorms left (no conv / dense before them)."""

    folded: int
    left: tuple  # names of the BatchNorm cells left unfolded

    def describe(self):
        text = f"{self.folded} BatchNorm layer(s) folded into the layer before"
        if self.left:
            more = ", ..." if len(self.left) > 3 else ""
            text += f"; {len(self.left)} left as eval-mode BatchNorm ({', '.join(self.left[:3])}{more})"
        return text


def batchnorm_affine(bn):
    """``(scale, shift)`` in float64 such that eval-mode ``bn(x) = scale * x + shift`` per channel."""
    var = bn.moving_variance.asnumpy().astype(np.float64)
    scale = bn.gamma.asnumpy().astype(np.float64) / np.sqrt(var + float(bn.eps))
    shift = bn.beta.asnumpy().astype(np.float64) - scale * bn.moving_mean.asnumpy().astype(np.float64)
    return scale, shift


def _folded_params(layer, bn):
    """``(W', b')`` as float32 arrays: ``layer`` followed by eval-mode ``bn`` as one affine layer."""
    scale, shift = batchnorm_affine(bn)
    weight = layer.weight.asnumpy().astype(np.float64)
    bias = layer.bias.asnumpy().astype(np.float64) if layer.has_bias else np.zeros(weight.shape[0])
    weight = weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    return weight.astype(np.float32), (scale * bias + shift).astype(np.float32)


def _folded_layer(layer, bn):
    """A new biased ``nn.Conv2d`` / ``nn.Dense`` computing ``bn(layer(x))``, with the same geometry."""
    weight, bias = _folded_params(layer, bn)
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, stride=layer.stride,
                         pad_mode=layer.pad_mode, padding=layer.padding, dilation=layer.dilation, group=layer.group,
                         has_bias=True, weight_init=Tensor(weight), bias_init=Tensor(bias),
                         data_format=layer.data_format)
    return nn.Dense(layer.in_channels, layer.out_channels, weight_init=Tensor(weight), bias_init=Tensor(bias),
                    has_bias=True)


def _is_pair(layer, bn):
    if isinstance(bn, nn.BatchNorm2d):
        return isinstance(layer, nn.Conv2d) and layer.data_format == "NCHW" and layer.out_channels == bn.num_features
    if isinstance(bn, nn.BatchNorm1d):
        # a Dense with its own activation is not affine: its output cannot take the BatchNorm
        return isinstance(layer, nn.Dense) and not layer.activation_flag and layer.out_channels == bn.num_features
    return False


def _replace_child(parent, key, cell):
    """Put ``cell`` where ``parent``'s child ``key`` was (SequentialCell / CellList keep their call list)."""
    if isinstance(parent, (nn.SequentialCell, nn.CellList)):
        index = list(parent._cells.keys()).index(key)  # noqa: SLF001  (their children live only here)
        parent[index] = cell
    else:
        setattr(parent, key, cell)


def fold_batchnorm(net):
    """Fold every BatchNorm of ``net`` that follows a conv / dense layer into it, in place; a ``FoldReport``.

    ``net`` should hold its trained weights (fold after loading a checkpoint); it is put in eval mode and
    its parameters stop requiring gradients. Calling it again folds nothing more.
    """
    net.set_train(False)
    folded, left = 0, []
    for _, parent in list(net.cells_and_names()):
        children = list(parent.name_cells().items())
        for (layer_key, layer), (bn_key, bn) in zip(children, children[1:]):
            if not _is_pair(layer, bn):
                continue
            weight_name, bias_name = layer.weight.name, layer.weight.name[:-len("weight")] + "bias"
            new = _folded_layer(layer, bn)
            _replace_child(parent, layer_key, new)
            _replace_child(parent, bn_key, nn.Identity())
            # the replaced layer's names (inserting renames them relative to the parent)
            new.weight.name, new.bias.name = weight_name, bias_name
            folded += 1
    for path, cell in net.cells_and_names():
        if isinstance(cell, (nn.BatchNorm1d, nn.BatchNorm2d)):
            left.append(path)
    for param in net.get_parameters():
        param.requires_grad = False
    net.set_train(False)
    return FoldReport(folded, tuple(left))
