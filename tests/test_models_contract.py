"""The model contract, for every model in the registry (src/models/base.py says what it is).

* the shapes a model claims (``stage_shapes``, ``feature_dim``, ``num_classes``) are the shapes its
  graph-mode ``forward_with_stages`` returns, for grayscale input (``in_channels=1``), and ``construct``
  gives the same logits;
* its descriptive attributes take allowed values;
* its trainable parameter count at 1000 classes and 224 px equals the reference model's, where one exists.

New registry models are picked up here without editing this file.
"""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn

from src.models import create_model, list_models
from src.models.base import FAMILIES, STAGE_KINDS

# Trainable parameters at 1000 classes, 224 px: timm's / torchvision's models of the same architecture
# (mobilenetv1: the OFA-KD authors' MobileNetV1).
REFERENCE_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenetv2_100": 3_504_872,
    "mobilenetv1": 4_231_976,
    "convnext_tiny": 28_589_128,
    "deit_tiny": 5_717_416,
    "deit_small": 22_050_664,
    "vit_small": 22_050_664,
    "vit_base": 86_567_656,
    "mixer_b16": 59_880_472,
    "resmlp_12": 15_350_872,
    "swin_tiny": 28_288_354,
    "swin_nano": 9_599_940,
    "swin_pico": 5_506_996,
    "beitv2_base": 86_530_984,
    "beitv2_large": 304_430_568,
}
# Deeper or wider variants of a class that is compiled in graph mode below: their contract is checked in
# PyNative, in the slow tier (compiling CycleMLP-B2..B5 takes 1.5 to 9 minutes each on 2 CPU cores).
PYNATIVE_ONLY = {"cyclemlp_b2", "cyclemlp_b3", "cyclemlp_b4", "cyclemlp_b5", "beitv2_large", "vit_base", "deit_small",
                 "vit_small", "resnet34", "resnet50", "swin_tiny", "swin_nano", "resmlp_12"}
# Graph-mode checks slower than ~10 s, in the slow tier; the fast tier compiles one small model of each class
# (resnet10, mobilenetv2_100, vit_p4_pico, resmlp_p4_pico, swin_pico) and any model not listed here.
KNOWN_SLOW_GRAPH = {"resnet18", "vit_p4_mini", "deit_tiny", "mixer_b16", "convnext_tiny", "beitv2_base", "cyclemlp_b1"}
SLOW_BUILD = {"vit_base", "beitv2_base", "beitv2_large", "mixer_b16"}
# 32 px: a 2x2 patch grid for patch-16 models; for Swin a first stage of 8x8 tokens padded to 2x2 windows.
SIZE, CLASSES, BATCH = 32, 5, 2


def _mark(names, slow):
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in names]


def _grayscale_model(name):
    ms.set_seed(0)
    model = create_model(name, num_classes=CLASSES, image_size=SIZE, in_channels=1)
    model.set_train(False)
    x = Tensor(np.random.default_rng(0).standard_normal((BATCH, 1, SIZE, SIZE)).astype(np.float32))
    return model, x


def _check_claims(model, logits, stages, pooled):
    claimed = [tuple(s) for s in model.stage_shapes()]
    assert claimed == [tuple(s) for s in model.stage_shapes(SIZE)] and len(claimed) == 4
    assert all(len(s) == (3 if model.stage_kind == "conv" else 2) for s in claimed)
    assert [tuple(s.shape) for s in stages] == [(BATCH,) + s for s in claimed]
    assert tuple(pooled.shape) == (BATCH, model.feature_dim)
    assert tuple(logits.shape) == (BATCH, CLASSES)
    assert np.isfinite(logits.asnumpy()).all()


class StagesOutput(nn.Cell):
    """What a distiller does: call forward_with_stages from another cell's construct."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def construct(self, x):
        return self.model.forward_with_stages(x)


def _check_attributes(model):
    assert model.family in FAMILIES and model.stage_kind in STAGE_KINDS
    assert model.num_classes == CLASSES and model.in_channels == 1
    assert model.num_prefix_tokens in (0, 1) and (model.num_prefix_tokens == 0 or model.stage_kind == "token")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PYNATIVE_ONLY & set(list_models())))
def test_claimed_shapes_are_returned_for_grayscale_input(name):
    model, x = _grayscale_model(name)
    _check_attributes(model)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    logits, stages, pooled = model.forward_with_stages(x)
    _check_claims(model, logits, stages, pooled)
    np.testing.assert_allclose(model(x).asnumpy(), logits.asnumpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", _mark([n for n in list_models() if n not in PYNATIVE_ONLY], KNOWN_SLOW_GRAPH))
def test_graph_mode_stages_equal_pynative(name):
    """Compiled as a distiller compiles it, forward_with_stages returns the claimed shapes and PyNative's values
    (``construct``'s logits: the two paths of the model agree across modes too)."""
    model, x = _grayscale_model(name)
    _check_attributes(model)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    eager_logits = model(x)
    _, eager_stages, _ = model.forward_with_stages(x)
    ms.set_context(mode=ms.GRAPH_MODE)
    logits, stages, pooled = StagesOutput(model)(x)
    _check_claims(model, logits, stages, pooled)
    for graph, eager in zip((logits,) + tuple(stages), (eager_logits,) + tuple(eager_stages)):
        scale = max(1.0, float(np.abs(eager.asnumpy()).max()))
        np.testing.assert_allclose(graph.asnumpy(), eager.asnumpy(), rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("name", _mark(sorted(set(REFERENCE_PARAMS) & set(list_models())), SLOW_BUILD))
def test_parameter_count_equals_the_reference(name):
    model = create_model(name, num_classes=1000, image_size=224)
    count = sum(int(np.prod(p.shape)) for p in model.trainable_params())
    assert count == REFERENCE_PARAMS[name]


@pytest.mark.parametrize("name", list_models())
def test_in_channels_is_checked(name):
    with pytest.raises(ValueError, match="in_channels must be 1 .* or 3"):
        create_model(name, num_classes=CLASSES, image_size=SIZE, in_channels=2)
