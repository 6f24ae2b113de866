"""Tiny MNIST-format data for the tests of the Fashion-MNIST tools: class c has a bright 7x7 block at its own
place, so a model learns it in one epoch."""
import gzip
import os

import numpy as np


def write_fake_fashion_mnist(root, train=400, test=200, seed=0, gz=False):
    """``{train,t10k}-{images-idx3,labels-idx1}-ubyte`` files in ``root`` (``.gz`` ones, like the real
    dataset's, with ``gz``); returns ``root``."""
    rng = np.random.RandomState(seed)
    os.makedirs(root, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        labels = (np.arange(count) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = rng.randint(0, 60, (count, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            r, q = divmod(int(c), 4)
            images[i, r * 7 + 3: r * 7 + 10, q * 7: q * 7 + 7] = 230
        for stem, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
            data = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
            data += array.tobytes()
            path = os.path.join(root, stem)
            with open(path + ".gz" if gz else path, "wb") as f:
                f.write(gzip.compress(data) if gz else data)
    return root
