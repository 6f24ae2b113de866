"""Random-access image sources: what every reader hands to the pipeline.

A source is indexable: ``source[i] -> (image, label)`` with ``image`` an ``[H, W, 3]`` uint8 RGB
array (grayscale sets are repeated to 3 channels here, the transforms reduce them again when
``in_channels`` is 1) and ``label`` an ``int32`` scalar. Index ``-1`` is the padding sample that
fills the last val batch; its label is ``PAD_LABEL`` and it must not be counted.
"""
import numpy as np

PAD_LABEL = -1


class ImageSource:
    """Base class: ``labels`` (int64 [N]) plus ``load(i)``; subclasses set ``name``."""

    name = "images"
    # True when images already are network inputs ([C, H, W] float32) and skip the transforms.
    chw_float = False

    def __init__(self, labels):
        self.labels = np.asarray(labels, dtype=np.int64)

    def __len__(self):
        return int(self.labels.shape[0])

    def __getitem__(self, index):
        index = int(index)
        if index < 0:
            return self.pad_image(), np.int32(PAD_LABEL)
        return self.load(index), np.int32(self.labels[index])

    def load(self, index):
        raise NotImplementedError

    def pad_image(self):
        return np.zeros((8, 8, 3), dtype=np.uint8)

    def subset(self, indices):
        """A new source holding only ``indices`` (in that order)."""
        raise NotImplementedError


class ArraySource(ImageSource):
    """Images held in memory: ``[N, H, W]`` (grayscale) or ``[N, H, W, 3]`` uint8."""

    def __init__(self, images, labels, name="arrays"):
        super().__init__(labels)
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim not in (3, 4) or images.shape[0] != len(self):
            raise ValueError(f"{name}: expected uint8 images [N, H, W(, C)] matching {len(self)} labels, "
                             f"got {images.dtype} {images.shape}")
        self.images = images
        self.name = name

    def load(self, index):
        image = self.images[index]
        if image.ndim == 2:
            image = image[:, :, None]
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        return np.ascontiguousarray(image)

    def subset(self, indices):
        indices = np.asarray(indices, dtype=np.int64)
        return ArraySource(self.images[indices], self.labels[indices], self.name)


def balanced_subset(labels, count, seed):
    """Indices of a fixed, seeded subset of ``count`` samples with classes as balanced as possible.

    Samples are shuffled with ``seed``; then the k-th sample of every class comes before the
    (k+1)-th sample of any class, so each class gets ``count // classes`` or one more (when it has them).
    """
    labels = np.asarray(labels)
    if count <= 0 or count >= len(labels):
        return np.arange(len(labels))
    order = np.random.RandomState(seed).permutation(len(labels))
    rank_in_class = np.empty(len(labels), dtype=np.int64)
    seen = {}
    for position in order:
        label = int(labels[position])
        rank_in_class[position] = seen.get(label, 0)
        seen[label] = rank_in_class[position] + 1
    # stable sort of the shuffled order by rank within class: round-robin over classes
    picked = order[np.argsort(rank_in_class[order], kind="stable")][:count]
    return np.sort(picked)
