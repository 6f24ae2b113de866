"""BEiT v2: parameter counts, names, relative position index, stage shapes, NumPy forward parity, graph mode."""

import numpy as np
import pytest
from mindspore import Tensor

from helpers import np_gelu, np_layer_norm, np_softmax, to_torch_name
from src.models import create_model
from src.models.beit import Beit, relative_position_index


def expected_param_count(embed_dim, depth, num_heads, grid, num_classes=1000, patch=16, mlp_ratio=4):
    """Count by hand from timm's Beit (use_rel_pos_bias=True, no abs pos embed, avg pool + fc_norm)."""
    e, hidden = embed_dim, embed_dim * mlp_ratio
    table_rows = (2 * grid - 1) ** 2 + 3
    block = (2 * e                      # norm1
             + e * 3 * e + 2 * e        # qkv weight (no bias) + q_bias + v_bias
             + table_rows * num_heads   # relative_position_bias_table
             + e * e + e                # attn.proj
             + 2 * e                    # norm2
             + e * hidden + hidden + hidden * e + e  # mlp fc1, fc2
             + 2 * e)                   # gamma_1, gamma_2
    stem = 3 * patch * patch * e + e + e  # patch_embed conv + cls_token
    return stem + depth * block + 2 * e + e * num_classes + num_classes  # fc_norm, head


def timm_param_names(depth):
    """timm Beit state-dict keys that are parameters (relative_position_index is a buffer)."""
    block_keys = ["norm1.weight", "norm1.bias", "attn.q_bias", "attn.v_bias", "attn.qkv.weight",
                  "attn.relative_position_bias_table", "attn.proj.weight", "attn.proj.bias",
                  "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
                  "mlp.fc2.bias", "gamma_1", "gamma_2"]
    names = {"cls_token", "patch_embed.proj.weight", "patch_embed.proj.bias", "fc_norm.weight", "fc_norm.bias",
             "head.weight", "head.bias"}
    return names | {f"blocks.{n}.{key}" for n in range(depth) for key in block_keys}




@pytest.mark.parametrize("name,embed_dim,depth,heads,timm_millions", [
    ("beitv2_base", 768, 12, 12, 86.53), pytest.param("beitv2_large", 1024, 24, 16, 304.43, marks=pytest.mark.slow)])
def test_param_count_names_and_224_shapes(name, embed_dim, depth, heads, timm_millions):
    model = create_model(name, num_classes=1000)
    params = model.trainable_params()
    count = sum(int(np.prod(p.shape)) for p in params)
    assert count == expected_param_count(embed_dim, depth, heads, grid=14)
    assert abs(count / 1e6 - timm_millions) < 0.01
    assert {to_torch_name(p.name) for p in params} == timm_param_names(depth)
    assert tuple(model.blocks[0].attn.relative_position_bias_table.shape) == (27 * 27 + 3, heads)
    assert (model.family, model.stage_kind, model.num_prefix_tokens) == ("vit", "token", 1)
    assert model.feature_dim == embed_dim
    assert model.stage_shapes() == [(197, embed_dim)] * 4
    assert model.stage_shapes(64) == [(17, embed_dim)] * 4
    # Layer scale starts at timm's init_values for v2.
    np.testing.assert_allclose(model.blocks[0].gamma_1.asnumpy(), 1e-5)


def test_exact_counts():
    """The figures we report (timm: 86.53 M and 304.43 M)."""
    assert expected_param_count(768, 12, 12, grid=14) == 86_530_984
    assert expected_param_count(1024, 24, 16, grid=14) == 304_430_568


@pytest.fixture(scope="module")
def base32():
    """beitv2_base at 32 px (2x2 patches), shared by the tests that run it."""
    model = create_model("beitv2_base", num_classes=10, image_size=32)
    model.set_train(False)
    return model


def test_bad_sizes_raise(base32):
    with pytest.raises(ValueError, match="image_size"):
        Beit(num_classes=10, image_size=40, embed_dim=16, depth=4, num_heads=2)
    with pytest.raises(ValueError, match="image_size"):
        base32.stage_shapes(100)


def brute_force_index(grid_h, grid_w):
    """Relative position index by enumeration, in timm's table order."""
    rows = (2 * grid_h - 1) * (2 * grid_w - 1)
    n = grid_h * grid_w
    index = np.zeros((n + 1, n + 1), dtype=np.int64)
    for i in range(n + 1):
        for j in range(n + 1):
            if i == 0 and j == 0:
                index[i, j] = rows + 2      # cls -> cls
            elif i == 0:
                index[i, j] = rows          # cls -> token
            elif j == 0:
                index[i, j] = rows + 1      # token -> cls
            else:
                (yi, xi), (yj, xj) = divmod(i - 1, grid_w), divmod(j - 1, grid_w)
                index[i, j] = (yi - yj + grid_h - 1) * (2 * grid_w - 1) + (xi - xj + grid_w - 1)
    return index


@pytest.mark.parametrize("grid", [(2, 2), (3, 4), (14, 14)])
def test_relative_position_index(grid):
    index = relative_position_index(*grid)
    np.testing.assert_array_equal(index, brute_force_index(*grid))
    # Every table row is used.
    assert len(np.unique(index)) == (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3








def beit_reference(x, p, depth, num_heads, patch, stage_blocks):
    """timm's Beit.forward in NumPy (float64); p = {timm name: array}. Returns logits, stages, pooled."""
    b, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    patches = x.reshape(b, c, gh, patch, gw, patch).transpose(0, 2, 4, 1, 3, 5).reshape(b, gh * gw, -1)
    kernel = p["patch_embed.proj.weight"]
    tokens = patches @ kernel.reshape(kernel.shape[0], -1).T + p["patch_embed.proj.bias"]
    e = tokens.shape[-1]
    x = np.concatenate([np.broadcast_to(p["cls_token"], (b, 1, e)), tokens], axis=1)
    n, hd = x.shape[1], e // num_heads
    index = brute_force_index(gh, gw)
    stages = []
    for k in range(depth):
        q = f"blocks.{k}."
        y = np_layer_norm(x, p[q + "norm1.weight"], p[q + "norm1.bias"])
        qkv_bias = np.concatenate([p[q + "attn.q_bias"], np.zeros(e), p[q + "attn.v_bias"]])
        qkv = (y @ p[q + "attn.qkv.weight"].T + qkv_bias).reshape(b, n, 3, num_heads, hd).transpose(2, 0, 3, 1, 4)
        attn = (qkv[0] * hd ** -0.5) @ qkv[1].transpose(0, 1, 3, 2)
        attn = attn + p[q + "attn.relative_position_bias_table"][index].transpose(2, 0, 1)[None]
        y = (np_softmax(attn) @ qkv[2]).transpose(0, 2, 1, 3).reshape(b, n, e)
        y = y @ p[q + "attn.proj.weight"].T + p[q + "attn.proj.bias"]
        x = x + p[q + "gamma_1"] * y
        y = np_layer_norm(x, p[q + "norm2.weight"], p[q + "norm2.bias"])
        y = np_gelu(y @ p[q + "mlp.fc1.weight"].T + p[q + "mlp.fc1.bias"])
        x = x + p[q + "gamma_2"] * (y @ p[q + "mlp.fc2.weight"].T + p[q + "mlp.fc2.bias"])
        if k + 1 in stage_blocks:
            stages.append(x)
    pooled = np_layer_norm(x[:, 1:].mean(1), p["fc_norm.weight"], p["fc_norm.bias"])
    return pooled @ p["head.weight"].T + p["head.bias"], stages, pooled


def test_small_beit_matches_timm_forward():
    """Random non-trivial weights (bias tables, layer scale, q/v biases) on a 4x4 patch grid."""
    stage_blocks = (1, 2, 3, 4)
    model = Beit(num_classes=5, image_size=32, patch_size=8, embed_dim=16, depth=4, num_heads=2,
                 stage_blocks=stage_blocks)
    model.set_train(False)
    rng = np.random.default_rng(0)
    params = {}
    for param in model.trainable_params():
        value = (rng.standard_normal(param.shape) * 0.3).astype(np.float32)
        param.set_data(Tensor(value))
        params[to_torch_name(param.name)] = value.astype(np.float64)
    x = rng.standard_normal((2, 3, 32, 32)).astype(np.float32)
    logits, stages, pooled = model.forward_with_stages(Tensor(x))
    ref_logits, ref_stages, ref_pooled = beit_reference(x.astype(np.float64), params, 4, 2, 8, stage_blocks)
    np.testing.assert_allclose(logits.asnumpy(), ref_logits, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(pooled.asnumpy(), ref_pooled, rtol=1e-4, atol=1e-4)
    for ours, ref in zip(stages, ref_stages):
        np.testing.assert_allclose(ours.asnumpy(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size", [32, 64])
def test_forward_with_stages(size, base32):
    if size == 32:
        model = base32
    else:
        model = create_model("beitv2_base", num_classes=10, image_size=size)
        model.set_train(False)
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, size, size)).astype(np.float32))
    logits, stages, pooled = model.forward_with_stages(x)
    assert isinstance(stages, tuple) and len(stages) == 4
    assert [tuple(s.shape) for s in stages] == [(2,) + shape for shape in model.stage_shapes()]
    assert tuple(pooled.shape) == (2, 768) and tuple(logits.shape) == (2, 10)
    np.testing.assert_allclose(model(x).asnumpy(), logits.asnumpy(), rtol=1e-6, atol=1e-6)
    # Stages are distinct blocks' outputs, the last one is the final block's.
    assert not np.allclose(stages[0].asnumpy(), stages[1].asnumpy())
    last = stages[3].asnumpy()[:, 1:].mean(1)
    np.testing.assert_allclose(model.fc_norm(Tensor(last)).asnumpy(), pooled.asnumpy(), rtol=1e-5, atol=1e-5)
