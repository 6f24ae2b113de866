"""Helpers the tests share: float64 NumPy references of the layers, well-scaled random weights, timm's
parameter names, and what a two-worker msrun test needs (a free port, msrun itself)."""
import math
import os
import shutil
import socket
import sys

import numpy as np
import pytest
from mindspore import Tensor


def randomize(model, seed=0, prefix=""):
    """Give parameters (those under ``prefix``) well-scaled random values so layout mistakes show up."""
    rng = np.random.default_rng(seed)
    for name, p in model.parameters_and_names():
        if not name.startswith(prefix):
            continue
        shape = p.shape
        value = rng.standard_normal(shape, dtype=np.float32)
        if name.endswith((".gamma", ".alpha")):
            value = 1.0 + 0.1 * value
        elif len(shape) >= 2 and name.endswith("weight"):
            value *= 1.0 / math.sqrt(int(np.prod(shape[1:])))
        else:
            value *= 0.1 if name.endswith(("bias", "beta")) else 0.5
        p.set_data(Tensor(value))


# ----------------------------------------------------------------------------- NumPy references (float64)

def np_gelu(x):
    """The exact (erf) GELU."""
    return 0.5 * x * (1.0 + np.vectorize(math.erf, otypes=[np.float64])(x / math.sqrt(2.0)))


def np_layer_norm(x, weight, bias, eps=1e-6):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_linear(x, params, prefix):
    return x @ params[prefix + ".weight"].T + params[prefix + ".bias"]


def np_patch_embed(x, weight, bias):
    """Stride-p p x p convolution as a matmul over flattened patches, tokens in row-major order."""
    b, c, h, w = x.shape
    e, _, p, _ = weight.shape
    patches = x.reshape(b, c, h // p, p, w // p, p).transpose(0, 2, 4, 1, 3, 5)
    return patches.reshape(b, (h // p) * (w // p), c * p * p) @ weight.reshape(e, -1).T + bias


def to_torch_name(name):
    """Our LayerNorm parameters are gamma/beta; timm's and the authors' are weight/bias (timm's
    gamma_1/gamma_2, the layer scales, end in a digit and stay)."""
    if name.endswith(".gamma"):
        return name[:-len("gamma")] + "weight"
    if name.endswith(".beta"):
        return name[:-len("beta")] + "bias"
    return name


# ----------------------------------------------------------------------------- msrun

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def msrun_env(**extra):
    """The environment of an msrun child: this Python and its msrun first on PATH; fails when msrun is missing."""
    if shutil.which("msrun") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "msrun")):
        pytest.fail("msrun is not installed next to this Python: it ships with MindSpore")
    return {**os.environ, "PYTHON": sys.executable,
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""), **extra}
