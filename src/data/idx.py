"""MNIST / Fashion-MNIST IDX files, gzipped or not.

``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte`` (each optionally ``.gz``) under ``data_dir`` or ``data_dir/raw``.
An IDX file starts with 0x0000, a type byte (0x08 = uint8) and the number of dimensions, then one
big-endian uint32 per dimension; gzip is recognised by its own magic bytes, not the file name.
"""
import gzip
import os
import zlib

import numpy as np

IMAGES_MAGIC = 0x00000803  # uint8, 3 dimensions (N, rows, cols)
LABELS_MAGIC = 0x00000801  # uint8, 1 dimension (N)

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path, magic):
    """The uint8 array stored in one IDX file; ValueError naming the file if it is not one of ``magic``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: cannot read IDX file ({type(err).__name__}: {err})") from None
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX file ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise ValueError(f"{path}: wrong IDX magic number 0x{found:08x}, expected 0x{magic:08x}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: IDX header truncated")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise ValueError(f"{path}: IDX shape {shape} needs {expected} bytes, file has {len(data)}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def find_idx_file(data_dir, stem):
    """Path of ``stem`` (plain or .gz, also the ``train-images.idx3-ubyte`` spelling) under data_dir[/raw]."""
    names = [stem, stem.replace("-idx", ".idx")]
    for folder in (data_dir, os.path.join(data_dir, "raw")):
        for name in names:
            for suffix in ("", ".gz"):
                path = os.path.join(folder, name + suffix)
                if os.path.isfile(path):
                    return path
    raise ValueError(f"IDX file not found: {os.path.join(data_dir, stem)}[.gz]")


def read_mnist(data_dir, split):
    """``(images [N, 28, 28] uint8, labels [N])`` of an MNIST-format split ("train" or "val" = t10k)."""
    if not os.path.isdir(data_dir):
        raise ValueError(f"data_dir {data_dir} is not a directory")
    image_stem, label_stem = SPLIT_FILES[split]
    image_path = find_idx_file(data_dir, image_stem)
    label_path = find_idx_file(data_dir, label_stem)
    images = read_idx(image_path, IMAGES_MAGIC)
    labels = read_idx(label_path, LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise ValueError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{label_path}: labels must be in 0..9, found {labels.max()}")
    return images, labels
