"""Random images for benchmarks: network-ready ``[C, H, W]`` float32 inputs, no decoding or augmentation."""
import numpy as np

from .source import ImageSource

# distinct images kept in memory; samples cycle through them (a 224 px pool of 16 is ~10 MB)
POOL_SIZE = 16


class FakeSource(ImageSource):
    name = "fake"
    chw_float = True

    def __init__(self, num_samples, num_classes, image_size, channels, seed=0):
        rng = np.random.RandomState(seed)
        super().__init__(rng.randint(0, num_classes, size=num_samples))
        self.pool = rng.standard_normal((min(POOL_SIZE, num_samples), channels, image_size, image_size))
        self.pool = self.pool.astype(np.float32)

    def load(self, index):
        return self.pool[index % len(self.pool)]

    def pad_image(self):
        return np.zeros(self.pool.shape[1:], dtype=np.float32)

    def subset(self, indices):
        out = FakeSource.__new__(FakeSource)
        ImageSource.__init__(out, self.labels[np.asarray(indices, dtype=np.int64)])
        out.pool = self.pool
        return out
