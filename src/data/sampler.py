"""Which sample indices one rank reads in one epoch.

Train: every epoch draws a permutation from ``(seed, epoch)`` (the same on all ranks), wraps it
to a multiple of ``group_size`` and rank ``r`` takes positions ``r, r + G, ...``: shards are
disjoint up to the few wrapped samples, every rank gets ``ceil(N / G)``. The order depends only on
``(seed, epoch)``, so a run resumed at ``start_epoch`` reads exactly what the uninterrupted run read.

Val: no shuffling, rank ``r`` takes ``r, r + G, ...`` once each, then ``-1`` (padding, label
``PAD_LABEL``) up to the same whole number of batches on every rank; counted over all ranks,
each val sample is seen exactly once.
"""
import math

import mindspore.dataset as ds
import numpy as np


def shard_indices(num_items, rank, group_size, shuffle, seed, epoch):
    """Training indices of one rank for one epoch (``ceil(num_items / group_size)`` of them)."""
    order = np.random.RandomState((seed * 1000003 + epoch) % 2**32).permutation(num_items) if shuffle \
        else np.arange(num_items)
    per_rank = math.ceil(num_items / group_size)
    order = np.resize(order, per_rank * group_size)  # wrap around so every rank gets as many
    return order[rank::group_size]


def padded_val_indices(num_items, rank, group_size, batch_size):
    """Val indices of one rank: its own samples, then ``-1`` up to the common whole number of batches."""
    own = np.arange(rank, num_items, group_size)
    per_rank = math.ceil(num_items / group_size)
    total = math.ceil(per_rank / batch_size) * batch_size
    return np.concatenate([own, np.full(total - len(own), -1, dtype=own.dtype)])


class EpochShardSampler(ds.Sampler):
    """A MindSpore sampler whose k-th pass yields the indices of epoch ``start_epoch + k``.

    (A ``ds.Sampler`` subclass: MindSpore calls ``__iter__`` once per epoch for these, unlike for
    plain iterables, which it also iterates while building the pipeline.)
    """

    def __init__(self, num_items, rank=0, group_size=1, shuffle=True, seed=0, start_epoch=0, with_epoch=False):
        if num_items < 1:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < group_size:
            raise ValueError(f"rank must be in 0..{group_size - 1}, got {rank}")
        super().__init__(num_samples=math.ceil(num_items / group_size))
        self.num_items, self.rank, self.group_size = num_items, rank, group_size
        self.shuffle, self.seed, self.epoch = shuffle, seed, start_epoch
        self.with_epoch = with_epoch  # yield epoch * num_items + index: a source that replays per-epoch views

    def __iter__(self):
        indices = shard_indices(self.num_items, self.rank, self.group_size, self.shuffle, self.seed, self.epoch)
        if self.with_epoch:
            indices = indices + self.epoch * self.num_items
        self.epoch += 1
        return iter(indices.tolist())


class PaddedValSampler(ds.Sampler):
    """The same val indices (padding included) on every pass."""

    def __init__(self, num_items, rank=0, group_size=1, batch_size=1):
        if num_items < 1:
            raise ValueError("cannot sample from an empty dataset")
        if not 0 <= rank < group_size:
            raise ValueError(f"rank must be in 0..{group_size - 1}, got {rank}")
        self.indices = padded_val_indices(num_items, rank, group_size, batch_size)
        super().__init__(num_samples=len(self.indices))

    def __iter__(self):
        return iter(self.indices.tolist())
