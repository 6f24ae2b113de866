"""Swin models: sizes (padded windows), stage features, and timm numerics checked against NumPy references.

Parameter counts and the graph-mode stage contract are checked for every model in test_models_contract.py.
"""

import numpy as np
import pytest
import mindspore as ms
from mindspore import Tensor

from helpers import np_gelu, np_softmax
from src.models import create_model
from src.models.swin import (PatchMerging, SwinBlock, relative_position_index, shifted_window_mask,
                             stage_windows)

REFERENCE_224 = {
    "swin_tiny": [(3136, 96), (784, 192), (196, 384), (49, 768)],
    "swin_nano": [(3136, 64), (784, 128), (196, 256), (49, 512)],
    "swin_pico": [(3136, 48), (784, 96), (196, 192), (49, 384)],
}


def images(size, batch=2, seed=0):
    return Tensor(np.random.default_rng(seed).standard_normal((batch, 3, size, size)).astype(np.float32))


# ---- NumPy references, written from the Swin paper / timm semantics, not from our module ----

def np_layer_norm(x, cell):
    mu = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * cell.gamma.asnumpy() + cell.beta.asnumpy()


def np_dense(x, cell):
    y = x @ cell.weight.asnumpy().T
    return y + cell.bias.asnumpy() if cell.has_bias else y






def np_window_mask(res, window, shift):
    """Tokens of one shifted window may attend to each other only if they were neighbours before the
    cyclic shift: both or neither wrapped around the bottom edge, and the same for the right edge."""
    n = res // window
    masks = []
    for wr in range(n):
        for wc in range(n):
            wrapped = [((wr * window + i + shift) >= res, (wc * window + j + shift) >= res)
                       for i in range(window) for j in range(window)]
            masks.append([[0.0 if a == b else -100.0 for b in wrapped] for a in wrapped])
    return np.array(masks, dtype=np.float32)


def np_slice_mask(side, window, shift):
    """timm's SW-MSA mask on a (padded) side x side map: regions are the slices (0, -window),
    (-window, -shift), (-shift, end) of each axis; tokens of different regions get -100."""
    label = np.zeros((side, side), dtype=np.int64)
    cuts = [(0, side - window), (side - window, side - shift), (side - shift, side)]
    for r, (r0, r1) in enumerate(cuts):
        for q, (c0, c1) in enumerate(cuts):
            label[r0:r1, c0:c1] = 3 * r + q
    n = side // window
    masks = []
    for wr in range(n):
        for wc in range(n):
            lab = label[wr * window:(wr + 1) * window, wc * window:(wc + 1) * window].reshape(-1)
            masks.append(np.where(lab[:, None] == lab[None, :], 0.0, -100.0))
    return np.array(masks, dtype=np.float32)


def np_swin_block(x, block, res, window, shift, num_heads):
    """One (S)W-MSA + MLP block as timm runs it: np.roll, zero padding to whole windows (bottom / right),
    explicit per-window loops, crop, roll back."""
    b, _, c = x.shape
    hd = c // num_heads
    area = window * window
    table = block.attn.relative_position_bias_table.asnumpy()
    bias = np.zeros((num_heads, area, area), dtype=np.float32)
    for i in range(area):
        for j in range(area):
            di, dj = i // window - j // window, i % window - j % window
            bias[:, i, j] = table[(di + window - 1) * (2 * window - 1) + dj + window - 1]
    side = -(-res // window) * window
    mask = np_slice_mask(side, window, shift) if shift else None
    img = np.roll(np_layer_norm(x, block.norm1).reshape(b, res, res, c), (-shift, -shift), axis=(1, 2))
    img = np.pad(img, ((0, 0), (0, side - res), (0, side - res), (0, 0)))
    out = np.zeros_like(img)
    n = side // window
    for bi in range(b):
        for wr in range(n):
            for wc in range(n):
                rows, cols = slice(wr * window, (wr + 1) * window), slice(wc * window, (wc + 1) * window)
                qkv = np_dense(img[bi, rows, cols].reshape(area, c), block.attn.qkv)
                heads = []
                for h in range(num_heads):
                    q = qkv[:, h * hd:(h + 1) * hd] * hd ** -0.5
                    k = qkv[:, c + h * hd:c + (h + 1) * hd]
                    v = qkv[:, 2 * c + h * hd:2 * c + (h + 1) * hd]
                    logits = q @ k.T + bias[h]
                    if mask is not None:
                        logits = logits + mask[wr * n + wc]
                    heads.append(np_softmax(logits) @ v)
                out[bi, rows, cols] = np_dense(np.concatenate(heads, -1), block.attn.proj).reshape(window, window, c)
    x = x + np.roll(out[:, :res, :res], (shift, shift), axis=(1, 2)).reshape(b, res * res, c)
    hidden = np_gelu(np_dense(np_layer_norm(x, block.norm2), block.mlp.fc1))
    return x + np_dense(hidden, block.mlp.fc2)


# ---- sizes and shapes ----

def test_parameter_names_are_timms():
    net = create_model("swin_pico", num_classes=10, image_size=224)
    names = [p.name for p in net.trainable_params()]
    assert "layers.0.blocks.0.attn.relative_position_bias_table" in names
    assert "layers.1.downsample.reduction.weight" in names and "head.weight" in names
    assert not any("relative_position_index" in n or "attn_mask" in n for n, _ in net.parameters_and_names())


@pytest.mark.parametrize("name", sorted(REFERENCE_224))
def test_stage_shapes_at_224_match_spec(name):
    net = create_model(name, num_classes=10, image_size=224)
    assert net.stage_shapes() == REFERENCE_224[name]
    assert net.feature_dim == REFERENCE_224[name][-1][1]
    assert (net.family, net.stage_kind, net.num_prefix_tokens) == ("vit", "token", 0)


def test_window_plan_shrinks_windows_on_small_maps():
    assert stage_windows(224) == [(56, 7, 3), (28, 7, 3), (14, 7, 3), (7, 7, 0)]
    assert stage_windows(32, window_size=4) == [(8, 4, 2), (4, 4, 0), (2, 2, 0), (1, 1, 0)]
    assert stage_windows(32, window_size=8) == [(8, 8, 0), (4, 4, 0), (2, 2, 0), (1, 1, 0)]
    assert stage_windows(64, window_size=8) == [(16, 8, 4), (8, 8, 0), (4, 4, 0), (2, 2, 0)]


# any multiple of 32 works (stages padded to whole windows); anything else cannot be merged down to stage 4
@pytest.mark.parametrize("size,bad", [(100, "100"), (48, "48"), (16, "16"), (0, "0")])
def test_bad_image_size_raises_value_error_naming_it(size, bad):
    with pytest.raises(ValueError, match=f"image_size {bad} "):
        create_model("swin_pico", num_classes=10, image_size=size)


def test_stage_shapes_rejects_bad_size():
    net = create_model("swin_pico", num_classes=10, image_size=32, window_size=4)
    assert net.stage_shapes() == [(64, 48), (16, 96), (4, 192), (1, 384)]
    assert net.stage_shapes(64) == [(256, 48), (64, 96), (16, 192), (4, 384)]
    assert net.stage_shapes(96) == [(576, 48), (144, 96), (36, 192), (9, 384)]  # stages padded to windows
    with pytest.raises(ValueError, match="image_size 40 "):
        net.stage_shapes(40)


# ---- forwards ----

@pytest.mark.parametrize("size,kwargs", [(32, {"window_size": 4}), (64, {"window_size": 8})])
def test_forward_with_stages_shapes_and_logits_pynative(size, kwargs):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    net = create_model("swin_pico", num_classes=10, image_size=size, **kwargs)
    net.set_train(False)
    x = images(size)
    logits, stages, pooled = net.forward_with_stages(x)
    assert [tuple(s.shape[1:]) for s in stages] == net.stage_shapes()
    assert all(s.shape[0] == 2 for s in stages)
    assert logits.shape == (2, 10) and pooled.shape == (2, net.feature_dim)
    np.testing.assert_allclose(logits.asnumpy(), net(x).asnumpy(), rtol=0, atol=1e-6)
    expected_pooled = np_layer_norm(stages[3].asnumpy(), net.norm).mean(1)
    np.testing.assert_allclose(pooled.asnumpy(), expected_pooled, rtol=1e-4, atol=1e-4)


# ---- timm numerics, piece by piece ----

def test_shifted_window_mask_matches_independent_construction():
    for res, window, shift in [(8, 4, 2), (14, 7, 3), (12, 4, 2)]:
        np.testing.assert_array_equal(shifted_window_mask(res, window, shift), np_window_mask(res, window, shift))
    block = SwinBlock(8, 2, res=8, window=4, shift=2)
    assert block.attn.attn_mask.shape == (4, 1, 16, 16)
    np.testing.assert_array_equal(block.attn.attn_mask.asnumpy()[:, 0], np_window_mask(8, 4, 2))
    # only the last window row/column mixes regions: window 0 is all zeros, window 3 has 4 regions
    assert (np_window_mask(8, 4, 2)[0] == 0).all() and (np_window_mask(8, 4, 2)[3] == 0).sum() == 4 * 16


def test_relative_position_index_matches_brute_force():
    w = 3
    idx = relative_position_index(w)
    for i in range(w * w):
        for j in range(w * w):
            assert idx[i, j] == (i // w - j // w + w - 1) * (2 * w - 1) + (i % w - j % w + w - 1)
    assert idx.min() == 0 and idx.max() == (2 * w - 1) ** 2 - 1


def test_slice_mask_is_the_wrapped_neighbour_mask_without_padding():
    for res, window, shift in [(8, 4, 2), (14, 7, 3)]:
        np.testing.assert_array_equal(np_slice_mask(res, window, shift), np_window_mask(res, window, shift))
    np.testing.assert_array_equal(shifted_window_mask(6, 4, 2), np_slice_mask(8, 4, 2))  # padded 6 -> 8


# res 6 with window 4: padded to 8 (timm >= 0.9), shifted and not
@pytest.mark.parametrize("res,shift", [(8, 2), (8, 0), (6, 2), (6, 0)])
def test_block_matches_numpy_reference(res, shift):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    window, dim, heads = 4, 8, 2
    block = SwinBlock(dim, heads, res=res, window=window, shift=shift)
    block.set_train(False)
    rng = np.random.default_rng(3)
    # large random weights (bias table included) so a wrong lookup, order or GELU variant would show
    for param in block.get_parameters():
        param.set_data(Tensor(0.5 * rng.standard_normal(param.shape).astype(np.float32)))
    x = rng.standard_normal((2, res * res, dim)).astype(np.float32)
    got = block(Tensor(x)).asnumpy()
    np.testing.assert_allclose(got, np_swin_block(x, block, res, window, shift, heads), rtol=1e-4, atol=1e-5)


def test_patch_merging_matches_numpy_concat_order():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    res, dim = 4, 3
    merge = PatchMerging(dim, 2 * dim, res)
    x = np.random.default_rng(4).standard_normal((2, res * res, dim)).astype(np.float32)
    img = x.reshape(2, res, res, dim)
    cat = np.concatenate([img[:, 0::2, 0::2], img[:, 1::2, 0::2], img[:, 0::2, 1::2], img[:, 1::2, 1::2]], -1)
    expected = np_dense(np_layer_norm(cat.reshape(2, -1, 4 * dim), merge.norm), merge.reduction)
    np.testing.assert_allclose(merge(Tensor(x)).asnumpy(), expected, rtol=1e-5, atol=1e-5)


# ---- sizes that are not whole windows: forward and one compiled OFA training step ----

@pytest.mark.slow
@pytest.mark.parametrize("size", [96, 256])
def test_swin_at_padded_sizes_runs_and_trains_one_graph_step(size):
    """A narrow Swin (swin_pico's depths, width 16, one head per 16 channels: the compile is the cost) as an
    OFA student: every stage size follows the input, exit branches included."""
    from src.distill import build_distiller
    from src.engine import DistillTrainStep, create_optimizer, param_groups
    from src.models.swin import SwinTransformer

    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    student = SwinTransformer(16, (2, 2, 2, 2), (1, 2, 4, 8), num_classes=4, image_size=size)  # window 7
    assert any(block.padded for layer in student.layers for block in layer.blocks)
    x = images(size)
    student.set_train(False)
    logits, stages, pooled = student.forward_with_stages(x)
    assert [tuple(s.shape[1:]) for s in stages] == student.stage_shapes()
    assert student.stage_shapes() == [((size // 4) ** 2, 16), ((size // 8) ** 2, 32), ((size // 16) ** 2, 64),
                                      ((size // 32) ** 2, 128)]
    assert logits.shape == (2, 4) and pooled.shape == (2, 128)

    teacher = create_model("resnet10", num_classes=4, image_size=size)
    distiller = build_distiller("ofa", student, teacher, num_classes=4, eps=(1.5,))
    step = DistillTrainStep(distiller, create_optimizer("adamw", param_groups(distiller, 0.05), 1e-3))
    step.set_train(True)
    before = student.layers[0].blocks[1].attn.qkv.weight.asnumpy().copy()
    ms.set_context(mode=ms.GRAPH_MODE)
    loss = float(step(x, Tensor(np.array([0, 3], np.int32)))[0].asnumpy())
    assert np.isfinite(loss)
    assert not np.array_equal(student.layers[0].blocks[1].attn.qkv.weight.asnumpy(), before)
