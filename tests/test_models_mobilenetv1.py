"""MobileNetV1 (the OFA-KD authors' ImageNet "MobileNetV2" student): size, stages, exit branches, errors."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor

from src.distill import build_branch, build_distiller
from src.models import create_model
from src.models.mobilenetv1 import BLOCK_STRIDES, BLOCK_WIDTHS


def trainable_count(cell):
    return sum(int(np.prod(p.shape)) for p in cell.trainable_params())


def authors_param_count(num_classes, in_channels=3):
    """Parameters of the authors' model, counted from the architecture description."""
    total = in_channels * 32 * 9 + 2 * 32  # stem conv + BN
    width = 32
    for out in BLOCK_WIDTHS:
        total += width * 9 + 2 * width + width * out + 2 * out  # dw conv + BN + pw conv + BN
        width = out
    return total + 1024 * num_classes + num_classes


def sep_conv_params(c_in, c_out):
    """The OFA branch SepConv: dw3x3, 1x1 c_in->c_in, BN, dw3x3, 1x1 c_in->c_out, BN (no biases)."""
    return 9 * c_in + c_in * c_in + 2 * c_in + 9 * c_in + c_in * c_out + 2 * c_out


def authors_branch_counts(stage_channels, width, num_classes):
    """The authors' CNN branch rule: ``4 - stage`` SepConvs doubling channels (last to ``width``), stage 4 a
    1x1 conv with bias; then pool and Linear(width, classes)."""
    counts = []
    for stage, c_in in enumerate(stage_channels, start=1):
        if stage == 4:
            body = c_in * width + width
        else:
            chans = [c_in * 2 ** k for k in range(4 - stage)] + [width]
            body = sum(sep_conv_params(a, b) for a, b in zip(chans[:-1], chans[1:]))
        counts.append(body + width * num_classes + num_classes)
    return tuple(counts)


@pytest.fixture(autouse=True)
def pynative_mode():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield


def test_parameter_count_is_the_authors():
    net = create_model("mobilenetv1", num_classes=1000)
    assert trainable_count(net) == authors_param_count(1000) == 4_231_976
    # unlike the authors' factory, num_classes is honoured
    assert trainable_count(create_model("mobilenetv1", num_classes=100)) == authors_param_count(100)
    assert len(BLOCK_WIDTHS) == len(BLOCK_STRIDES) == 13


def test_parameter_names_follow_the_authors_layout():
    names = {p.name for p in create_model("mobilenetv1", num_classes=10).get_parameters()}
    assert {"model.0.0.weight", "model.0.1.gamma", "model.1.0.weight", "model.1.3.weight", "model.13.4.moving_mean",
            "fc.weight", "fc.bias"} <= names
    assert not any(n.startswith("model.14") for n in names)


@pytest.mark.parametrize("size,expected", [
    (224, [(128, 56, 56), (256, 28, 28), (512, 14, 14), (1024, 7, 7)]),
    (160, [(128, 40, 40), (256, 20, 20), (512, 10, 10), (1024, 5, 5)]),
    (100, [(128, 25, 25), (256, 13, 13), (512, 7, 7), (1024, 4, 4)]),  # odd sizes round up (padding 1)
])
def test_stage_shapes(size, expected):
    net = create_model("mobilenetv1", num_classes=10, image_size=size)
    assert net.stage_shapes() == expected and net.feature_dim == 1024
    assert net.stage_kind == "conv" and net.family == "cnn"


@pytest.mark.parametrize("size", [32, 72])
def test_forward_gives_the_shapes_it_claims_and_pre_activation_stages(size):
    net = create_model("mobilenetv1", num_classes=7, image_size=size)
    net.set_train(False)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32))
    logits, stages, pooled = net.forward_with_stages(x)
    assert logits.shape == (2, 7) and pooled.shape == (2, 1024)
    assert [tuple(s.shape[1:]) for s in stages] == net.stage_shapes(size)
    # stages are read before the block's last ReLU: they carry negative values, the pooled map does not
    assert all(float(s.min().asnumpy()) < 0 for s in stages) and float(pooled.min().asnumpy()) >= 0
    assert np.allclose(logits.asnumpy(), net(x).asnumpy(), atol=1e-6)


@pytest.mark.slow  # a GRAPH_MODE compile: ~6-18 s on 2 shared cores
def test_graph_mode_forward_matches_pynative():
    net = create_model("mobilenetv1", num_classes=5, image_size=32)
    net.set_train(False)
    x = Tensor(np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32))
    eager = [t.asnumpy() for t in (net.forward_with_stages(x)[0],) + tuple(net.forward_with_stages(x)[1])]
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        logits, stages, _ = net.forward_with_stages(x)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    for got, want in zip((logits,) + tuple(stages), eager):
        np.testing.assert_allclose(got.asnumpy(), want, rtol=1e-5, atol=1e-5)


def test_one_input_channel():
    net = create_model("mobilenetv1", num_classes=10, image_size=32, in_channels=1)
    assert trainable_count(net) == authors_param_count(10, in_channels=1)
    assert net(Tensor(np.zeros((2, 1, 32, 32), np.float32))).shape == (2, 10)


# Branch parameters of the authors' code for this student: every paper teacher (DeiT-T 192, Swin-T 768,
# Mixer-B/16 768) is narrower than the student's 1024, so the branch width is 1024 for all of them.
BRANCHES_1000 = (2_078_696, 2_026_472, 1_823_720, 2_074_600)  # total 8,003,488


@pytest.mark.parametrize("teacher_dim", [192, 768])
def test_ofa_branch_parameter_counts(teacher_dim):
    net = create_model("mobilenetv1", num_classes=1000, image_size=224)
    shapes = net.stage_shapes()
    counts = tuple(trainable_count(build_branch(net, s, shapes[s - 1], teacher_dim, 1000)) for s in (1, 2, 3, 4))
    assert counts == BRANCHES_1000 == authors_branch_counts((128, 256, 512, 1024), 1024, 1000)
    assert sum(counts) == 8_003_488


def test_distillers_build_on_it():
    student = create_model("mobilenetv1", num_classes=1000, image_size=224)
    teacher = create_model("deit_tiny", num_classes=1000, image_size=224)
    ofa = build_distiller("ofa", student, teacher, num_classes=1000)
    assert trainable_count(ofa.branches) == sum(BRANCHES_1000)
    rsd = build_distiller("rsd", student, teacher, num_classes=1000)
    assert trainable_count(rsd.branches) == 1024 * 2048 + 2 * 2048 + 2048 * 192


@pytest.mark.parametrize("kwargs,match", [(dict(drop_path_rate=0.1), "no stochastic depth"),
                                          (dict(width_mult=0.5), "unknown option")])
def test_bad_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("mobilenetv1", **kwargs)
