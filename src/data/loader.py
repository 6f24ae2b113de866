"""``create_dataset``: config -> sharded, augmented, batched MindSpore pipeline of (image, label)
(plus the cached teacher outputs when the run trains from a teacher-output cache: the run passes the
pipeline builder that replays it, ``replay``).

Output columns ``image`` float32 ``[B, C, image_size, image_size]`` and ``label``: int32 ``[B]``, or
float32 ``[B, num_classes]`` soft labels when mixup/cutmix is on (train only). Every batch is full
(``drop_remainder=True``) because a new batch shape recompiles the graph:

* train drops the last partial batch of each rank's shard;
* val keeps every sample: each rank's shard is padded to a whole number of batches with samples
  whose label is ``PAD_LABEL`` (-1). Evaluation counts only ``label >= 0``, which over all ranks
  gives the exact top-1 of the full val split, with one compiled shape.
"""
import logging

import mindspore.dataset as ds
from mindspore.dataset.transforms.transforms import TensorOperation

from .cifar import read_cifar
from .fake import FakeSource
from .folder import FolderSource, load_image_folder
from .idx import read_mnist
from .sampler import EpochShardSampler, PaddedValSampler
from .source import ArraySource, balanced_subset
from .transforms import build_image_transforms, build_mixup

SPLITS = ("train", "val")
logger = logging.getLogger(__name__)


def _check_split(split):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {'|'.join(SPLITS)}, got {split!r}")


def load_source(cfg, split):
    """The reader output of one split (a random-access source), with ``train_subset``/``val_subset`` applied.

    Reading is the slow part (scanning folders, unpacking files): build it once and pass it to
    ``create_dataset(..., source=...)`` when making pipelines again.
    """
    _check_split(split)
    name = cfg["dataset"]
    data_dir = cfg["data_dir"]
    if name == "imagefolder":
        source = load_image_folder(data_dir, split, cfg["num_classes"], cfg["skip_corrupt"])
    elif name in ("cifar100", "cifar10"):
        images, labels = read_cifar(data_dir, split, 100 if name == "cifar100" else 10)
        source = ArraySource(images, labels, name)
    elif name in ("mnist", "fashion_mnist"):
        images, labels = read_mnist(data_dir, split)
        source = ArraySource(images, labels, name)
    elif name == "fake":
        seed = cfg["seed"] + (0 if split == "train" else 1)
        source = FakeSource(cfg["fake_samples"], cfg["num_classes"], cfg["image_size"], cfg["in_channels"], seed)
    else:
        raise ValueError(f"unknown dataset {name!r}")
    if len(source) == 0:
        raise ValueError(f"dataset {name} split '{split}' under {data_dir} has no samples")
    key = "train_subset" if split == "train" else "val_subset"
    count = cfg[key]
    if 0 < count < len(source):
        source = source.subset(balanced_subset(source.labels, count, cfg["seed"]))
    elif count > len(source):  # "at most N" (recipes and quick modes rely on it), but never silently
        logger.warning("%s=%d is more than the %d images of the %s split of %s under %s: using all %d "
                       "(%s=0 says so)", key, count, len(source), split, name, data_dir, len(source), key)
    return source


def create_dataset(cfg, split, rank=0, group_size=1, start_epoch=0, source=None, replay=None):
    """Batched pipeline of one rank's shard of ``split`` ("train" or "val").

    One pipeline serves all epochs: iterate it with ``create_tuple_iterator(num_epochs=...)``; epoch
    k of a train pipeline reads the sample order of epoch ``start_epoch + k`` (pass the epoch a
    resumed run starts at). Random augmentation draws come from MindSpore's and numpy's seeds.

    A run with ``teacher_cache`` passes ``replay`` (``TeacherSource.replay(names)`` of ``src.teacher``):
    ``replay(cfg, source, sampler, batch_size)`` builds the train pipeline from the cache's views, with one
    more column per cached output, ``teacher_logits`` [B, C], ``teacher_feature`` [B, D] (float32); the
    sampler then gives keys ``epoch * N + i``.
    """
    _check_split(split)
    is_train = split == "train"
    replay = replay if is_train else None
    if is_train and cfg.get("teacher_cache") and replay is None:
        raise ValueError(f"teacher_cache {cfg['teacher_cache']}: the train pipeline of a run from a teacher-output "
                         f"cache replays its views; build it with replay=TeacherSource.replay(names)")
    source = source if source is not None else load_source(cfg, split)
    batch_size = cfg["batch_size"] if is_train else (cfg["val_batch_size"] or cfg["batch_size"])
    if is_train:
        sampler = EpochShardSampler(len(source), rank, group_size, shuffle=True,
                                    seed=cfg["seed"], start_epoch=start_epoch, with_epoch=replay is not None)
        if sampler.num_samples < batch_size:
            raise ValueError(f"batch_size {batch_size} is larger than the {sampler.num_samples} train samples "
                             f"of each of the {group_size} shard(s) of {cfg['dataset']}")
    else:
        sampler = PaddedValSampler(len(source), rank, group_size, batch_size)
    if replay is not None:
        return replay(cfg, source, sampler, batch_size)
    pipeline = image_pipeline(cfg, source, sampler, is_train)
    pipeline = pipeline.batch(batch_size, drop_remainder=True)
    mixup = build_mixup(cfg) if is_train else None
    if mixup is not None:
        pipeline = pipeline.map(operations=mixup, input_columns=["image", "label"])
    return pipeline


def runs_in_python(op):
    """True for a transform MindSpore runs as a Python function (auto-augment, random erasing, ...)."""
    return not isinstance(op, TensorOperation)


def image_pipeline(cfg, source, sampler, is_train):
    """Unbatched ``image, label`` of ``source`` in ``sampler``'s order, through the split's transforms.

    Image folders hand over file bytes (read and checked in Python threads: ~0.05 ms an image, less than
    sending them from a process would cost); MindSpore's C++ ops decode them in ``num_workers`` threads
    (training decodes only the random crop). In-memory arrays are only indexed (one reader, no copies).
    ``python_multiprocessing`` runs the Python transforms (auto-augment, random erasing) in processes.
    """
    folder = isinstance(source, FolderSource)
    items = source.encoded(replace_corrupt=is_train) if folder else source
    pipeline = ds.GeneratorDataset(items, ["image", "label"], sampler=sampler,
                                   num_parallel_workers=cfg["num_workers"] if folder else 1,
                                   python_multiprocessing=False)
    if source.chw_float:
        return pipeline
    ops = build_image_transforms(cfg, is_train, decode=folder)
    in_python = any(runs_in_python(op) for op in ops)
    return pipeline.map(operations=ops, input_columns="image", num_parallel_workers=cfg["num_workers"],
                        python_multiprocessing=cfg["python_multiprocessing"] and in_python)


def pipeline_error_message(err):
    """The one-line cause (ours, e.g. "cannot read image PATH: ...") inside MindSpore's multi-line
    error from a failed pipeline, for the entry points to report."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    # a worker process's error comes back as "ValueError: Traceback ..." wrapping the original lines: take the last
    causes = [line[len("ValueError: "):] for line in lines if line.startswith("ValueError: ")]
    causes = [cause for cause in causes if not cause.startswith("Traceback")]
    if causes:
        return causes[-1]
    return lines[0] if lines else repr(err)
