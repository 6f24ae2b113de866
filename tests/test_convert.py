"""Checkpoint converter: timm / authors' PyTorch state dicts -> our MindSpore models, checked by parity.

Parity tests build the PyTorch model (timm's, or for CycleMLP a transcription of the authors' modules)
with random weights, save its state dict (.pth, and .safetensors for some), convert it with the library,
load the .ckpt the way eval.py does, and compare logits (max abs diff < 1e-4, float32) and stage
features on the same input. They need PyTorch and timm (test-only dependencies) and skip without them.
Most refusal tests need neither: they use state dicts made from our own parameter names.
"""
import argparse
import gc
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from mindspore import Tensor

from benchmarks.timm_twin import import_timm
from src.convert import (LAYOUTS, TORCH_MISSING, convert_checkpoint, convert_state_dict, infer_num_classes,
                         map_state_dict, read_state_dict, unwrap_state_dict)
from src.convert.rules import mindspore_leaf
from src.checkpoint import load_model_checkpoint
from src.models import create_model, list_models
from src.models.resize import resample_pos_embed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOGIT_TOL = 1e-4  # the required bound on logits (float32)
# A faithful port differs by ~1e-6 of the largest value (measured: <= 5e-6 over all archs, logits and
# stages); 1e-5 still fails a tanh-approximated GELU in place of timm's erf GELU (ConvNeXt: 3e-5 to 5e-5).
RELATIVE_TOL = 1e-5


# ---------------------------------------------------------------- test-only PyTorch / timm setup

@pytest.fixture(scope="session")
def torch():
    return pytest.importorskip("torch", reason="needs PyTorch (test-only): pip install torch==2.13.0 (CPU)")


@pytest.fixture(scope="session")
def save_safetensors():
    return pytest.importorskip("safetensors.numpy", reason="needs safetensors: pip install safetensors").save_file


@pytest.fixture(scope="session")
def timm(torch):
    try:
        return import_timm()  # with a stand-in for torchvision, which timm imports but does not need here
    except ImportError:
        pytest.skip("converter parity tests need timm: pip install --no-deps timm==1.0.31")


def randomise(torch, model, seed=0):
    """Give every tensor a value a wrong mapping would show: random BN statistics, and noise on tensors
    initialised constant or near zero (layer scales, zero heads, q/v biases, cls tokens); relative
    position tables get unit-scale values so a wrong index changes the attention."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
            if not tensor.is_floating_point() or name.endswith("offset"):
                continue
            noise = torch.randn(tensor.shape, generator=gen)
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 1.5 + 0.5)
            elif name.endswith("running_mean"):
                tensor.copy_(noise * 0.2)
            elif name.endswith("relative_position_bias_table"):
                tensor.copy_(noise)
            elif tensor.numel() == 1 or float(tensor.std()) < 1e-3:
                tensor.add_(noise * 0.2)
    return model.eval()


# ---------------------------------------------------------------- CycleMLP in PyTorch (authors' layout)

def torch_cyclemlp(torch, arch, num_classes):
    """The authors' CycleNet (cycle_mlp.py) transcribed; CycleFC's deform_conv2d with a 1x1 kernel and
    integer offsets is written as a gather of each channel at its offset (zero outside the image)."""
    from src.models.cyclemlp import CYCLEMLP_CONFIGS

    nn, F = torch.nn, torch.nn.functional
    layers, dims, ratios = CYCLEMLP_CONFIGS[arch]

    class Mlp(nn.Module):
        def __init__(self, dim, hidden, out):
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class CycleFC(nn.Module):
        def __init__(self, channels, kernel_size):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(channels, channels, 1, 1) * 0.05)
            self.bias = nn.Parameter(torch.randn(channels) * 0.05)
            offset = torch.zeros(1, 2 * channels, 1, 1)  # the authors' gen_offset: (dy, dx) per channel
            start = (kernel_size[0] * kernel_size[1]) // 2
            for i in range(channels):
                if kernel_size[0] == 1:
                    offset[0, 2 * i + 1] = (i + start) % kernel_size[1] - kernel_size[1] // 2
                else:
                    offset[0, 2 * i] = (i + start) % kernel_size[0] - kernel_size[0] // 2
            self.register_buffer("offset", offset)

        def forward(self, x):  # [B, C, H, W]
            _, c, h, w = x.shape
            dy, dx = self.offset[0, 0::2, 0, 0].long(), self.offset[0, 1::2, 0, 0].long()
            rows = torch.arange(h)[None, :] + dy[:, None]
            cols = torch.arange(w)[None, :] + dx[:, None]
            inside = (((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]).float()
            sampled = x[:, torch.arange(c)[:, None, None], rows.clamp(0, h - 1)[:, :, None],
                        cols.clamp(0, w - 1)[:, None, :]] * inside
            return F.conv2d(sampled, self.weight, self.bias)

    class CycleMixer(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.mlp_c = nn.Linear(dim, dim, bias=False)
            self.sfc_h, self.sfc_w = CycleFC(dim, (1, 3)), CycleFC(dim, (3, 1))
            self.reweight = Mlp(dim, dim // 4, dim * 3)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            b, _, _, c = x.shape
            h = self.sfc_h(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            w = self.sfc_w(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
            ch = self.mlp_c(x)
            a = (h + w + ch).permute(0, 3, 1, 2).flatten(2).mean(2)
            a = self.reweight(a).reshape(b, c, 3).permute(2, 0, 1).softmax(dim=0).unsqueeze(2).unsqueeze(2)
            return self.proj(h * a[0] + w * a[1] + ch * a[2])

    class CycleBlock(nn.Module):
        def __init__(self, dim, ratio):
            super().__init__()
            self.norm1, self.attn = nn.LayerNorm(dim), CycleMixer(dim)
            self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, int(dim * ratio), dim)

        def forward(self, x):
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class Downsample(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.proj = nn.Conv2d(cin, cout, 3, 2, 1)

        def forward(self, x):
            return self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    class PatchEmbed(nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = nn.Conv2d(3, dims[0], 7, 4, 2)

    class CycleNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.patch_embed = PatchEmbed()
            network = []
            for i in range(4):
                network.append(nn.Sequential(*[CycleBlock(dims[i], ratios[i]) for _ in range(layers[i])]))
                if i < 3:
                    network.append(Downsample(dims[i], dims[i + 1]))
            self.network = nn.ModuleList(network)
            self.norm, self.head = nn.LayerNorm(dims[-1]), nn.Linear(dims[-1], num_classes)

        def forward(self, x):
            x = self.patch_embed.proj(x).permute(0, 2, 3, 1)
            for cell in self.network:
                x = cell(x)
            return self.head(self.norm(x.reshape(x.shape[0], -1, x.shape[-1])).mean(1))

    return CycleNet()


# ---------------------------------------------------------------- MobileNetV1 in PyTorch (authors' layout)

def torch_mobilenetv1(num_classes):
    """The OFA-KD authors' MobileNetV1, written from its description: ``model.0`` conv 3x3/2 (32) + BN + ReLU,
    ``model.1..13`` depthwise-separable blocks, ``model.14`` a 7x7 average pool (so 224 px only), ``fc``.
    (ReLUs not in place, so the hooks read each BN output before the ReLU after it.)"""
    import torch

    nn = torch.nn
    widths = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    strides = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)

    def conv_bn(c_in, c_out, stride):
        return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())

    def conv_dw(c_in, c_out, stride):
        return nn.Sequential(nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False), nn.BatchNorm2d(c_in),
                             nn.ReLU(), nn.Conv2d(c_in, c_out, 1, 1, 0, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())

    class MobileNetV1(nn.Module):
        def __init__(self):
            super().__init__()
            layers, width = [conv_bn(3, 32, 2)], 32
            for out, stride in zip(widths, strides):
                layers.append(conv_dw(width, out, stride))
                width = out
            self.model = nn.Sequential(*layers, nn.AvgPool2d(7))
            self.fc = nn.Linear(1024, num_classes)

        def forward(self, x):
            return self.fc(self.model(x).reshape(-1, 1024))

    return MobileNetV1()


# ---------------------------------------------------------------- the PyTorch model of each arch

def _timm_small(timm, kind, **kwargs):
    from timm.models import mlp_mixer, resnet, swin_transformer, vision_transformer

    if kind == "resnet10":
        return resnet.ResNet(block=resnet.BasicBlock, layers=(1, 1, 1, 1), **kwargs)
    if kind == "vit":
        return vision_transformer.VisionTransformer(**kwargs)
    if kind == "resmlp":
        from functools import partial
        return mlp_mixer.MlpMixer(block_layer=partial(mlp_mixer.ResBlock, init_values=0.1),
                                  norm_layer=mlp_mixer.Affine, mlp_ratio=4, **kwargs)
    if kind == "swin":
        return swin_transformer.SwinTransformer(patch_size=4, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16),
                                                **kwargs)
    raise ValueError(kind)


# arch -> (how to build the PyTorch model, image size, kwargs for our model). Sizes are the smallest the
# architecture allows in both frameworks; swin_tiny runs at its real 224 / window 7 configuration.
CASES = {
    "resnet10": (lambda t, n: _timm_small(t, "resnet10", num_classes=n), 64, {}),
    "resnet18": (lambda t, n: t.create_model("resnet18", num_classes=n), 64, {}),
    "resnet34": (lambda t, n: t.create_model("resnet34", num_classes=n), 64, {}),
    "resnet50": (lambda t, n: t.create_model("resnet50", num_classes=n), 64, {}),
    "mobilenetv2_100": (lambda t, n: t.create_model("mobilenetv2_100", num_classes=n), 64, {}),
    "mobilenetv1": (lambda t, n: torch_mobilenetv1(n), 224, {}),  # the authors' fixed 7x7 pool needs 224 px
    "convnext_tiny": (lambda t, n: t.create_model("convnext_tiny", num_classes=n), 64, {}),
    "deit_tiny": (lambda t, n: t.create_model("deit_tiny_patch16_224", num_classes=n, img_size=32), 32, {}),
    "deit_small": (lambda t, n: t.create_model("deit_small_patch16_224", num_classes=n, img_size=32), 32, {}),
    "vit_small": (lambda t, n: t.create_model("vit_small_patch16_224", num_classes=n, img_size=32), 32, {}),
    "vit_base": (lambda t, n: t.create_model("vit_base_patch16_224", num_classes=n, img_size=32), 32, {}),
    "vit_p4_pico": (lambda t, n: _timm_small(t, "vit", img_size=32, patch_size=4, embed_dim=96, depth=6,
                                             num_heads=3, num_classes=n), 32, {}),
    "vit_p4_mini": (lambda t, n: _timm_small(t, "vit", img_size=32, patch_size=4, embed_dim=192, depth=6,
                                             num_heads=3, num_classes=n), 32, {}),
    "mixer_b16": (lambda t, n: t.create_model("mixer_b16_224", num_classes=n, img_size=32), 32, {}),
    "resmlp_12": (lambda t, n: t.create_model("resmlp_12_224", num_classes=n, img_size=32), 32, {}),
    "resmlp_p4_pico": (lambda t, n: _timm_small(t, "resmlp", img_size=32, patch_size=4, embed_dim=128,
                                                num_blocks=6, num_classes=n), 32, {}),
    "swin_tiny": (lambda t, n: t.create_model("swin_tiny_patch4_window7_224", num_classes=n), 224, {}),
    "swin_nano": (lambda t, n: _timm_small(t, "swin", img_size=64, window_size=4, embed_dim=64,
                                           num_classes=n), 64, {"window_size": 4}),
    "swin_pico": (lambda t, n: _timm_small(t, "swin", img_size=64, window_size=4, embed_dim=48,
                                           num_classes=n), 64, {"window_size": 4}),
    "beitv2_base": (lambda t, n: t.create_model("beitv2_base_patch16_224", num_classes=n, img_size=32), 32, {}),
    "beitv2_large": (lambda t, n: t.create_model("beitv2_large_patch16_224", num_classes=n, img_size=32), 32, {}),
}
for _arch in ("cyclemlp_b1", "cyclemlp_b2", "cyclemlp_b3", "cyclemlp_b4", "cyclemlp_b5"):
    CASES[_arch] = (None, 64, {})
# Saved as .safetensors (no PyTorch needed to read them); the rest as .pth in various wrappings.
SAFETENSORS_ARCHS = ("resnet18", "deit_tiny", "swin_nano", "cyclemlp_b1")
# The fast tier converts one small model per kind of layout (CNN, MobileNet, ViT, Swin, MLP, CycleMLP); the slow tier every architecture.
FAST_ARCHS = ("resnet10", "mobilenetv2_100", "vit_p4_pico", "swin_pico", "resmlp_p4_pico", "cyclemlp_b1")


def torch_stage_modules(arch, pt_model):
    """(module, to_ours) pairs whose outputs are stage features 1..4 in our layout; for the models whose
    stages are chosen block outputs (ViT, BEiT, Mixer, ResMLP) every block, picked later by ``pick_stages``."""
    def tokens(x):  # timm Swin stages are [B, H, W, C]; ours [B, H*W, C]
        return x.reshape(x.shape[0], -1, x.shape[-1])

    def channels_first(x):  # CycleMLP stages are [B, H, W, C]; ours [B, C, H, W]
        return x.permute(0, 3, 1, 2)

    same = (lambda x: x)
    if arch.startswith("resnet"):
        return [(getattr(pt_model, f"layer{i}"), same) for i in range(1, 5)]
    if arch == "mobilenetv2_100":  # ends of the stride-4, 8, 16 stages, then the head conv's BN + ReLU6
        return [(pt_model.blocks[1], same), (pt_model.blocks[2], same), (pt_model.blocks[4], same),
                (pt_model.bn2, same)]
    if arch == "mobilenetv1":  # blocks 3, 5, 11, 13 before their last ReLU: the output of their second BN
        return [(pt_model.model[i][4], same) for i in (3, 5, 11, 13)]
    if arch == "convnext_tiny":
        return [(stage, same) for stage in pt_model.stages]
    if arch.startswith("swin"):
        return [(layer, tokens) for layer in pt_model.layers]
    if arch.startswith("cyclemlp"):
        return [(pt_model.network[i], channels_first) for i in (0, 2, 4, 6)]
    return [(block, same) for block in pt_model.blocks]


def pick_stages(outputs, our_model):
    blocks = getattr(our_model, "stage_blocks", None)
    return outputs if blocks is None else [outputs[b - 1] for b in blocks]


def torch_forward(torch, arch, pt_model, images):
    """Logits of the PyTorch model and the outputs of ``torch_stage_modules``, in our layout."""
    captured = []
    handles = [module.register_forward_hook(lambda _m, _i, out, f=fn: captured.append(f(out).detach().numpy()))
               for module, fn in torch_stage_modules(arch, pt_model)]
    with torch.no_grad():
        logits = pt_model(torch.from_numpy(images)).numpy()
    for handle in handles:
        handle.remove()
    return logits, captured


def save_source(torch, arch, state, path_stem, save_safetensors):
    """Save the state dict the way users get it: plain, nested like training scripts, or as safetensors."""
    if arch in SAFETENSORS_ARCHS:
        path = path_stem + ".safetensors"
        save_safetensors({k: v.detach().numpy().copy() for k, v in state.items()}, path)
    elif arch.startswith("cyclemlp") or arch == "deit_small":  # authors' / DeiT releases: {'model': ...}
        path = path_stem + ".pth"
        torch.save({"model": state}, path)
    elif arch in ("resnet34", "swin_pico", "mobilenetv1"):  # timm train.py checkpoint, saved from DataParallel
        path = path_stem + ".pth"
        torch.save({"epoch": 3, "arch": arch, "args": argparse.Namespace(lr=0.1),
                    "state_dict": {"module." + k: v for k, v in state.items()}}, path)
    else:
        path = path_stem + ".pth"
        torch.save(state, path)
    return path


@pytest.mark.parametrize("arch", [a if a in FAST_ARCHS else pytest.param(a, marks=pytest.mark.slow)
                                  for a in sorted(CASES)])
def test_converted_model_matches_pytorch(arch, timm, torch, tmp_path, save_safetensors):
    build, size, our_kwargs = CASES[arch]
    assert_parity(arch, build, size, our_kwargs, timm, torch, tmp_path, save_safetensors)


# Swin at sizes whose stages are not whole windows (timm >= 0.9 pads them): 96 px has stage grids 24 and
# 12 (padded to 28 and 14) and windows shrunk to 6 and 3 after; 256 px pads all four stages (64 ... 8).
@pytest.mark.parametrize("size", [96, pytest.param(256, marks=pytest.mark.slow)])
def test_swin_padded_to_whole_windows_matches_timm(size, timm, torch, tmp_path, save_safetensors):
    def build(t, n):
        return _timm_small(t, "swin", img_size=size, window_size=7, embed_dim=48, num_classes=n)
    assert_parity("swin_pico", build, size, {}, timm, torch, tmp_path, save_safetensors)


def assert_parity(arch, build, size, our_kwargs, timm, torch, tmp_path, save_safetensors):
    """Convert the randomised PyTorch model's checkpoint, load it as train.py does, compare logits and stages."""
    num_classes = 10
    torch.manual_seed(0)
    pt_model = torch_cyclemlp(torch, arch, num_classes) if build is None else build(timm, num_classes)
    pt_model = randomise(torch, pt_model)
    state = pt_model.state_dict()
    src = save_source(torch, arch, state, str(tmp_path / arch), save_safetensors)
    images = np.random.default_rng(1).standard_normal((2, 3, size, size)).astype(np.float32)
    ref_logits, ref_outputs = torch_forward(torch, arch, pt_model, images)
    float_tensors = {name for name, value in state.items() if torch.is_floating_point(value)}
    num_source = len(state)
    del pt_model, state  # the big models: keep one copy of the weights in memory at a time
    gc.collect()

    dst = str(tmp_path / f"{arch}.ckpt")
    report = convert_checkpoint(arch, src, dst, image_size=size, **our_kwargs)
    gc.collect()
    # Load the written file the way eval.py / train.py load teacher_ckpt.
    ours = create_model(arch, num_classes=num_classes, image_size=size, **our_kwargs)
    load_model_checkpoint(ours, dst, what=f"teacher '{arch}'")
    ours.set_train(False)
    assert report.num_classes == num_classes and report.converted == len(list(ours.get_parameters()))
    assert not report.random_head
    # Every source tensor is converted or is a buffer dropped on purpose (num_batches_tracked, offset, ...).
    assert report.converted + len(report.skipped) == num_source
    assert all(n not in float_tensors or n.endswith(("attn_mask", "offset")) for n in report.skipped)

    logits, stages, _ = ours.forward_with_stages(Tensor(images))
    logits = logits.asnumpy()
    ref_stages = pick_stages(ref_outputs, ours)
    assert np.abs(ref_logits).max() > 1e-2  # the check means something only if the logits are not ~0
    diff, scale = float(np.abs(logits - ref_logits).max()), max(1.0, float(np.abs(ref_logits).max()))
    assert diff < LOGIT_TOL and diff < RELATIVE_TOL * scale, \
        f"{arch}: logits differ by {diff:.3g} (scale {scale:.3g})"
    assert len(ref_stages) == len(stages) == 4
    for i, (ref, got) in enumerate(zip(ref_stages, stages)):
        got = got.asnumpy()
        assert got.shape == ref.shape, f"{arch} stage {i + 1}: {got.shape} vs {ref.shape}"
        diff, scale = float(np.abs(got - ref).max()), max(1.0, float(np.abs(ref).max()))
        assert diff < RELATIVE_TOL * scale, f"{arch} stage {i + 1}: differs by {diff:.3g} (scale {scale:.3g})"


def test_every_registered_model_is_convertible_and_tested():
    assert sorted(LAYOUTS) == list_models()
    assert sorted(CASES) == list_models()


# ---------------------------------------------------------------- refusals (no PyTorch needed)

ARCH, SIZE = "vit_p4_pico", 32


def torch_names_of(model):
    """A timm-layout state dict for a model whose names equal timm's up to MindSpore's norm leaves."""
    back = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
    state = {}
    for p in model.get_parameters():
        path, _, leaf = p.name.rpartition(".")
        state[f"{path}.{back.get(leaf, leaf)}" if path else p.name] = p.asnumpy().copy()
    return state


@pytest.fixture(scope="module")
def vit_state():
    model = create_model(ARCH, num_classes=10, image_size=SIZE)
    return torch_names_of(model)


def _expected(num_classes=10):
    model = create_model(ARCH, num_classes=num_classes, image_size=SIZE)
    return {p.name: tuple(p.shape) for p in model.get_parameters()}


def test_identity_mapping_round_trips(vit_state):
    model, mapping = convert_state_dict(ARCH, vit_state, image_size=SIZE)
    assert len(mapping.params) == len(vit_state) and not mapping.skipped
    np.testing.assert_array_equal(model.blocks[0].norm1.gamma.asnumpy(), vit_state["blocks.0.norm1.weight"])
    np.testing.assert_array_equal(model.head.weight.asnumpy(), vit_state["head.weight"])


def test_missing_tensor_is_named(vit_state):
    state = dict(vit_state)
    del state["blocks.3.attn.qkv.weight"]
    with pytest.raises(ValueError, match=r"1 parameter\(s\) of ours missing from it: blocks\.3\.attn\.qkv\.weight"):
        map_state_dict(ARCH, state, _expected(), source="x.pth")


def test_unexpected_tensor_is_named(vit_state):
    state = dict(vit_state, **{"blocks.0.attn.q_norm.weight": np.ones(32, np.float32)})
    with pytest.raises(ValueError, match=r"1 unexpected tensor\(s\) in it: blocks\.0\.attn\.q_norm\.weight"):
        map_state_dict(ARCH, state, _expected(), source="x.pth")


def test_known_buffers_are_skipped_on_purpose():
    expected = {"layers.0.blocks.0.attn.relative_position_bias_table": (9, 2), "head.weight": (10, 4),
                "head.bias": (10,)}
    state = {"layers.0.blocks.0.attn.relative_position_bias_table": np.zeros((9, 2), np.float32),
             "layers.0.blocks.0.attn.relative_position_index": np.zeros((4, 4), np.int64),
             "layers.0.blocks.1.attn_mask": np.zeros((4, 4, 4), np.float32),
             "head.fc.weight": np.zeros((10, 4), np.float32), "head.fc.bias": np.zeros(10, np.float32)}
    mapping = map_state_dict("swin_tiny", state, expected)
    assert sorted(mapping.skipped) == ["layers.0.blocks.0.attn.relative_position_index",
                                       "layers.0.blocks.1.attn_mask"]
    assert sorted(mapping.params) == sorted(expected)


def test_1000_class_head_into_100_classes_needs_drop_head(vit_state, tmp_path, save_safetensors):
    state = dict(vit_state, **{"head.weight": np.ones((1000, 96), np.float32),
                               "head.bias": np.ones(1000, np.float32)})
    assert infer_num_classes(ARCH, state) == 1000
    src = str(tmp_path / "in1k.safetensors")
    save_safetensors(state, src)
    with pytest.raises(ValueError, match=r"'head\.weight' has shape \(1000, 96\).*expects \(100, 96\).*--drop-head"):
        convert_checkpoint(ARCH, src, str(tmp_path / "out.ckpt"), num_classes=100, image_size=SIZE)
    assert not os.path.exists(tmp_path / "out.ckpt")

    report = convert_checkpoint(ARCH, src, str(tmp_path / "out.ckpt"), num_classes=100, image_size=SIZE,
                                drop_head=True)
    assert report.random_head == ["head.bias", "head.weight"]
    assert sorted(report.dropped_head) == ["head.bias", "head.weight"]
    assert report.converted == len(vit_state) - 2
    model = create_model(ARCH, num_classes=100, image_size=SIZE)
    load_model_checkpoint(model, str(tmp_path / "out.ckpt"))
    np.testing.assert_array_equal(model.blocks[5].mlp.fc2.weight.asnumpy(), vit_state["blocks.5.mlp.fc2.weight"])
    assert model.head.weight.shape == (100, 96) and not np.all(model.head.weight.asnumpy() == 1.0)


def test_default_num_classes_is_the_checkpoints(vit_state):
    model, _ = convert_state_dict(ARCH, vit_state, image_size=SIZE)
    assert model.num_classes == 10
    headless = {k: v for k, v in vit_state.items() if not k.startswith("head.")}
    with pytest.raises(ValueError, match="no classifier head"):
        convert_state_dict(ARCH, headless, image_size=SIZE)
    model, mapping = convert_state_dict(ARCH, headless, num_classes=7, image_size=SIZE, drop_head=True)
    assert model.num_classes == 7 and mapping.random_head == ["head.bias", "head.weight"]


def test_token_mixing_at_another_image_size_is_refused():
    state = torch_names_of(create_model("resmlp_p4_pico", num_classes=10, image_size=32))
    with pytest.raises(ValueError, match=r"'blocks\.0\.linear_tokens\.weight' mixes 64 tokens \(8x8 patches, 32 px\), "
                                         r"this model is built for 256 \(64 px\).*cannot be resampled"):
        convert_state_dict("resmlp_p4_pico", state, image_size=64)


def test_pth_without_torch_says_how_to_install(tmp_path, monkeypatch):
    src = tmp_path / "teacher.pth"
    src.write_bytes(b"not read: the import fails first")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError, as when it is not installed
    with pytest.raises(ValueError, match=r"reading \.pth needs PyTorch: pip install torch==2\.13\.0 \(CPU\)"):
        read_state_dict(str(src))
    assert TORCH_MISSING == "reading .pth needs PyTorch: pip install torch==2.13.0 (CPU)"


def test_corrupt_safetensors_is_named(tmp_path, save_safetensors):
    src = tmp_path / "broken.safetensors"
    src.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ValueError, match=r"cannot read '.*broken\.safetensors' as a safetensors file"):
        read_state_dict(str(src))


def test_corrupt_pth_is_named(tmp_path, torch):
    good = tmp_path / "good.pth"
    torch.save({"w": torch.ones(3)}, good)
    src = tmp_path / "truncated.pth"
    src.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cannot read '.*truncated\.pth' as a PyTorch checkpoint"):
        read_state_dict(str(src))


def test_pickled_module_is_refused(tmp_path, torch):
    src = tmp_path / "whole_model.pth"
    torch.save(torch.nn.Linear(2, 2), src)
    with pytest.raises(ValueError, match="pickles Python objects besides tensors"):
        read_state_dict(str(src))


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        read_state_dict(str(tmp_path / "nope.pth"))
    odd = tmp_path / "weights.npz"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"suffix '\.npz'; allowed: \.pth"):
        read_state_dict(str(odd))


def test_unwrap_nested_and_data_parallel():
    w = np.zeros(2, np.float32)
    assert unwrap_state_dict({"model": {"module.a.weight": w}, "epoch": 3}, "f") == {"a.weight": w}
    assert unwrap_state_dict({"state_dict": {"a": w}, "args": None}, "f") == {"a": w}
    with pytest.raises(ValueError, match=r"holds no state dict of tensors: found \['epoch', 'optimizer'\]"):
        unwrap_state_dict({"epoch": 3, "optimizer": {"lr": 0.1}}, "f")
    with pytest.raises(ValueError, match="both with and without"):
        unwrap_state_dict({"module.a": w, "a": w}, "f")


def test_bfloat16_safetensors_are_widened(tmp_path, save_safetensors):
    values = np.array([1.5, -2.0, 3.140625], np.float32)  # exactly representable in bfloat16
    raw = (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [3], "data_offsets": [0, len(raw)]}}).encode()
    src = tmp_path / "bf16.safetensors"
    src.write_bytes(len(header).to_bytes(8, "little") + header + raw)
    state = read_state_dict(str(src))
    assert state["w"].dtype == np.float32
    np.testing.assert_array_equal(state["w"], values)
    # The by-hand reader used when NumPy has no bfloat16 registered (no ml_dtypes imported).
    from src.convert.readers import _read_safetensors_raw
    np.testing.assert_array_equal(_read_safetensors_raw(str(src))["w"], values)


def test_unknown_arch_and_bad_destination(vit_state, tmp_path):
    with pytest.raises(ValueError, match="no checkpoint conversion for arch 'resnet999'; convertible: beitv2_base"):
        map_state_dict("resnet999", vit_state, {})
    with pytest.raises(ValueError, match=r"must end with \.ckpt"):
        convert_checkpoint(ARCH, "a.pth", str(tmp_path / "teacher.pt"))


# ---------------------------------------------------------------- alternative source layouts (names only)

def test_old_swin_layout_moves_patch_merging_to_the_next_stage():
    model = create_model("swin_pico", num_classes=10, image_size=64, window_size=4)
    expected = {p.name: tuple(p.shape) for p in model.get_parameters()}
    old = {}
    for name, shape in expected.items():
        name = name.replace(".gamma", ".weight").replace(".beta", ".bias")
        if ".downsample." in name:  # ours: start of stage N+1; old timm / Microsoft: end of stage N
            stage = int(name.split(".")[1])
            name = name.replace(f"layers.{stage}.", f"layers.{stage - 1}.", 1)
        old[name] = np.zeros(shape, np.float32)
    old["layers.0.blocks.1.attn_mask"] = np.zeros((16, 16, 16), np.float32)
    mapping = map_state_dict("swin_pico", old, expected)
    assert mapping.layout.startswith("timm < 0.9")
    assert sorted(mapping.params) == sorted(expected) and mapping.skipped == ["layers.0.blocks.1.attn_mask"]


def timm_mobilenetv2_names():
    """timm mobilenetv2_100's state-dict names, written out from its block structure."""
    names = ["conv_stem.weight", "conv_head.weight", "classifier.weight", "classifier.bias"]
    norms = ["bn1", "bn2"]
    for stage, depth in enumerate((1, 2, 3, 4, 3, 3, 1)):
        convs = ("conv_dw", "conv_pw") if stage == 0 else ("conv_pw", "conv_dw", "conv_pwl")
        for block in range(depth):
            names += [f"blocks.{stage}.{block}.{conv}.weight" for conv in convs]
            norms += [f"blocks.{stage}.{block}.bn{i + 1}" for i in range(len(convs))]
    return names + [f"{bn}.{leaf}" for bn in norms for leaf in ("weight", "bias", "running_mean", "running_var")]


def test_mobilenetv2_table_reaches_every_mindcv_parameter():
    expected = {p.name: tuple(p.shape) for p in create_model("mobilenetv2_100", num_classes=10).get_parameters()}
    layout = LAYOUTS["mobilenetv2_100"][0]
    targets = [mindspore_leaf(layout.target(name), expected) for name in timm_mobilenetv2_names()]
    assert sorted(targets) == sorted(expected)


def to_facebook_convnext(name):
    """mindcv ConvNeXt name -> the Facebook release's (the layout mindcv itself follows, renumbered)."""
    name = re.sub(r"\.gamma$", ".weight", name)
    name = re.sub(r"\.beta$", ".bias", name)
    name = re.sub(r"\.gamma_$", ".gamma", name)
    name = re.sub(r"^feature\.(\d+)\.", lambda m: (f"downsample_layers.{int(m[1]) // 2}." if int(m[1]) % 2 == 0
                                                 else f"stages.{int(m[1]) // 2}."), name)
    return re.sub(r"^classifier\.", "head.", name)


def test_facebook_convnext_and_resmlp_layouts():
    convnext = create_model("convnext_tiny", num_classes=10, image_size=64)
    expected = {p.name: tuple(p.shape) for p in convnext.get_parameters()}
    facebook = {to_facebook_convnext(name): np.zeros(shape, np.float32) for name, shape in expected.items()}
    assert "stages.2.8.gamma" in facebook and "downsample_layers.3.1.weight" in facebook
    mapping = map_state_dict("convnext_tiny", facebook, expected)
    assert mapping.layout == "Facebook ConvNeXt release" and sorted(mapping.params) == sorted(expected)

    resmlp = create_model("resmlp_p4_pico", num_classes=10, image_size=32)
    expected = {p.name: tuple(p.shape) for p in resmlp.get_parameters()}
    facebook = {}
    for name, shape in expected.items():
        fb = (name.replace("stem.", "patch_embed.").replace("linear_tokens", "attn")
              .replace("mlp_channels", "mlp").replace(".ls1", ".gamma_1").replace(".ls2", ".gamma_2"))
        facebook[fb] = np.ones(shape[-1:] if fb.endswith((".alpha", ".beta")) else shape, np.float32)
    mapping = map_state_dict("resmlp_p4_pico", facebook, expected)
    assert mapping.layout == "Facebook ResMLP release"
    assert mapping.params["blocks.0.norm1.alpha"].shape == (1, 1, 128)


# ---------------------------------------------------------------- the command line

def test_cli_converts_and_prints_the_count(vit_state, tmp_path, capsys, save_safetensors):
    sys.path.insert(0, REPO)
    from tools.convert_checkpoint import main

    src = str(tmp_path / "vit.safetensors")
    save_safetensors(vit_state, src)
    assert main(["--arch", ARCH, "--src", src, "--dst", str(tmp_path / "t.ckpt"), "--image-size", str(SIZE)]) == 0
    out = capsys.readouterr().out
    assert f"converted {len(vit_state)} tensors into {ARCH} (num_classes=10, image_size={SIZE})" in out

    broken = dict(vit_state)
    del broken["cls_token"]
    save_safetensors(broken, src)
    assert main(["--arch", ARCH, "--src", src, "--dst", str(tmp_path / "u.ckpt"), "--image-size", str(SIZE)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "cls_token" in err and len(err.strip().splitlines()) == 1


def test_cli_reads_safetensors_without_torch(vit_state, tmp_path, save_safetensors):
    """The script in a fresh interpreter where ``import torch`` fails: .safetensors still converts."""
    src, dst = str(tmp_path / "vit.safetensors"), str(tmp_path / "t.ckpt")
    save_safetensors(vit_state, src)
    code = ("import runpy, sys; sys.modules['torch'] = None; "
            f"sys.argv = ['convert_checkpoint.py', '--arch', '{ARCH}', '--src', {src!r}, '--dst', {dst!r}, "
            f"'--image-size', '{SIZE}']; "
            f"runpy.run_path({os.path.join(REPO, 'tools', 'convert_checkpoint.py')!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"converted {len(vit_state)} tensors" in result.stdout
    model = create_model(ARCH, num_classes=10, image_size=SIZE)
    load_model_checkpoint(model, dst)
    np.testing.assert_array_equal(model.cls_token.asnumpy(), vit_state["cls_token"])


# ---------------------------------------------------------------- weights at another image size / grayscale

@pytest.mark.parametrize("old,new", [(14, 7), (14, 24), (2, 8), (7, 3), (5, 5)])
def test_pos_embed_resampling_equals_timms(old, new, timm, torch):
    from timm.layers import resample_abs_pos_embed

    pos = np.random.default_rng(old * new).standard_normal((1, 1 + old * old, 8)).astype(np.float32)
    ref = resample_abs_pos_embed(torch.from_numpy(pos), [new, new], num_prefix_tokens=1).numpy()
    # ours in float64, PyTorch's in float32: ~2e-6 of a unit-scale embedding apart when up-sampling
    np.testing.assert_allclose(resample_pos_embed(pos, new, num_prefix_tokens=1), ref, rtol=0, atol=1e-5)


def _timm_vit(timm, arch, size, num_classes):
    if arch == "deit_tiny":
        return timm.create_model("deit_tiny_patch16_224", num_classes=num_classes, img_size=size)
    return _timm_small(timm, "vit", img_size=size, patch_size=4, embed_dim=96, depth=6, num_heads=3,
                       num_classes=num_classes)


@pytest.mark.parametrize("arch,saved,sizes", [
    ("vit_p4_pico", 32, (16, 64)),
    pytest.param("deit_tiny", 224, (112, 384), marks=pytest.mark.slow)])
def test_checkpoint_at_another_size_loads_like_timms_resampling(arch, saved, sizes, timm, torch, tmp_path):
    """Our checkpoint saved at one size, loaded at others: the position embedding is resampled as timm's
    loader resamples it, so the logits equal timm's model loaded from the same weights."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    from src.checkpoint import save_atomic

    ms_seed = np.random.default_rng(7)
    source = create_model(arch, num_classes=10, image_size=saved)
    for p in source.get_parameters():  # unit-scale position embedding: a wrong resampling must show
        scale = 1.0 if p.name == "pos_embed" else 0.05
        p.set_data(Tensor((scale * ms_seed.standard_normal(p.shape)).astype(np.float32)))
    path = str(tmp_path / f"{arch}_{saved}.ckpt")
    save_atomic(source, path)
    state = {k: torch.from_numpy(v) for k, v in torch_names_of(source).items()}
    for size in sizes:
        ours = create_model(arch, num_classes=10, image_size=size)
        load_model_checkpoint(ours, path)
        ours.set_train(False)
        theirs = _timm_vit(timm, arch, size, 10).eval()
        filtered = checkpoint_filter_fn(dict(state), theirs)
        theirs.load_state_dict(filtered)
        np.testing.assert_allclose(ours.pos_embed.asnumpy(), filtered["pos_embed"].numpy(), rtol=0, atol=1e-5)
        images = np.random.default_rng(size).standard_normal((2, 3, size, size)).astype(np.float32)
        with torch.no_grad():
            ref = theirs(torch.from_numpy(images)).numpy()
        got = ours(Tensor(images)).asnumpy()
        assert np.abs(ref).max() > 1e-2
        assert float(np.abs(got - ref).max()) < LOGIT_TOL, f"{arch} at {size} px"


def test_converter_resamples_and_reports_the_position_embedding(vit_state, tmp_path, capsys, save_safetensors):
    from tools.convert_checkpoint import main

    src = str(tmp_path / "vit.safetensors")
    save_safetensors(vit_state, src)
    assert main(["--arch", ARCH, "--src", src, "--dst", str(tmp_path / "t.ckpt"), "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "resampled pos_embed from (1, 65, 96) to (1, 257, 96) for 64 px" in out
    model = create_model(ARCH, num_classes=10, image_size=64)
    load_model_checkpoint(model, str(tmp_path / "t.ckpt"))
    np.testing.assert_array_equal(model.pos_embed.asnumpy()[:, 0], vit_state["pos_embed"][:, 0])  # cls kept
    np.testing.assert_allclose(model.pos_embed.asnumpy(), resample_pos_embed(vit_state["pos_embed"], 16, 1),
                               rtol=0, atol=1e-6)


def test_converter_sums_the_rgb_stem_for_a_grayscale_model(vit_state, tmp_path, capsys, save_safetensors):
    from tools.convert_checkpoint import main

    src = str(tmp_path / "vit.safetensors")
    save_safetensors(vit_state, src)
    dst = str(tmp_path / "gray.ckpt")
    assert main(["--arch", ARCH, "--src", src, "--dst", dst, "--image-size", str(SIZE), "--in-channels", "1"]) == 0
    assert "summed patch_embed.proj.weight (96, 3, 4, 4) over its RGB channels to (96, 1, 4, 4)" in \
        capsys.readouterr().out
    gray = create_model(ARCH, num_classes=10, image_size=SIZE, in_channels=1)
    load_model_checkpoint(gray, dst)
    np.testing.assert_allclose(gray.patch_embed.proj.weight.asnumpy(),
                               vit_state["patch_embed.proj.weight"].sum(axis=1, keepdims=True), rtol=1e-6, atol=1e-6)
