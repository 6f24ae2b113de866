"""CIFAR-10 / CIFAR-100 from the python-pickle or the binary distribution, any number of records.

MindSpore's own Cifar10/Cifar100Dataset refuses files that are not full size, so we read them here.
Layouts searched under ``data_dir`` (or the named sub-folder of it):

* CIFAR-100 pickle ``cifar-100-python/{train,test}``: dict with ``data`` [N, 3072] and ``fine_labels``;
* CIFAR-100 binary ``cifar-100-binary/{train,test}.bin``: per record 1 coarse + 1 fine label byte + 3072;
* CIFAR-10 pickle ``cifar-10-batches-py/{data_batch_1..5,test_batch}``: ``data`` and ``labels``;
* CIFAR-10 binary ``cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin``: 1 label byte + 3072.

The 3072 pixel bytes are the red, green and blue 32x32 planes. The pickle files are read with an
unpickler that builds only what the format holds (dicts, lists, strings, numbers and NumPy arrays):
a file naming any other class or function (which an ordinary ``pickle.load`` would call) is refused.
"""
import io
import os
import pickle

import numpy as np

PIXELS = 3 * 32 * 32

LAYOUTS = {
    100: dict(
        title="CIFAR-100",
        pickle_dir="cifar-100-python", pickle_files={"train": ["train"], "val": ["test"]},
        label_key="fine_labels",
        binary_dir="cifar-100-binary", binary_files={"train": ["train.bin"], "val": ["test.bin"]},
        label_bytes=2, label_byte=1,  # coarse label first, then the fine one we train on
    ),
    10: dict(
        title="CIFAR-10",
        pickle_dir="cifar-10-batches-py",
        pickle_files={"train": [f"data_batch_{i}" for i in range(1, 6)], "val": ["test_batch"]},
        label_key="labels",
        binary_dir="cifar-10-batches-bin",
        binary_files={"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "val": ["test_batch.bin"]},
        label_bytes=1, label_byte=0,
    ),
}


def _planes_to_hwc(rows, path):
    if rows.ndim != 2 or rows.shape[1] != PIXELS:
        raise ValueError(f"{path}: expected image rows of {PIXELS} bytes, got shape {rows.shape}")
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def read_cifar_binary(path, num_classes):
    """``(images [N, 32, 32, 3] uint8, labels [N])`` of one binary CIFAR file."""
    layout = LAYOUTS[num_classes]
    record = layout["label_bytes"] + PIXELS
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % record:
        raise ValueError(f"{path}: {raw.size} bytes is not a whole number of {layout['title']} records "
                         f"({record} bytes each)")
    raw = raw.reshape(-1, record)
    labels = raw[:, layout["label_byte"]].astype(np.int64)
    return _planes_to_hwc(raw[:, layout["label_bytes"]:], path), labels


# The globals a CIFAR pickle may name: how NumPy (1.x and 2.x) rebuilds an array and its dtype, and how
# protocol 2 writes bytes from Python 3 (_codecs.encode of a latin-1 string).
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
}


class UnsafePickle(ValueError):
    pass


class _CifarUnpickler(pickle.Unpickler):
    """Builds dicts, lists, strings, numbers and NumPy arrays; refuses every other global."""

    def find_class(self, module, name):
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickle(f"{module}.{name}")


def read_cifar_pickle(path, num_classes):
    """``(images [N, 32, 32, 3] uint8, labels [N])`` of one python-pickle CIFAR file."""
    layout = LAYOUTS[num_classes]
    try:
        with open(path, "rb") as f:
            batch = _CifarUnpickler(io.BufferedReader(f), encoding="bytes").load()
    except UnsafePickle as err:
        raise ValueError(f"{path}: refused: the pickle asks to call {err}, which a {layout['title']} file never "
                         f"does (it holds only arrays, lists, strings and numbers); the file is not what it claims "
                         f"to be") from None
    except Exception as err:
        raise ValueError(f"{path}: not a {layout['title']} pickle file ({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: expected a dict in the {layout['title']} pickle, got {type(batch).__name__}")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    for key in ("data", layout["label_key"]):
        if key not in batch:
            raise ValueError(f"{path}: {layout['title']} pickle lacks the key '{key}' (has {sorted(batch)})")
    rows = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[layout["label_key"]], dtype=np.int64).reshape(-1)
    images = _planes_to_hwc(rows, path)
    if len(labels) != len(images):
        raise ValueError(f"{path}: {len(images)} images but {len(labels)} labels")
    return images, labels


def find_cifar_files(data_dir, split, num_classes):
    """``(reader, paths)`` of the first complete layout found; ValueError listing what was looked for."""
    layout = LAYOUTS[num_classes]
    looked = []
    for kind, reader in (("pickle", read_cifar_pickle), ("binary", read_cifar_binary)):
        names = layout[f"{kind}_files"][split]
        for folder in (os.path.join(data_dir, layout[f"{kind}_dir"]), data_dir):
            paths = [os.path.join(folder, name) for name in names]
            present = [p for p in paths if os.path.isfile(p)]
            if len(present) == len(paths):
                return reader, paths
            if present:
                missing = [p for p in paths if p not in present]
                raise ValueError(f"incomplete {layout['title']} {kind} split '{split}': missing {', '.join(missing)}")
            looked.append(os.path.join(folder, names[0]))
    raise ValueError(f"no {layout['title']} files for split '{split}' under {data_dir} "
                     f"(looked for {', '.join(looked)})")


def read_cifar(data_dir, split, num_classes):
    """``(images [N, 32, 32, 3] uint8, labels [N])`` of the train or val (= test) split."""
    if num_classes not in LAYOUTS:
        raise ValueError(f"CIFAR has 10 or 100 classes, got num_classes={num_classes}")
    if not os.path.isdir(data_dir):
        raise ValueError(f"data_dir {data_dir} is not a directory")
    reader, paths = find_cifar_files(data_dir, split, num_classes)
    parts = [reader(path, num_classes) for path in paths]
    for path, (_, labels) in zip(paths, parts):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{path}: labels must be in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels
