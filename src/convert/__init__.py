"""Bring PyTorch teachers in: timm / authors' state dicts (.pth, .safetensors) -> our MindSpore checkpoints.

One table of renames per model family (``cnn``, ``vit``, ``swin``, ``mlp``, ``beit``, ``cyclemlp``);
``readers`` gets NumPy arrays out of the files (PyTorch only for .pth, imported when needed),
``mapping`` checks that names and shapes map one to one, ``writer`` loads them into our model and saves.
"""
from .branches import BRANCHES
from .mapping import LAYOUTS, Mapping, convertible_archs, infer_num_classes, layout_for, map_state_dict
from .readers import TORCH_MISSING, read_state_dict, unwrap_state_dict
from .writer import ConversionReport, convert_checkpoint, convert_state_dict, load_converted

__all__ = [
    "BRANCHES", "LAYOUTS", "Mapping", "convertible_archs", "infer_num_classes", "layout_for", "map_state_dict",
    "TORCH_MISSING", "read_state_dict", "unwrap_state_dict",
    "ConversionReport", "convert_checkpoint", "convert_state_dict", "load_converted",
]
