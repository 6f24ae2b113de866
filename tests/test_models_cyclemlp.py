"""CycleMLP-B1..B5: parameter counts, stage shapes, CycleFC vs deform_conv2d, block numerics, graph mode."""
import math

import numpy as np
import pytest
from mindspore import Tensor

from helpers import np_gelu, np_layer_norm, to_torch_name
from src.models import create_model
from src.models.cyclemlp import CycleBlock, CycleFC

# From the authors' cycle_mlp.py: (layers, widths, mlp ratios), and the paper's parameter counts (M).
ARCHS = {
    "cyclemlp_b1": ((2, 2, 4, 2), (64, 128, 320, 512), (4, 4, 4, 4), 15.2),
    "cyclemlp_b2": ((2, 3, 10, 3), (64, 128, 320, 512), (4, 4, 4, 4), 26.8),
    "cyclemlp_b3": ((3, 4, 18, 3), (64, 128, 320, 512), (8, 8, 4, 4), 38.4),
    "cyclemlp_b4": ((3, 8, 27, 3), (64, 128, 320, 512), (8, 8, 4, 4), 51.8),
    "cyclemlp_b5": ((3, 4, 24, 3), (96, 192, 384, 768), (4, 4, 4, 4), 75.7),
}


def expected_param_count(layers, dims, ratios, num_classes=1000):
    """Count by hand from the authors' modules (every Linear/conv has a bias unless noted)."""
    total = 3 * 7 * 7 * dims[0] + dims[0]  # patch_embed: conv 7x7, 3 -> C0
    for i, (depth, d, ratio) in enumerate(zip(layers, dims, ratios)):
        hidden, squeeze = int(d * ratio), d // 4
        block = (2 * d                            # norm1
                 + d * d                          # mlp_c (no bias)
                 + 2 * (d * d + d)                # sfc_h, sfc_w: 1x1 weight + bias
                 + d * squeeze + squeeze          # reweight.fc1
                 + squeeze * 3 * d + 3 * d        # reweight.fc2
                 + d * d + d                      # proj
                 + 2 * d                          # norm2
                 + d * hidden + hidden + hidden * d + d)  # mlp fc1, fc2
        total += depth * block
        if i < 3:
            total += 3 * 3 * d * dims[i + 1] + dims[i + 1]  # downsample conv 3x3 stride 2
    return total + 2 * dims[-1] + dims[-1] * num_classes + num_classes  # norm, head


def authors_param_names(layers):
    """State-dict keys of the authors' CycleNet (buffers ``offset`` left out)."""
    names = ["patch_embed.proj.weight", "patch_embed.proj.bias"]
    block_keys = ["norm1.weight", "norm1.bias", "attn.mlp_c.weight", "attn.sfc_h.weight", "attn.sfc_h.bias",
                  "attn.sfc_w.weight", "attn.sfc_w.bias", "attn.reweight.fc1.weight", "attn.reweight.fc1.bias",
                  "attn.reweight.fc2.weight", "attn.reweight.fc2.bias", "attn.proj.weight", "attn.proj.bias",
                  "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
    for i, depth in enumerate(layers):
        names += [f"network.{2 * i}.{n}.{key}" for n in range(depth) for key in block_keys]
        if i < 3:
            names += [f"network.{2 * i + 1}.proj.weight", f"network.{2 * i + 1}.proj.bias"]
    return names + ["norm.weight", "norm.bias", "head.weight", "head.bias"]




def param_count(model):
    return sum(int(np.prod(p.shape)) for p in model.trainable_params())


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_param_count_names_and_224_shapes(name):
    layers, dims, ratios, paper_millions = ARCHS[name]
    model = create_model(name, num_classes=1000)
    count = param_count(model)
    assert count == expected_param_count(layers, dims, ratios)
    assert abs(count / 1e6 - paper_millions) < 0.05
    ours = [to_torch_name(p.name) for p in model.trainable_params()]
    assert ours == authors_param_names(layers)
    assert model.feature_dim == dims[-1]
    assert (model.family, model.stage_kind, model.num_prefix_tokens) == ("mlp", "conv", 0)
    assert model.stage_shapes() == [(dims[0], 56, 56), (dims[1], 28, 28), (dims[2], 14, 14), (dims[3], 7, 7)]
    # Another size: stem (s + 4 - 7) // 4 + 1, then (s + 2 - 3) // 2 + 1 per downsample.
    assert model.stage_shapes(100) == [(dims[0], 25, 25), (dims[1], 13, 13), (dims[2], 7, 7), (dims[3], 4, 4)]


def test_exact_counts():
    """The figures we report (paper: 15.2 / 26.8 / 38.4 / 51.8 / 75.7 M)."""
    counts = {name: expected_param_count(*ARCHS[name][:3]) for name in ARCHS}
    assert counts == {"cyclemlp_b1": 15_155_400, "cyclemlp_b2": 26_802_504, "cyclemlp_b3": 38_385_720,
                      "cyclemlp_b4": 51_796_552, "cyclemlp_b5": 75_747_280}


def test_stage_shapes_reject_bad_size():
    model = create_model("cyclemlp_b1", num_classes=10, image_size=32)
    with pytest.raises(ValueError, match="image_size"):
        model.stage_shapes(0)


def bilinear_zero_outside(plane, y, x):
    """torchvision's deform_conv2d bilinear sampling of one channel: zero outside the image."""
    height, width = plane.shape
    if y <= -1 or y >= height or x <= -1 or x >= width:
        return 0.0
    y0, x0 = math.floor(y), math.floor(x)
    ly, lx = y - y0, x - x0
    value = 0.0
    for yy, wy in ((y0, 1 - ly), (y0 + 1, ly)):
        for xx, wx in ((x0, 1 - lx), (x0 + 1, lx)):
            if 0 <= yy < height and 0 <= xx < width:
                value += wy * wx * plane[yy, xx]
    return value


def deform_conv2d_reference(x, offset, weight, bias):
    """NumPy deform_conv2d (stride 1, padding 0, dilation 1, one weight group), NCHW."""
    batch, channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    offset_groups = offset.shape[1] // (2 * kh * kw)
    per_group = channels // offset_groups
    out_h, out_w = height - kh + 1, width - kw + 1
    columns = np.zeros((batch, channels, kh, kw, out_h, out_w))
    for b in range(batch):
        for c in range(channels):
            g = c // per_group
            for i in range(kh):
                for j in range(kw):
                    k = g * kh * kw + i * kw + j
                    for y in range(out_h):
                        for xx in range(out_w):
                            dy, dx = offset[b, 2 * k, y, xx], offset[b, 2 * k + 1, y, xx]
                            columns[b, c, i, j, y, xx] = bilinear_zero_outside(x[b, c], y + i + dy, xx + j + dx)
    return np.einsum("ocij,bcijyx->boyx", weight, columns) + bias[None, :, None, None]


def authors_offsets(channels, kernel_size):
    """The authors' CycleFC.gen_offset, shape [1, 2C, 1, 1] as (dy, dx) pairs."""
    kh, kw = kernel_size
    offset = np.zeros((1, 2 * channels, 1, 1))
    start = (kh * kw) // 2
    for i in range(channels):
        if kh == 1:
            offset[0, 2 * i + 1] = (i + start) % kw - kw // 2
        else:
            offset[0, 2 * i] = (i + start) % kh - kh // 2
    return offset


def cyclefc_reference(x_nhwc, weight, bias, kernel_size):
    x = x_nhwc.transpose(0, 3, 1, 2).astype(np.float64)
    b, c, h, w = x.shape
    offset = np.broadcast_to(authors_offsets(c, kernel_size), (b, 2 * c, h, w))
    return deform_conv2d_reference(x, offset, weight.astype(np.float64), bias.astype(np.float64)).transpose(0, 2, 3, 1)


@pytest.mark.parametrize("kernel_size", [(1, 3), (3, 1), (1, 5), (4, 1)])
def test_cyclefc_equals_deform_conv2d(kernel_size):
    rng = np.random.default_rng(0)
    channels, out_channels = 7, 5
    layer = CycleFC(channels, out_channels, kernel_size)
    weight = rng.standard_normal((out_channels, channels, 1, 1)).astype(np.float32)
    bias = rng.standard_normal(out_channels).astype(np.float32)
    layer.weight.set_data(Tensor(weight))
    layer.bias.set_data(Tensor(bias))
    x = rng.standard_normal((2, 5, 6, channels)).astype(np.float32)
    ours = layer(Tensor(x)).asnumpy()
    np.testing.assert_allclose(ours, cyclefc_reference(x, weight, bias, kernel_size), rtol=1e-5, atol=1e-5)






def cycle_block_reference(x, p):
    """The authors' CycleBlock.forward in NumPy (channels-last), p = {torch name: array}."""
    def linear(v, name, has_bias=True):
        return v @ p[name + ".weight"].T + (p[name + ".bias"] if has_bias else 0.0)

    def mlp(v, name):
        return linear(np_gelu(linear(v, name + ".fc1")), name + ".fc2")

    b, h, w, c = x.shape
    y = np_layer_norm(x, p["norm1.weight"], p["norm1.bias"], 1e-5)
    branch_h = cyclefc_reference(y, p["attn.sfc_h.weight"], p["attn.sfc_h.bias"], (1, 3))
    branch_w = cyclefc_reference(y, p["attn.sfc_w.weight"], p["attn.sfc_w.bias"], (3, 1))
    branch_c = linear(y, "attn.mlp_c", has_bias=False)
    a = (branch_h + branch_w + branch_c).reshape(b, h * w, c).mean(1)
    a = mlp(a, "attn.reweight").reshape(b, c, 3).transpose(2, 0, 1)
    a = np.exp(a - a.max(0)) / np.exp(a - a.max(0)).sum(0)
    a = a[:, :, None, None, :]
    mixed = linear(branch_h * a[0] + branch_w * a[1] + branch_c * a[2], "attn.proj")
    x = x + mixed
    return x + mlp(np_layer_norm(x, p["norm2.weight"], p["norm2.bias"], 1e-5), "mlp")


def test_cycle_block_matches_authors_forward():
    rng = np.random.default_rng(1)
    dim = 8
    block = CycleBlock(dim, mlp_ratio=2)
    params = {}
    for param in block.trainable_params():
        value = (rng.standard_normal(param.shape) * 0.5).astype(np.float32)
        param.set_data(Tensor(value))
        params[to_torch_name(param.name)] = value.astype(np.float64)
    x = rng.standard_normal((2, 4, 5, dim)).astype(np.float32)
    np.testing.assert_allclose(block(Tensor(x)).asnumpy(), cycle_block_reference(x.astype(np.float64), params),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,size", [("cyclemlp_b1", 32), ("cyclemlp_b1", 64)])
def test_forward_with_stages(name, size):
    model = create_model(name, num_classes=10, image_size=size)
    model.set_train(False)
    x = Tensor(np.random.default_rng(2).standard_normal((2, 3, size, size)).astype(np.float32))
    logits, stages, pooled = model.forward_with_stages(x)
    assert isinstance(stages, tuple) and len(stages) == 4
    assert [tuple(s.shape) for s in stages] == [(2,) + shape for shape in model.stage_shapes()]
    assert tuple(pooled.shape) == (2, model.feature_dim)
    assert tuple(logits.shape) == (2, 10)
    np.testing.assert_allclose(model(x).asnumpy(), logits.asnumpy(), rtol=1e-6, atol=1e-6)
    # The head reads the pooled feature.
    head = model.head(pooled).asnumpy()
    np.testing.assert_allclose(head, logits.asnumpy(), rtol=1e-5, atol=1e-5)
