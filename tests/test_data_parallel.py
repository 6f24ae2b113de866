"""Data parallel = one device at the total batch: the sampler's split, and 2 msrun ranks at batch b against
1 process at 2b (scripts/run_distribute_train.sh), weights compared tensor by tensor."""
import numpy as np
import pytest

from benchmarks import data_parallel
from src.data.sampler import shard_indices


@pytest.mark.parametrize("num_items, group_size, batch", [(32, 2, 4), (36, 2, 4), (40, 4, 2), (17, 2, 4), (64, 8, 2)])
def test_ranks_batches_together_are_the_single_device_batch(num_items, group_size, batch):
    """Step k of rank r reads positions ``G b k + r + G j`` (j < b) of the epoch's permutation, so the G ranks'
    k-th batches together are positions ``G b k ... G b (k + 1) - 1``: the k-th batch of one device at ``G b``.
    That holds for the ``floor(N / (G b))`` steps one device takes; with N not a multiple of G, ranks wrap
    around to fill their shard and may take one step more (it reads the epoch's first samples again)."""
    for epoch in range(2):
        single = shard_indices(num_items, 0, 1, True, 0, epoch)
        shards = [shard_indices(num_items, r, group_size, True, 0, epoch) for r in range(group_size)]
        steps = num_items // (group_size * batch)
        for k in range(steps):
            together = np.concatenate([shard[k * batch:(k + 1) * batch] for shard in shards])
            expected = single[k * group_size * batch:(k + 1) * group_size * batch]
            assert sorted(together.tolist()) == sorted(expected.tolist())
            # in order: position G b k + G j + r, i.e. rank r's j-th sample is the single batch's (G j + r)-th
            assert np.stack([shard[k * batch:(k + 1) * batch] for shard in shards], 1).ravel().tolist() \
                == expected.tolist()
        assert len(shards[0]) // batch in (steps, steps + 1)


@pytest.mark.slow
def test_two_ranks_at_b_end_as_one_device_at_2b(tmp_path):
    """BN-free student (ResMLP: affine layers, no batch statistics), 2 epochs x 4 steps of the fake set (no
    augmentation), SGD with Nesterov momentum, weight decay and clipping: 2 ranks x 4 images through msrun and
    1 process x 8 images end with the same weights (measured worst tensor 1.1e-6 relative, 3e-8 absolute: the
    order of float sums; AdamW magnifies that noise on near-zero gradients: 4e-5 on a LayerNorm bias)."""
    if not data_parallel._msrun_found():
        pytest.fail("msrun is not installed next to this Python: it ships with MindSpore")
    result = data_parallel.run(str(tmp_path), "sgd")
    assert result["same_names"] and result["tensors"] > 20 and result["two_devices_logged"]
    assert result["batch_statistics"] == []  # nothing depends on per-rank batch statistics
    assert result["ranks_identical"]
    # summed instead of averaged gradients, or ranks reading other samples, part by far more than this
    assert result["worst_rel"] < 1e-5, result
