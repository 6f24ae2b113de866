"""CNN models: mindcv names, stage shapes (224 table and odd sizes), logits, the stem max-pool, errors.

Parameter counts and the graph-mode stage contract are checked for every model in test_models_contract.py.
"""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn
from mindcv.models import convnext as mindcv_convnext
from mindcv.models import mobilenetv2 as mindcv_mobilenetv2
from mindcv.models import resnet as mindcv_resnet
from mindcv.models.layers.drop_path import DropPath

from src.models import create_model

# Stage shapes at 224 px and pooled width of the OFA-KD reference (its hard-coded table for these models).
REFERENCE_224 = {
    "resnet18": ([(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)], 512),
    "resnet34": ([(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)], 512),
    "resnet50": ([(256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)], 2048),
    "mobilenetv2_100": ([(24, 56, 56), (32, 28, 28), (96, 14, 14), (1280, 7, 7)], 1280),
    "convnext_tiny": ([(96, 56, 56), (192, 28, 28), (384, 14, 14), (768, 7, 7)], 768),
}

NAMES = list(REFERENCE_224)
# 72 is odd at stride 16 -> 32 (9 -> 5 with 'same' padding, 4 with floor rounding).
FORWARD_SIZES = [32, 64, 112, 72]

_MODELS = {}


def built(name, num_classes=1000, **kwargs):
    """One eval-mode model per (name, options) for the whole module (building is the slow part)."""
    key = (name, num_classes, tuple(sorted(kwargs.items())))
    if key not in _MODELS:
        model = create_model(name, num_classes=num_classes, image_size=224, **kwargs)
        model.set_train(False)
        _MODELS[key] = model
    return _MODELS[key]


@pytest.fixture(scope="module", autouse=True)
def pynative_mode():
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=previous)


def random_images(batch, size, seed=0):
    h, w = size if isinstance(size, tuple) else (size, size)
    return Tensor(np.random.default_rng(seed).standard_normal((batch, 3, h, w)).astype(np.float32))


@pytest.mark.parametrize("name, mindcv_fn, kwargs", [
    ("resnet18", mindcv_resnet.resnet18, {}),
    ("mobilenetv2_100", mindcv_mobilenetv2.mobilenet_v2_100, {}),
    ("convnext_tiny", mindcv_convnext.convnext_tiny, dict(drop_path_rate=0.1)),
])
def test_parameter_names_and_shapes_are_mindcvs(name, mindcv_fn, kwargs):
    ours = {p.name: tuple(p.shape) for p in built(name, num_classes=10, **kwargs).get_parameters()}
    theirs = {p.name: tuple(p.shape) for p in mindcv_fn(num_classes=10).get_parameters()}
    assert ours == theirs


@pytest.mark.parametrize("name", NAMES)
def test_contract_attributes_and_224_table(name):
    model = built(name)
    shapes, dim = REFERENCE_224[name]
    assert [tuple(s) for s in model.stage_shapes(224)] == shapes
    assert [tuple(s) for s in model.stage_shapes()] == shapes  # defaults to model.image_size
    assert model.feature_dim == dim
    assert model.num_classes == 1000 and model.image_size == 224
    assert (model.family, model.stage_kind, model.num_prefix_tokens) == ("cnn", "conv", 0)


@pytest.mark.parametrize("name", NAMES)
def test_forward_with_stages_matches_stage_shapes(name):
    model = built(name)
    for size in FORWARD_SIZES:
        x = random_images(1, size)
        logits, stages, pooled = model.forward_with_stages(x)
        assert isinstance(stages, tuple) and len(stages) == 4
        got = [tuple(s.shape[1:]) for s in stages]
        assert got == [tuple(s) for s in model.stage_shapes(size)], f"{name} at {size}"
        assert tuple(pooled.shape) == (1, model.feature_dim)
        assert tuple(logits.shape) == (1, 1000)
    # construct and forward_with_stages are the same network (last size, eval mode).
    np.testing.assert_allclose(model(x).asnumpy(), logits.asnumpy(), rtol=1e-5, atol=1e-5)
    if name != "convnext_tiny":  # ConvNeXt's pooled is LayerNorm(mean), checked via logits above
        np.testing.assert_allclose(pooled.asnumpy(), stages[3].asnumpy().mean(axis=(2, 3)), rtol=1e-5, atol=1e-5)


def test_non_square_input():
    model = built("resnet18")
    _, stages, _ = model.forward_with_stages(random_images(1, (40, 56)))
    assert [tuple(s.shape[1:]) for s in stages] == [tuple(s) for s in model.stage_shapes((40, 56))]
    assert tuple(stages[0].shape[2:]) == (10, 14)


def test_dropout_defaults_and_options():
    # mindcv hard-codes Dropout(0.2) in MobileNetV2's head; ours defaults to none, like timm.
    default = built("mobilenetv2_100", num_classes=10)
    assert not any(isinstance(cell, nn.Dropout) for _, cell in default.cells_and_names())
    dropped = create_model("mobilenetv2_100", num_classes=10, drop_rate=0.2)
    assert [cell.p for _, cell in dropped.cells_and_names() if isinstance(cell, nn.Dropout)] == [0.2]
    convnext = built("convnext_tiny", num_classes=10, drop_path_rate=0.1)
    keeps = [float(cell.keep_prob) for _, cell in convnext.cells_and_names() if isinstance(cell, DropPath)]
    assert len(keeps) == 17 and min(keeps) == pytest.approx(0.9, abs=1e-6)  # linear 0..0.1, first block off


def test_unknown_model_raises_value_error():
    with pytest.raises(ValueError, match="resnet_unknown"):
        create_model("resnet_unknown")


@pytest.mark.parametrize("name, kwargs, message", [
    ("resnet18", dict(drop_path_rate=0.1), "drop_path_rate"),
    ("mobilenetv2_100", dict(foo=1), "foo"),
    ("resnet50", dict(drop_rate=1.0), "drop_rate"),
    ("convnext_tiny", dict(drop_path_rate=-0.1), "drop_path_rate"),
])
def test_bad_options_raise_value_error(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_model(name, num_classes=10, **kwargs)


@pytest.mark.parametrize("bad", [0, -5, "224", (32,)])
def test_bad_image_size_raises_value_error(bad):
    with pytest.raises(ValueError, match="image_size"):
        built("resnet18").stage_shapes(bad)
