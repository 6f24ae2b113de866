"""Build our MindSpore model, load converted tensors into it strictly, and write the .ckpt atomically."""
import os
from dataclasses import dataclass, field

from mindspore import Parameter, Tensor

from ..checkpoint import load_into, save_atomic
from ..models import create_model
from .mapping import infer_num_classes, layout_for, map_state_dict
from .readers import read_state_dict


@dataclass
class ConversionReport:
    """What ``convert_checkpoint`` did, for the CLI to print."""

    arch: str
    source: str
    destination: str
    layout: str
    num_classes: int
    image_size: int
    converted: int
    resampled: list = field(default_factory=list)  # (our name, source shape, new shape)
    skipped: list = field(default_factory=list)
    dropped_head: list = field(default_factory=list)
    random_head: list = field(default_factory=list)


def load_converted(model, params, source, what="model", left_random=()):
    """Load ``{our name: ndarray}`` into ``model``; names and shapes must match one to one, except the
    parameters named in ``left_random`` (a dropped head), which keep their initial values."""
    load_into(model, {k: Parameter(Tensor(v), name=k) for k, v in params.items()}, source, what,
              allow_missing=tuple(left_random))
    return model


def convert_state_dict(arch, state, num_classes=None, image_size=224, drop_head=False, source="checkpoint",
                       **model_kwargs):
    """Our ``arch`` model (built at ``image_size``) holding ``state``'s weights, and the ``Mapping`` used.

    ``num_classes`` defaults to the checkpoint's; ``drop_head`` leaves our classifier at its random init.
    ``model_kwargs`` go to ``create_model`` (e.g. ``window_size`` for a small Swin in tests).
    """
    layout_for(arch, state)  # unknown arch: fail before building anything
    if num_classes is None:
        num_classes = infer_num_classes(arch, state)
        if num_classes is None:
            raise ValueError(f"'{source}' has no classifier head to take num_classes from; give num_classes "
                             "(--num-classes) and drop_head (--drop-head)")
    model = create_model(arch, num_classes=num_classes, image_size=image_size, **model_kwargs)
    expected = {p.name: tuple(p.shape) for p in model.get_parameters()}
    mapping = map_state_dict(arch, state, expected, source=source, drop_head=drop_head,
                             adapt=lambda params: model.adapt_checkpoint(params, source))
    load_converted(model, mapping.params, source, what=f"model '{arch}'", left_random=mapping.random_head)
    return model, mapping


def convert_checkpoint(arch, src, dst, num_classes=None, image_size=224, drop_head=False, **model_kwargs):
    """Convert the PyTorch checkpoint ``src`` (.pth / .safetensors) of ``arch`` into the MindSpore ``dst``."""
    if not str(dst).endswith(".ckpt"):
        raise ValueError(f"destination '{dst}' must end with .ckpt (MindSpore would append it otherwise)")
    if os.path.abspath(src) == os.path.abspath(dst):
        raise ValueError(f"destination '{dst}' is the source file")
    state = read_state_dict(src)
    model, mapping = convert_state_dict(arch, state, num_classes, image_size, drop_head, source=src,
                                        **model_kwargs)
    save_atomic(model, dst)
    return ConversionReport(arch=arch, source=src, destination=os.path.abspath(dst), layout=mapping.layout,
                            num_classes=int(model.num_classes), image_size=int(image_size),
                            converted=len(mapping.params), resampled=mapping.resampled, skipped=mapping.skipped,
                            dropped_head=mapping.dropped_head, random_head=mapping.random_head)
