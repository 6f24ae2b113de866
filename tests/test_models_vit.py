"""ViT / DeiT: stage shapes, one-pass stage features, position-embedding resampling, and timm numerics.

Parameter counts and the graph-mode stage contract are checked for every model in test_models_contract.py.
"""
import math

import numpy as np
import pytest
from mindspore import Tensor

from helpers import np_gelu, np_layer_norm, np_linear, np_patch_embed, randomize
from src.models import create_model
from src.models.layers import default_stage_blocks

WIDTHS = {"deit_tiny": 192, "deit_small": 384, "vit_small": 384, "vit_base": 768}












def np_vit(params, x, num_heads, depth, stage_blocks):
    """timm's VisionTransformer forward in float64 NumPy, written from its definition."""
    p = params
    t = np_patch_embed(x, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"])
    cls = np.broadcast_to(p["cls_token"], (t.shape[0], 1, t.shape[2]))
    t = np.concatenate([cls, t], axis=1) + p["pos_embed"]
    stages = []
    for i in range(depth):
        pre = f"blocks.{i}."
        b, n, e = t.shape
        h = np_layer_norm(t, p[pre + "norm1.gamma"], p[pre + "norm1.beta"])
        qkv = np_linear(h, p, pre + "attn.qkv").reshape(b, n, 3, num_heads, e // num_heads)
        q, k, v = qkv.transpose(2, 0, 3, 1, 4)
        logits = (q * (e // num_heads) ** -0.5) @ k.transpose(0, 1, 3, 2)
        attn = np.exp(logits - logits.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        t = t + np_linear((attn @ v).transpose(0, 2, 1, 3).reshape(b, n, e), p, pre + "attn.proj")
        h = np_layer_norm(t, p[pre + "norm2.gamma"], p[pre + "norm2.beta"])
        t = t + np_linear(np_gelu(np_linear(h, p, pre + "mlp.fc1")), p, pre + "mlp.fc2")
        if i + 1 in stage_blocks:
            stages.append(t)
    pooled = np_layer_norm(t, p["norm.gamma"], p["norm.beta"])[:, 0]
    return np_linear(pooled, p, "head"), stages, pooled


@pytest.mark.parametrize("name", sorted(WIDTHS))
def test_stage_shapes_at_224(name):
    width = WIDTHS[name]
    model = create_model(name, num_classes=10, image_size=32)
    assert model.stage_shapes(224) == [(197, width)] * 4
    assert model.feature_dim == width
    assert (model.family, model.stage_kind, model.num_prefix_tokens) == ("vit", "token", 1)
    assert model.stage_blocks == (2, 4, 10, 12)


def test_vit_small_is_deit_small_under_its_own_name():
    a, b = create_model("vit_small"), create_model("deit_small")
    assert [(n, p.shape) for n, p in a.parameters_and_names()] == \
        [(n, p.shape) for n, p in b.parameters_and_names()]


def test_default_stage_blocks_for_12_deep():
    assert default_stage_blocks(12) == (2, 4, 10, 12)


@pytest.mark.parametrize("size", [32, 64])
def test_forward_with_stages_matches_shapes_and_logits(size):
    model = create_model("deit_tiny", num_classes=10, image_size=size)
    model.set_train(False)
    x = Tensor(np.random.default_rng(1).normal(size=(2, 3, size, size)).astype(np.float32))
    logits, stages, pooled = model.forward_with_stages(x)
    assert isinstance(stages, tuple) and len(stages) == 4
    assert [tuple(s.shape[1:]) for s in stages] == model.stage_shapes()
    assert model.stage_shapes()[0] == ((size // 16) ** 2 + 1, 192)
    assert tuple(pooled.shape) == (2, model.feature_dim)
    assert tuple(logits.shape) == (2, 10)
    np.testing.assert_allclose(logits.asnumpy(), model(x).asnumpy(), rtol=1e-5, atol=1e-6)


def test_numerics_match_timm_definition():
    """Logits, stage features (blocks 2, 4, 10, 12) and pooled vector equal a float64 timm-style forward."""
    model = create_model("deit_tiny", num_classes=7, image_size=32)
    model.set_train(False)
    randomize(model)
    x = np.random.default_rng(2).normal(size=(2, 3, 32, 32))
    logits, stages, pooled = model.forward_with_stages(Tensor(x.astype(np.float32)))
    params = {n: p.asnumpy().astype(np.float64) for n, p in model.parameters_and_names()}
    ref_logits, ref_stages, ref_pooled = np_vit(params, x, 3, 12, (2, 4, 10, 12))
    for ours, ref in zip(stages, ref_stages):
        np.testing.assert_allclose(ours.asnumpy(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_allclose(pooled.asnumpy(), ref_pooled, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logits.asnumpy(), ref_logits, rtol=1e-4, atol=1e-4)


def test_gelu_is_the_erf_form():
    act = create_model("deit_tiny", num_classes=2, image_size=16).blocks[0].mlp.act
    x = np.linspace(-6.0, 6.0, 241)
    ours = act(Tensor(x.astype(np.float32))).asnumpy()
    np.testing.assert_allclose(ours, np_gelu(x), rtol=0, atol=2e-6)
    # The tanh approximation (MindSpore's default) is measurably different, so the check can fail.
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    assert np.abs(tanh_form - np_gelu(x)).max() > 1e-4


def test_layer_norm_eps_is_1e6():
    model = create_model("deit_tiny", num_classes=2, image_size=16)
    for cell in (model.norm, model.blocks[0].norm1, model.blocks[11].norm2):
        assert cell.epsilon == 1e-6


def test_image_size_not_multiple_of_patch_is_rejected():
    with pytest.raises(ValueError, match="image_size 100"):
        create_model("deit_tiny", image_size=100)
    model = create_model("deit_tiny", num_classes=2, image_size=32)
    assert model.stage_shapes(224) == [(197, 192)] * 4
    with pytest.raises(ValueError, match="image_size 40"):
        model.stage_shapes(40)


def test_bad_stage_blocks_are_rejected():
    with pytest.raises(ValueError, match="stage_blocks"):
        create_model("deit_tiny", num_classes=2, image_size=16, stage_blocks=(2, 4, 13, 12))
