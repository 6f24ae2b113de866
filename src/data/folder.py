"""ImageNet-style folders: ``root/train/<class>/*.jpg`` and ``root/val/<class>/*.jpg``.

Classes are the sorted sub-folder names of ``train/`` (label = position). Images are decoded with
PIL when they are read, so a corrupt file is found at that moment: it raises an error naming the
file, or (``skip_corrupt``) is replaced by the next readable image with a logged warning.
"""
import logging
import os

import numpy as np
from PIL import Image

from .source import ImageSource

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")

logger = logging.getLogger(__name__)


def list_classes(split_dir):
    """Sorted class-folder names of one split; ValueError when the split or its classes are missing."""
    if not os.path.isdir(split_dir):
        raise ValueError(f"dataset split not found: {split_dir} is not a directory")
    classes = sorted(entry.name for entry in os.scandir(split_dir)
                     if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise ValueError(f"no class folders in {split_dir} (expected one sub-folder per class)")
    return classes


def scan_image_folder(split_dir, classes):
    """``(paths, labels)`` of every image under ``split_dir/<class>``; an empty class is a ValueError."""
    paths, labels = [], []
    for label, name in enumerate(classes):
        class_dir = os.path.join(split_dir, name)
        if not os.path.isdir(class_dir):
            raise ValueError(f"class folder missing: {class_dir} (the train split has class '{name}')")
        found = []
        for folder, subdirs, files in os.walk(class_dir, followlinks=True):
            subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
            found.extend(os.path.join(folder, f) for f in sorted(files)
                         if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
        if not found:
            raise ValueError(f"empty class folder: {class_dir} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(found)
        labels.extend([label] * len(found))
    return paths, labels


def read_image(path):
    """Decode one image file to an ``[H, W, 3]`` uint8 RGB array; ValueError naming the file if it cannot."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except Exception as err:  # PIL raises OSError, SyntaxError, DecompressionBombError, ...
        raise ValueError(f"cannot read image {path}: {type(err).__name__}: {err}") from None


class FolderSource(ImageSource):
    """Image files decoded on access."""

    name = "imagefolder"
    # how many following files to try before giving up when skipping corrupt ones
    max_skips = 64

    def __init__(self, paths, labels, classes, skip_corrupt=False):
        super().__init__(labels)
        self.paths = list(paths)
        self.classes = list(classes)
        self.skip_corrupt = bool(skip_corrupt)
        self._reported = set()

    def load(self, index):
        return read_image(self.paths[index])

    def __getitem__(self, index):
        index = int(index)
        if index < 0 or not self.skip_corrupt:
            return super().__getitem__(index)  # a corrupt image raises, naming the file
        # the label must follow the image that replaced a corrupt one
        for step in range(min(self.max_skips, len(self)) + 1):
            position = (index + step) % len(self)
            try:
                image = read_image(self.paths[position])
            except ValueError as err:
                if self.paths[position] not in self._reported:
                    self._reported.add(self.paths[position])
                    logger.warning("skipping unreadable image: %s", err)
                continue
            return image, np.int32(self.labels[position])
        raise ValueError(f"cannot read image {self.paths[index]} nor the {self.max_skips} images after it")

    def subset(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        return FolderSource([self.paths[i] for i in indices], self.labels[indices], self.classes, self.skip_corrupt)


def load_image_folder(root, split, num_classes=None, skip_corrupt=False):
    """The ``FolderSource`` of ``root/<split>``; labels come from the class folders of ``root/train``
    (or of the split itself when there is no ``train/``)."""
    split_dir = os.path.join(root, split)
    train_dir = os.path.join(root, "train")
    # an eval-only copy may hold just val/: its own class folders then define the labels
    classes = list_classes(train_dir if os.path.isdir(train_dir) else split_dir)
    if split != "train":
        found = list_classes(split_dir)
        extra = sorted(set(found) - set(classes))
        if extra:
            raise ValueError(f"{split_dir} has class folders that train/ lacks: {', '.join(extra[:5])}")
    if num_classes is not None and len(classes) != num_classes:
        raise ValueError(f"num_classes is {num_classes} but {train_dir if os.path.isdir(train_dir) else split_dir} "
                         f"has {len(classes)} class folders")
    paths, labels = scan_image_folder(split_dir, classes)
    return FolderSource(paths, labels, classes, skip_corrupt)
