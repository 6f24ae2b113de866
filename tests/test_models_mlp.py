"""MLP-Mixer / ResMLP: stage shapes, one-pass stage features, token mixing, and timm numerics.

Parameter counts and the graph-mode stage contract are checked for every model in test_models_contract.py.
"""
import math

import numpy as np
import pytest
from mindspore import Tensor

from helpers import np_gelu, np_layer_norm, np_linear, np_patch_embed, randomize
from src.models import create_model

WIDTHS = {"mixer_b16": 768, "resmlp_12": 384}










def np_mlp(x, params, prefix):
    return np_linear(np_gelu(np_linear(x, params, prefix + ".fc1")), params, prefix + ".fc2")




def np_mixer(params, x, depth, resmlp, stage_blocks):
    """timm's MlpMixer forward (MixerBlock or ResBlock) in float64 NumPy, written from its definition."""
    p = params
    t = np_patch_embed(x, p["stem.proj.weight"], p["stem.proj.bias"])
    if resmlp:
        norm = lambda y, name: p[name + ".beta"] + p[name + ".alpha"] * y  # noqa: E731
    else:
        norm = lambda y, name: np_layer_norm(y, p[name + ".gamma"], p[name + ".beta"])  # noqa: E731
    stages = []
    for i in range(depth):
        pre = f"blocks.{i}."
        h = norm(t, pre + "norm1").transpose(0, 2, 1)
        if resmlp:
            t = t + p[pre + "ls1"] * np_linear(h, p, pre + "linear_tokens").transpose(0, 2, 1)
            t = t + p[pre + "ls2"] * np_mlp(norm(t, pre + "norm2"), p, pre + "mlp_channels")
        else:
            t = t + np_mlp(h, p, pre + "mlp_tokens").transpose(0, 2, 1)
            t = t + np_mlp(norm(t, pre + "norm2"), p, pre + "mlp_channels")
        if i + 1 in stage_blocks:
            stages.append(t)
    pooled = norm(t, "norm").mean(axis=1)
    return np_linear(pooled, p, "head"), stages, pooled


@pytest.mark.parametrize("name", sorted(WIDTHS))
def test_stage_shapes_at_224(name):
    width = WIDTHS[name]
    model = create_model(name, num_classes=10, image_size=32)
    assert model.stage_shapes(224) == [(196, width)] * 4
    assert model.feature_dim == width
    assert (model.family, model.stage_kind, model.num_prefix_tokens) == ("mlp", "token", 0)
    assert model.stage_blocks == (2, 4, 10, 12)


def test_timm_shapes_of_named_parameters():
    shapes = {n: tuple(p.shape) for n, p in create_model("resmlp_12").parameters_and_names()}
    assert shapes["blocks.0.norm1.alpha"] == (1, 1, 384)
    assert shapes["blocks.0.linear_tokens.weight"] == (196, 196)
    assert shapes["blocks.11.ls2"] == (384,)
    assert shapes["norm.beta"] == (1, 1, 384)
    shapes = {n: tuple(p.shape) for n, p in create_model("mixer_b16", image_size=32).parameters_and_names()}
    assert shapes["stem.proj.weight"] == (768, 3, 16, 16)
    assert shapes["blocks.0.mlp_tokens.fc1.weight"] == (384, 4)
    assert shapes["blocks.0.mlp_channels.fc2.weight"] == (768, 3072)


# mixer_b16 at 32 px is covered by the numerics test below (a Mixer-B forward costs ~2 s on CPU).
@pytest.mark.parametrize("name,size", [("mixer_b16", 64), ("resmlp_12", 32), ("resmlp_12", 64)])
def test_forward_with_stages_matches_shapes_and_logits(name, size):
    model = create_model(name, num_classes=10, image_size=size)
    model.set_train(False)
    randomize(model, prefix="head.")  # timm zero-initialises the head: the logits check would be vacuous
    x = Tensor(np.random.default_rng(1).normal(size=(2, 3, size, size)).astype(np.float32))
    logits, stages, pooled = model.forward_with_stages(x)
    assert isinstance(stages, tuple) and len(stages) == 4
    assert [tuple(s.shape[1:]) for s in stages] == model.stage_shapes()
    assert model.stage_shapes()[0] == ((size // 16) ** 2, model.feature_dim)
    assert tuple(pooled.shape) == (2, model.feature_dim)
    assert tuple(logits.shape) == (2, 10)
    np.testing.assert_allclose(logits.asnumpy(), model(x).asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name,resmlp", [("mixer_b16", False), ("resmlp_12", True)])
def test_numerics_match_timm_definition(name, resmlp):
    """Logits, stage features (blocks 2, 4, 10, 12) and pooled vector equal a float64 timm-style forward."""
    model = create_model(name, num_classes=7, image_size=32)
    model.set_train(False)
    randomize(model)
    x = np.random.default_rng(2).normal(size=(2, 3, 32, 32))
    logits, stages, pooled = model.forward_with_stages(Tensor(x.astype(np.float32)))
    params = {n: p.asnumpy().astype(np.float64) for n, p in model.parameters_and_names()}
    ref_logits, ref_stages, ref_pooled = np_mixer(params, x, 12, resmlp, (2, 4, 10, 12))
    assert [tuple(s.shape[1:]) for s in stages] == model.stage_shapes()
    for ours, ref in zip(stages, ref_stages):
        np.testing.assert_allclose(ours.asnumpy(), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_allclose(pooled.asnumpy(), ref_pooled, rtol=1e-4, atol=1e-4 * np.abs(ref_pooled).max())
    np.testing.assert_allclose(logits.asnumpy(), ref_logits, rtol=1e-4, atol=1e-4 * np.abs(ref_logits).max())


def test_gelu_is_the_erf_form():
    act = create_model("resmlp_12", num_classes=2, image_size=16).blocks[0].mlp_channels.act
    x = np.linspace(-6.0, 6.0, 241)
    np.testing.assert_allclose(act(Tensor(x.astype(np.float32))).asnumpy(), np_gelu(x), rtol=0, atol=2e-6)
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    assert np.abs(tanh_form - np_gelu(x)).max() > 1e-4


def test_mixer_layer_norm_eps_and_resmlp_layer_scale_init():
    mixer = create_model("mixer_b16", num_classes=2, image_size=16)
    for cell in (mixer.norm, mixer.blocks[0].norm1, mixer.blocks[11].norm2):
        assert cell.epsilon == 1e-6
    resmlp = create_model("resmlp_12", num_classes=2, image_size=16)
    np.testing.assert_array_equal(resmlp.blocks[3].ls1.asnumpy(), np.full(384, 0.1, np.float32))
    np.testing.assert_array_equal(resmlp.blocks[3].norm2.alpha.asnumpy(), np.ones((1, 1, 384), np.float32))


def test_image_size_not_multiple_of_patch_is_rejected():
    with pytest.raises(ValueError, match="image_size 100"):
        create_model("resmlp_12", image_size=100)
    model = create_model("resmlp_12", num_classes=2, image_size=32)
    assert model.stage_shapes(224) == [(196, 384)] * 4
    with pytest.raises(ValueError, match="image_size 40"):
        model.stage_shapes(40)
