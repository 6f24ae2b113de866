"""Data pipeline: readers for ImageNet-style folders (file bytes decoded by MindSpore's C++ ops),
CIFAR-10/100, (Fashion-)MNIST IDX files and fake images, mindcv transforms, mixup/cutmix and rank sharding
(a teacher-output cache's replayed views come from ``src.teacher``). See ``loader.create_dataset``."""
from .loader import SPLITS, create_dataset, load_source, pipeline_error_message
from .source import PAD_LABEL, balanced_subset
from .transforms import build_image_transforms, build_mixup

__all__ = ["SPLITS", "PAD_LABEL", "create_dataset", "load_source", "pipeline_error_message", "balanced_subset",
           "build_image_transforms", "build_mixup"]
