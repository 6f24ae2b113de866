"""The inference form of a frozen teacher (src/models/fold_bn.py) computes what the unfolded network computes.

Every CNN of the registry with BatchNorm is compared, folded against unfolded, on logits and the four
stage features (slow tier; ResNet-10 in the fast tier), with BatchNorm statistics and affines drawn far
from their initial values so that a wrong fold cannot hide behind gamma = 1, beta = 0, mean = 0, var = 1.
ConvNeXt-T (LayerNorm only) has nothing to fold.
"""
import os

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn

from benchmarks.op_profile import profile_calls
from src.teacher import FrozenTeacher
from src.models import create_model, list_models
from src.models.fold_bn import batchnorm_affine, fold_batchnorm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 32
# the registry's CNNs (family "cnn"); test_registry_cnns_are_all_listed keeps this list complete
CNNS = ("resnet10", "resnet18", "resnet34", "resnet50", "mobilenetv2_100", "mobilenetv1", "convnext_tiny")
# models without a BatchNorm after a convolution: nothing to fold (ConvNeXt normalises with LayerNorm)
NO_BATCHNORM = ("convnext_tiny",)


def trained_like(name, seed=0):
    """Two instances of ``name`` with the same parameters, BatchNorm statistics and affines randomised."""
    rng = np.random.default_rng(seed)
    a = create_model(name, num_classes=10, image_size=SIZE)
    b = create_model(name, num_classes=10, image_size=SIZE)
    for param in a.get_parameters():
        leaf = param.name.rsplit(".", 1)[-1]
        if leaf in ("moving_variance", "gamma"):
            param.set_data(Tensor(rng.uniform(0.3, 3.0, param.shape).astype(np.float32)))
        elif leaf in ("moving_mean", "beta"):
            param.set_data(Tensor(rng.normal(0.0, 0.5, param.shape).astype(np.float32)))
    values = {p.name: p.asnumpy() for p in a.get_parameters()}
    for param in b.get_parameters():
        param.set_data(Tensor(values[param.name]))
    a.set_train(False)
    return a, b


def images(seed=1, batch=2):
    return Tensor(np.random.default_rng(seed).standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32))


def assert_same_outputs(unfolded, folded, x):
    """Logits, stages and pooled feature equal within float32 rounding (1e-5 of each output's scale)."""
    ref, out = unfolded.forward_with_stages(x), folded.forward_with_stages(x)
    pairs = [(ref[0], out[0], "logits"), (ref[2], out[2], "pooled")]
    pairs += [(r, o, f"stage {i + 1}") for i, (r, o) in enumerate(zip(ref[1], out[1]))]
    for r, o, what in pairs:
        r, o = r.asnumpy(), o.asnumpy()
        scale = float(np.abs(r).max())
        assert scale > 0, what
        np.testing.assert_allclose(o, r, rtol=0, atol=1e-5 * scale, err_msg=what)


def test_registry_cnns_are_all_listed():
    from src.models import registry

    cnn_named = {n for n in list_models() if n.startswith(("resnet", "mobilenet", "convnext"))}
    assert cnn_named == set(CNNS), "a CNN was added to the registry: add it to CNNS"
    assert all(name in registry.list_models() for name in CNNS)


def test_batchnorm_affine_is_the_eval_mode_batchnorm():
    bn = nn.BatchNorm2d(3, eps=1e-3)
    bn.gamma.set_data(Tensor(np.array([0.5, 2.0, -1.0], np.float32)))
    bn.beta.set_data(Tensor(np.array([0.1, -0.2, 0.3], np.float32)))
    bn.moving_mean.set_data(Tensor(np.array([1.0, -1.0, 0.5], np.float32)))
    bn.moving_variance.set_data(Tensor(np.array([4.0, 0.25, 1.0], np.float32)))
    bn.set_train(False)
    x = np.random.default_rng(0).standard_normal((2, 3, 4, 4)).astype(np.float32)
    scale, shift = batchnorm_affine(bn)
    expected = x * scale.reshape(1, 3, 1, 1) + shift.reshape(1, 3, 1, 1)
    np.testing.assert_allclose(bn(Tensor(x)).asnumpy(), expected, rtol=1e-5, atol=1e-5)


def test_folded_resnet10_equals_unfolded_with_the_layers_names():
    """The fast-tier case: folded ResNet-10 = unfolded; conv weights keep their names, each gets a bias
    beside it, the BatchNorm parameters are gone and nothing requires a gradient."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    unfolded, folded = trained_like("resnet10")
    before = {p.name for p in folded.get_parameters()}
    report = fold_batchnorm(folded)
    assert report.folded == 12 and report.left == ()
    names = {p.name for p in folded.get_parameters()}
    assert {n for n in before if ".bn" not in n and not n.startswith("bn1") and "down_sample.1" not in n} <= names
    assert "layer1.0.conv1.bias" in names and not any("moving_" in n or "gamma" in n for n in names)
    assert not any(p.requires_grad for p in folded.get_parameters())
    assert fold_batchnorm(folded).folded == 0  # a second call finds nothing more
    assert_same_outputs(unfolded, folded, images())


def test_dense_then_batchnorm1d_folds_and_a_dense_with_an_activation_does_not():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(0)

    def head(activation=None):
        net = nn.SequentialCell([nn.Dense(6, 4, activation=activation), nn.BatchNorm1d(4)])
        net[1].moving_mean.set_data(Tensor(rng.normal(0, 1, 4).astype(np.float32)))
        net[1].moving_variance.set_data(Tensor(rng.uniform(0.5, 2, 4).astype(np.float32)))
        net[1].gamma.set_data(Tensor(rng.uniform(0.5, 2, 4).astype(np.float32)))
        net.set_train(False)
        return net

    x = Tensor(rng.standard_normal((3, 6)).astype(np.float32))
    net = head()
    expected = net(x).asnumpy()
    assert fold_batchnorm(net).folded == 1 and isinstance(net[1], nn.Identity)
    np.testing.assert_allclose(net(x).asnumpy(), expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    relu_head = head("relu")
    report = fold_batchnorm(relu_head)
    assert report.folded == 0 and report.left == ("1",) and "1 left as eval-mode BatchNorm" in report.describe()


def test_frozen_teacher_folds_by_default_and_keeps_the_unfolded_form_on_request():
    net = create_model("resnet10", num_classes=10, image_size=SIZE)
    assert FrozenTeacher(net).fold_report.folded == 12
    assert not any(isinstance(cell, nn.BatchNorm2d) for _, cell in net.cells_and_names())
    kept = create_model("resnet10", num_classes=10, image_size=SIZE)
    assert FrozenTeacher(kept, fold_bn=False).fold_report is None
    assert any(isinstance(cell, nn.BatchNorm2d) for _, cell in kept.cells_and_names())


@pytest.mark.slow  # graph compile + MindSpore's profiler
def test_compiled_folded_forward_runs_no_batchnorm_and_no_assign_kernel():
    """An inference graph writes no state: no BatchNorm (its moving statistics are writable inputs) and no
    Assign (which an in-place ``out += identity`` in a residual block compiles to) in the unfolded ResNet's
    eval forward either, since the blocks add out of place."""
    ms.set_context(mode=ms.GRAPH_MODE)
    unfolded, folded = trained_like("resnet10")
    fold_batchnorm(folded)
    x = images()
    for net, banned in ((unfolded, {"Assign", "AssignAdd"}), (folded, {"Assign", "AssignAdd", "BatchNorm"})):
        forward = _Logits(net)
        forward.set_train(False)
        forward(x)  # compile before profiling
        rows, _ = profile_calls(lambda: forward(x).asnumpy(), 1)
        kernels = {op_type for op_type, _, _, _ in rows}
        assert "Conv2D" in kernels and not kernels & banned, kernels


class _Logits(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x):
        return self.net(x)


@pytest.mark.slow  # every CNN of the registry with BatchNorm, 32 px, batch 2, in PyNative (about 45 s in all)
@pytest.mark.parametrize("name", [n for n in CNNS if n not in NO_BATCHNORM])
def test_every_registry_cnn_folded_equals_unfolded(name):
    """ConvNeXt-T is left out: it has no BatchNorm, so folding leaves it untouched (nothing to compare)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    unfolded, folded = trained_like(name)
    batchnorms = sum(isinstance(c, nn.BatchNorm2d) for _, c in unfolded.cells_and_names())
    report = fold_batchnorm(folded)
    assert batchnorms > 0 and report.folded == batchnorms and report.left == ()
    assert_same_outputs(unfolded, folded, images())


@pytest.mark.slow  # two MINDIR exports, each loaded back and run (about 20 s)
def test_export_folds_batchnorm_into_the_mindir_and_checks_it_against_the_checkpoint(tmp_path, capsys):
    import export

    _, net = trained_like("resnet10")
    ckpt = str(tmp_path / "student.ckpt")
    ms.save_checkpoint(net, ckpt)
    common = ["--config", os.path.join(ROOT, "configs", "fashion_mnist", "base.yaml"), "student=resnet10", "in_channels=3", "num_classes=10",
              f"image_size={SIZE}", "--checkpoint", ckpt, "--batch_size", "2"]
    sizes = {}
    for flag, name in (([], "folded"), (["--no-fold_bn"], "unfolded")):
        assert export.main(common + flag + ["--file_name", str(tmp_path / name)]) == 0
        out = capsys.readouterr().out
        assert ("12 BatchNorm layer(s) folded" in out) == (name == "folded")
        diff = float(out.split("max abs difference to the checkpointed network")[1].split()[0])
        assert diff <= 1e-4, (name, diff)  # export.py's default --tolerance
        sizes[name] = (tmp_path / f"{name}.mindir").read_bytes()
    assert b"BatchNorm" in sizes["unfolded"] and b"BatchNorm" not in sizes["folded"]
