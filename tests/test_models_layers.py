"""Every block rewritten for speed computes what its previous form computed (within 1e-6 of the output scale).

Each test keeps the previous form here as the reference, with the same parameters, and compares outputs
(and for the GELU the gradient too) on random inputs; docs/model_speed.md says what each rewrite gains.
"""
import math

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops
from mindcv.models.convnext import Block as MindcvConvNeXtBlock

from src.models.convnext import ConvNeXtBlock
from src.models.cnn import StemMaxPool
from src.models.layers import GELU
from src.models.mlp import MixerBlock, ResBlock
from src.models.swin import SwinBlock

TOL = 1e-6


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)


def randomise(cell, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    for p in cell.get_parameters():
        p.set_data(Tensor((scale * rng.standard_normal(p.shape)).astype(np.float32)))


def assert_close(new, old):
    new, old = new.asnumpy(), old.asnumpy()
    scale = max(1.0, float(np.abs(old).max()))
    assert new.shape == old.shape
    assert float(np.abs(new - old).max()) <= TOL * scale, float(np.abs(new - old).max())


def test_gelu_equals_mindspores_exact_gelu_and_its_gradient():
    x = Tensor(np.linspace(-8.0, 8.0, 4001).astype(np.float32))
    assert_close(GELU()(x), nn.GELU(approximate=False)(x))
    grad_new = ops.grad(lambda v: GELU()(v).sum())(x).asnumpy()
    grad_old = ops.grad(lambda v: nn.GELU(approximate=False)(v).sum())(x).asnumpy()
    xd = np.linspace(-8.0, 8.0, 4001)
    exact = 0.5 * (1 + np.vectorize(math.erf)(xd / math.sqrt(2))) + xd * np.exp(-xd ** 2 / 2) / math.sqrt(2 * math.pi)
    assert np.abs(grad_new - exact).max() <= 2 * TOL and np.abs(grad_new - grad_old).max() <= 2 * TOL


def old_window_attention(attn, x):
    """Swin's previous WindowAttention: strided q/k/v slices; bias, then mask added in a second pass."""
    bw, n, c = x.shape
    qkv = ops.transpose(attn.qkv(x).reshape(bw, n, 3, attn.num_heads, attn.head_dim), (2, 0, 3, 1, 4))
    q, k, v = qkv[0] * attn.scale, qkv[1], qkv[2]
    logits = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2)))
    bias = ops.gather(attn.relative_position_bias_table, attn.relative_position_index, 0)
    logits = logits + ops.transpose(bias.reshape(attn.area, attn.area, attn.num_heads), (2, 0, 1))
    if attn.masked:
        mask = attn.attn_mask.reshape(1, attn.num_windows, 1, n, n)
        logits = (logits.reshape(-1, attn.num_windows, attn.num_heads, n, n) + mask).reshape(bw, attn.num_heads, n, n)
    out = ops.transpose(ops.matmul(ops.softmax(logits, axis=-1), v), (0, 2, 1, 3)).reshape(bw, n, c)
    return attn.proj(out)


@pytest.mark.parametrize("shift", [2, 0])
def test_swin_window_attention_equals_its_previous_form(shift):
    block = SwinBlock(16, 2, res=8, window=4, shift=shift)
    randomise(block, seed=shift)
    windows = Tensor(np.random.default_rng(1).standard_normal((2 * 4, 16, 16)).astype(np.float32))
    assert_close(block.attn(windows), old_window_attention(block.attn, windows))


def test_mixer_token_mixing_equals_the_transposed_linear_form():
    block = MixerBlock(12, seq_len=9, tokens_dim=6, channels_dim=24)
    randomise(block, seed=2)
    x = Tensor(np.random.default_rng(3).standard_normal((2, 9, 12)).astype(np.float32))
    tokens = block.mlp_tokens(block.norm1(x).transpose(0, 2, 1)).transpose(0, 2, 1)  # timm's form
    old = x + tokens
    old = old + block.mlp_channels(block.norm2(old))
    assert_close(block(x), old)


def test_resmlp_folded_token_mixing_equals_the_affine_transpose_linear_form():
    block = ResBlock(12, seq_len=9)
    randomise(block, seed=4)
    x = Tensor(np.random.default_rng(5).standard_normal((2, 9, 12)).astype(np.float32))
    tokens = block.linear_tokens(block.norm1(x).transpose(0, 2, 1)).transpose(0, 2, 1)  # timm's form
    old = x + block.ls1 * tokens
    old = old + block.ls2 * block.mlp_channels(block.norm2(old))
    assert_close(block(x), old)


def test_convnext_block_with_folded_layer_scale_equals_mindcvs_block_with_exact_gelu():
    ours, theirs = ConvNeXtBlock(8), MindcvConvNeXtBlock(8)
    theirs.act = nn.GELU(approximate=False)  # timm's GELU; mindcv's default is the tanh approximation
    randomise(ours, seed=6)
    for mine, other in zip(ours.get_parameters(), theirs.get_parameters()):
        assert mine.name.split(".")[-2:] == other.name.split(".")[-2:]
        other.set_data(mine.value())
    x = Tensor(np.random.default_rng(7).standard_normal((2, 8, 9, 9)).astype(np.float32))
    assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("hw", [(16, 16), (15, 9)])
def test_stem_max_pool_equals_the_symmetrically_padded_pool(hw):
    x = Tensor(np.random.default_rng(8).standard_normal((2, 3) + hw).astype(np.float32))  # negatives too
    previous = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="pad", padding=1)
    np.testing.assert_array_equal(StemMaxPool()(x).asnumpy(), previous(x).asnumpy())
