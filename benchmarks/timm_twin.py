"""timm's twin of each registry model, for speed comparisons (and for the converter's parity tests).

``python -m benchmarks.timm_twin CONFIG_JSON`` serves timed calls of a twin on stdin / stdout, so that the
model benchmark times PyTorch in a process of its own (MindSpore's idle worker threads and PyTorch's
would otherwise compete for the same cores): it prints ``ready <parameters>``, then answers each line
``forward`` / ``forward_backward`` with the wall and CPU seconds that call took. A config naming a
``teacher`` and a ``student`` serves a KD training step instead (``StepRunner``): each line ``step`` is
answered with the wall and CPU seconds of its four phases.

PyTorch and timm are test / benchmark dependencies only: the library never imports them. timm imports
torchvision at module level (its models do not use it; its data transforms do). PyPI's torchvision is a
CUDA build whose C++ ops (``_C.so``: nms, roi_align, ...) cannot load beside the pinned CPU torch, and a
plain ``import torchvision`` then fails registering their meta kernels ("operator torchvision::nms does not
exist"). Its transforms are pure Python on PIL images, so ``import_torchvision`` imports it with those two
registration modules left out; when that fails too (no torchvision at all), ``import_timm`` lets timm import
a stand-in that only provides names (any real use of it raises).
"""
import enum
import importlib
import json
import time
import importlib.abc
import importlib.machinery
import sys
import types

TIMM_MISSING = "needs PyTorch and timm (test-only): pip install torch==2.13.0 && pip install --no-deps timm==1.0.31"


class TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``import torchvision[.x]`` with empty modules whose attributes are placeholder classes."""

    class InterpolationMode(enum.Enum):
        NEAREST = "nearest"
        NEAREST_EXACT = "nearest-exact"
        BILINEAR = "bilinear"
        BICUBIC = "bicubic"
        BOX = "box"
        HAMMING = "hamming"
        LANCZOS = "lanczos"

    class Unavailable:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("torchvision is not installed; timm was imported with a stand-in for it")

    @classmethod
    def module_getattr(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name == "InterpolationMode":
            return cls.InterpolationMode
        return type(name, (cls.Unavailable,), {})

    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = self.module_getattr
        return module

    def exec_module(self, module):
        pass


def _forget_torchvision():
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


# torchvision modules that only register the C++ ops' meta / autograd kernels: they fail when _C.so did not load
_OP_REGISTRATIONS = ("torchvision._meta_registrations", "torchvision._autograd_registrations")


def import_torchvision():
    """The real ``torchvision`` (transforms usable, C++ ops not); ImportError when it is not installed."""
    try:
        return importlib.import_module("torchvision")
    except ImportError:
        _forget_torchvision()
        raise
    except Exception:  # a CUDA build beside the CPU torch: its ops are missing, registering them fails
        _forget_torchvision()
    for name in _OP_REGISTRATIONS:
        sys.modules[name] = types.ModuleType(name)
    try:
        return importlib.import_module("torchvision")
    except Exception as err:
        _forget_torchvision()
        raise ImportError(f"torchvision does not import beside this torch: {type(err).__name__}: {err}") from None


def has_real_torchvision(timm):
    """True when ``timm`` was imported with a working torchvision (its transforms can run)."""
    from timm.data import transforms_factory

    compose = getattr(transforms_factory.transforms, "Compose", TorchvisionStandIn.Unavailable)
    return not issubclass(compose, TorchvisionStandIn.Unavailable)


def import_timm():
    """The ``timm`` module (real torchvision when it imports, else the stand-in); ImportError without timm."""
    if "timm" in sys.modules:
        return sys.modules["timm"]
    try:
        import_torchvision()
    except ImportError:  # absent, or a build that does not import even without its ops
        stand_in = TorchvisionStandIn()
        sys.meta_path.insert(0, stand_in)
        try:
            return importlib.import_module("timm")
        finally:  # timm keeps what it imported; later code sees no torchvision at all
            sys.meta_path.remove(stand_in)
            _forget_torchvision()
    return importlib.import_module("timm")


# Our name -> (timm name, extra timm kwargs). ``img_size`` is added for the token models (sized by it).
_VIT_P4 = dict(patch_size=4, depth=6, num_heads=3)
_SWIN_SMALL = dict(depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16))
TWINS = {
    "resnet10": ("resnet18", dict(layers=(1, 1, 1, 1))),
    "resnet18": ("resnet18", {}),
    "resnet34": ("resnet34", {}),
    "resnet50": ("resnet50", {}),
    "mobilenetv2_100": ("mobilenetv2_100", {}),
    "convnext_tiny": ("convnext_tiny", {}),
    "deit_tiny": ("deit_tiny_patch16_224", {}),
    "deit_small": ("deit_small_patch16_224", {}),
    "vit_small": ("vit_small_patch16_224", {}),
    "vit_base": ("vit_base_patch16_224", {}),
    "swin_tiny": ("swin_tiny_patch4_window7_224", {}),
    "swin_nano": ("swin_tiny_patch4_window7_224", dict(embed_dim=64, **_SWIN_SMALL)),
    "swin_pico": ("swin_tiny_patch4_window7_224", dict(embed_dim=48, **_SWIN_SMALL)),
    "vit_p4_pico": ("vit_tiny_patch16_224", dict(embed_dim=96, **_VIT_P4)),
    "vit_p4_mini": ("vit_tiny_patch16_224", dict(embed_dim=192, **_VIT_P4)),
    "mixer_b16": ("mixer_b16_224", {}),
    "resmlp_12": ("resmlp_12_224", {}),
    "beitv2_base": ("beitv2_base_patch16_224", {}),
    "beitv2_large": ("beitv2_large_patch16_224", {}),
}
SIZED_BY_IMG_SIZE = ("deit", "vit", "swin", "mixer", "resmlp", "beit")


def create_twin(timm, name, num_classes, image_size, in_channels=3):
    """timm's model of the same architecture as our ``name``; ValueError when there is none listed."""
    if name not in TWINS:
        raise ValueError(f"no timm twin listed for '{name}'; listed: {', '.join(sorted(TWINS))}")
    timm_name, kwargs = TWINS[name]
    kwargs = dict(kwargs, num_classes=num_classes, in_chans=in_channels)
    if name.startswith(SIZED_BY_IMG_SIZE):
        kwargs["img_size"] = image_size
    return timm.create_model(timm_name, **kwargs)


class TwinRunner:
    """timm's twin on one fixed batch: ``no_grad`` eval forward, and train-mode forward + cross-entropy +
    backward."""

    def __init__(self, torch, timm, model, num_classes, image_size, batch_size, in_channels=3, threads=2,
                 seed=0):
        import numpy as np

        self.torch = torch
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.model = create_twin(timm, model, num_classes, image_size, in_channels)
        rng = np.random.default_rng(seed)
        self.x = torch.from_numpy(rng.standard_normal((batch_size, in_channels, image_size, image_size))
                                  .astype(np.float32))
        self.y = torch.from_numpy(rng.integers(0, num_classes, batch_size).astype(np.int64))
        self.params = int(sum(p.numel() for p in self.model.parameters() if p.requires_grad))

    def call(self, which):
        """``(wall seconds, process CPU seconds)`` of one call of pass ``which``."""
        torch = self.torch
        start, cpu = time.perf_counter(), time.process_time()
        if which == "forward":
            self.model.eval()
            with torch.no_grad():
                self.model(self.x)
        elif which == "forward_backward":
            self.model.train()
            self.model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(self.model(self.x), self.y).backward()
        else:
            raise ValueError(f"unknown pass '{which}'")
        return time.perf_counter() - start, time.process_time() - cpu


class StepRunner:
    """A logit-distillation training step in PyTorch + timm, timed phase by phase: the frozen teacher's
    ``no_grad`` eval forward, the student's train-mode forward with cross-entropy (label smoothing 0.1) +
    KL at temperature 1, ``backward``, and the optimizer step (SGD momentum 0.9 Nesterov, or AdamW) with
    timm's two parameter groups (no weight decay on biases and 1-D parameters) and ``zero_grad``.

    It is the KD step of the reference's training loop (the OFA exit branches are not built here), so it
    is compared with our ``--distiller kd`` step.
    """

    PHASES = ("teacher_forward", "forward", "backward", "optimizer")

    def __init__(self, torch, timm, teacher, student, num_classes, image_size, batch_size, opt="sgd", lr=0.1,
                 weight_decay=1e-4, threads=2, seed=0):
        import numpy as np

        self.torch = torch
        torch.set_num_threads(threads)
        torch.manual_seed(seed)
        self.teacher = create_twin(timm, teacher, num_classes, image_size).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.student = create_twin(timm, student, num_classes, image_size).train()
        decay = [p for p in self.student.parameters() if p.ndim > 1]
        no_decay = [p for p in self.student.parameters() if p.ndim <= 1]
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if opt == "sgd":
            self.optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=lr)
        rng = np.random.default_rng(seed)
        self.x = torch.from_numpy(rng.standard_normal((batch_size, 3, image_size, image_size)).astype(np.float32))
        self.y = torch.from_numpy(rng.integers(0, num_classes, batch_size).astype(np.int64))
        self.params = int(sum(p.numel() for p in self.student.parameters()))

    def call(self, which="step"):
        """``(wall s, CPU s)`` of each phase of one step, in ``PHASES`` order, flattened."""
        torch, F = self.torch, self.torch.nn.functional
        marks = [(time.perf_counter(), time.process_time())]
        with torch.no_grad():
            logits_t = self.teacher(self.x)
        marks.append((time.perf_counter(), time.process_time()))
        logits = self.student(self.x)
        loss = F.cross_entropy(logits, self.y, label_smoothing=0.1) + F.kl_div(
            F.log_softmax(logits, -1), F.log_softmax(logits_t, -1), reduction="batchmean", log_target=True)
        marks.append((time.perf_counter(), time.process_time()))
        loss.backward()
        marks.append((time.perf_counter(), time.process_time()))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        marks.append((time.perf_counter(), time.process_time()))
        out = []
        for (w0, c0), (w1, c1) in zip(marks, marks[1:]):
            out += [w1 - w0, c1 - c0]
        return out


def serve(config):
    import torch

    if "student" in config:  # a training step
        runner = StepRunner(torch, import_timm(), **config)
    else:
        runner = TwinRunner(torch, import_timm(), **config)
    print(f"ready {runner.params}", flush=True)
    for line in sys.stdin:
        values = runner.call(line.strip())
        print(" ".join(f"{v:.9f}" for v in values), flush=True)


if __name__ == "__main__":
    serve(json.loads(sys.argv[1]))
