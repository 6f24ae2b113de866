"""Checkpoints of another input size or of RGB input, loaded into a model: adapted, or refused in one line.

timm parity of the resampling itself is checked in test_convert.py (it needs PyTorch); here the
properties that need no other framework.
"""
import numpy as np
import pytest
from mindspore import Tensor

from src.checkpoint import load_model_checkpoint, save_atomic
from src.models import create_model
from src.models.resize import bicubic_antialias_matrix, resample_pos_embed


def randomised(name, size, in_channels=3, seed=0):
    model = create_model(name, num_classes=4, image_size=size, in_channels=in_channels)
    rng = np.random.default_rng(seed)
    for p in model.get_parameters():
        if p.name.endswith(("moving_variance", "gamma")):
            p.set_data(Tensor((1.0 + 0.1 * rng.random(p.shape)).astype(np.float32)))
        else:
            p.set_data(Tensor((0.1 * rng.standard_normal(p.shape)).astype(np.float32)))
    model.set_train(False)
    return model


@pytest.mark.parametrize("old,new", [(14, 7), (7, 14), (8, 8), (3, 10)])
def test_resampling_weights_are_normalised_and_identity_at_the_same_size(old, new):
    matrix = bicubic_antialias_matrix(old, new)
    assert matrix.shape == (new, old)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    if old == new:
        np.testing.assert_array_equal(matrix, np.eye(old))


def test_resampled_pos_embed_keeps_the_prefix_and_a_constant_grid():
    pos = np.random.default_rng(0).standard_normal((1, 1 + 16, 3)).astype(np.float32)
    pos[:, 1:] = 2.5  # a constant field stays constant under a normalised filter
    out = resample_pos_embed(pos, 7, num_prefix_tokens=1)
    assert out.shape == (1, 1 + 49, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, 0], pos[:, 0])
    np.testing.assert_allclose(out[:, 1:], 2.5, rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="not \\[1, 1 \\+ a square grid"):
        resample_pos_embed(pos[:, :15], 7)


def test_vit_checkpoint_loads_at_another_size(tmp_path):
    path = str(tmp_path / "vit32.ckpt")
    source = randomised("vit_p4_pico", 32)
    save_atomic(source, path)
    model = create_model("vit_p4_pico", num_classes=4, image_size=64)
    load_model_checkpoint(model, path)
    assert tuple(model.pos_embed.shape) == (1, 257, 96)
    np.testing.assert_array_equal(model.pos_embed.asnumpy()[:, 0], source.pos_embed.asnumpy()[:, 0])
    np.testing.assert_array_equal(model.blocks[3].mlp.fc1.weight.asnumpy(), source.blocks[3].mlp.fc1.weight.asnumpy())


def test_token_mixing_checkpoint_at_another_size_is_refused(tmp_path):
    path = str(tmp_path / "resmlp32.ckpt")
    save_atomic(randomised("resmlp_p4_pico", 32), path)
    with pytest.raises(ValueError, match=r"resmlp32\.ckpt': 'blocks\.0\.linear_tokens\.weight' mixes 64 tokens "
                                         r"\(8x8 patches, 32 px\).*build the model at 32 px"):
        load_model_checkpoint(create_model("resmlp_p4_pico", num_classes=4, image_size=16), path)


def test_swin_tables_load_at_sizes_with_the_same_windows_and_are_refused_otherwise(tmp_path):
    # window 4: every multiple of 32 from 128 px up keeps window 4 in all stages (160 px pads stages 3, 4)
    path = str(tmp_path / "swin128.ckpt")
    save_atomic(create_model("swin_pico", num_classes=4, image_size=128, window_size=4), path)
    load_model_checkpoint(create_model("swin_pico", num_classes=4, image_size=160, window_size=4), path)
    with pytest.raises(ValueError, match=r"'layers\.3\.blocks\.0\.attn\.relative_position_bias_table' has shape "
                                         r"\(49, 16\), this model \(96 px\) expects \(25, 16\): Swin's relative-"
                                         r"position tables follow the stage windows, which shrink below 128 px"):
        load_model_checkpoint(create_model("swin_pico", num_classes=4, image_size=96, window_size=4), path)


@pytest.mark.parametrize("name", ["resnet10", "vit_p4_pico"])
def test_rgb_checkpoint_in_a_grayscale_model_sees_gray_as_rgb_does(name, tmp_path):
    """The RGB kernel summed over its channels: a gray image gives what the RGB model gives for it in R, G, B."""
    path = str(tmp_path / "rgb.ckpt")
    rgb = randomised(name, 32, seed=2)
    save_atomic(rgb, path)
    gray = create_model(name, num_classes=4, image_size=32, in_channels=1)
    load_model_checkpoint(gray, path)
    gray.set_train(False)
    x = np.random.default_rng(3).standard_normal((2, 1, 32, 32)).astype(np.float32)
    expected = rgb(Tensor(np.repeat(x, 3, axis=1))).asnumpy()
    np.testing.assert_allclose(gray(Tensor(x)).asnumpy(), expected, rtol=1e-4, atol=1e-5)
