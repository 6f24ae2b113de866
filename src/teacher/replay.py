"""Replayed views: the train pipeline of a run with ``teacher_cache``, and the teacher's inputs in a cache run.

Both apply the same code to an image: the train transforms before the random crop (grayscale
conversion), then the view's crop box resized to ``image_size`` with the recipe's interpolation (the
kernel RandomResizedCrop uses) and its flip, then the transforms after the flip (normalisation, ...).
So the image a cached teacher output was computed on is, bit for bit, the image the student trains on.
"""
import threading

import numpy as np

import mindspore.dataset as ds
from mindcv.data.mixup import mixup_target
from mindspore.dataset import vision

from src.data.transforms import build_mixup, build_replay_transforms

from .views import draw_view, view_schedule


def crop_and_flip(image, view, crop):
    """Image ``[H, W, C]`` uint8 -> the view's box resized by ``crop`` (a RandomResizedCrop), flipped if its flag says."""
    top, left, height, width, flip = (int(v) for v in view)
    image = vision.ResizedCrop(top, left, height, width, crop.size, crop.interpolation)(image)
    if flip:
        image = np.ascontiguousarray(image[:, ::-1])
    return image


def _apply(ops, image):
    for op in ops:
        image = op(image)
    return image


class ReplayedViews:
    """Train source of a run with a teacher cache.

    Key ``epoch * N + i`` (see ``EpochShardSampler(with_epoch=True)``) -> the view of image ``i`` that
    ``view_schedule`` picks for ``epoch`` (uint8, before the transforms after the flip), its label and the
    cached teacher outputs named in ``names`` (float32).
    """

    def __init__(self, source, cache, names, seed, before, crop):
        self.source, self.cache, self.names = source, cache, tuple(names)
        self.seed = int(seed)
        self.before, self.crop = before, crop  # crop None: network-ready images (fake data), no augmentation
        self._schedule = (None, None)

    def __len__(self):
        return len(self.source)

    def views_at(self, epoch):
        """The view of every image at ``epoch`` (the last epoch's schedule is kept)."""
        cached_epoch, views = self._schedule
        if cached_epoch != epoch:
            views = view_schedule(len(self.source), self.cache.views, self.seed, epoch)
            self._schedule = (epoch, views)
        return views

    def __getitem__(self, key):
        epoch, index = divmod(int(key), len(self.source))
        view = int(self.views_at(epoch)[index])
        image, label = self.source[index]
        if self.crop is not None:
            image = _apply(self.before, image)
            box = self.cache.view(index, view)
            top, left, height, width = (int(v) for v in box[:4])
            if not (top >= 0 and left >= 0 and height > 0 and width > 0 and top + height <= image.shape[0]
                    and left + width <= image.shape[1]):
                raise ValueError(f"teacher_cache {self.cache.path}: {self.cache.row_file('views', index)} gives image "
                                 f"{index} (view {view}) the box top {top} left {left} height {height} width {width}, "
                                 f"outside its {image.shape[0]}x{image.shape[1]} pixels: the cache was made from "
                                 f"other images; make it again with tools/cache_teacher.py")
            image = crop_and_flip(image, box, self.crop)
        return (image, label, *[self.cache.output(name, index, view) for name in self.names])


class ViewPairs:
    """Inputs of a cache run: item ``k`` is pair ``p = first + k`` of a part starting at image ``start``:
    view ``p % K`` of image ``start + p // K`` -> (the view, uint8 before the transforms after the flip;
    its box and flip ``[5]`` int32; ``p``)."""

    def __init__(self, source, start, first, stop, views, seed, scale, ratio, hflip, before, crop):
        self.source, self.start, self.first, self.stop, self.views = source, start, first, stop, views
        self.seed, self.scale, self.ratio, self.hflip = seed, tuple(scale), tuple(ratio), hflip
        self.before, self.crop = before, crop
        self._last = {}  # per worker thread: (index, image) of the last image read

    def __len__(self):
        return self.stop - self.first

    def __getstate__(self):  # worker processes start with an empty memo
        return dict(self.__dict__, _last={})

    def _image(self, index):
        """The image before the crop; a worker reading consecutive views of one image decodes it once."""
        worker = threading.get_ident()
        last = self._last.get(worker)
        if last is not None and last[0] == index:
            return last[1]
        image, _ = self.source[index]
        if self.crop is not None:
            image = _apply(self.before, image)
        self._last[worker] = (index, image)
        return image

    def __getitem__(self, k):
        pair = self.first + int(k)
        index, view = self.start + pair // self.views, pair % self.views
        image = self._image(index)
        if self.crop is None:  # network-ready [C, H, W] images: the whole image, never flipped
            box = (0, 0, image.shape[1], image.shape[2], 0)
        else:
            box = draw_view(self.seed, index, view, image.shape[0], image.shape[1], self.scale, self.ratio, self.hflip)
            image = crop_and_flip(image, box, self.crop)
        return image, np.array(box, dtype=np.int32), np.int64(pair)


def _mixed_output(name, values, lam):
    if lam == 1.0:
        return values
    if name == "logits":  # mix probabilities, returned as log-probabilities (logits of the mixed distribution)
        logp = values - values.max(axis=1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
        with np.errstate(divide="ignore"):  # lam may be 0 after cutmix's area correction
            mixed = np.logaddexp(np.log(lam) + logp, np.log(1.0 - lam) + logp[::-1])
        return mixed.astype(np.float32)
    return (lam * values + (1.0 - lam) * values[::-1]).astype(np.float32)


class MixupWithTeacher:
    """mindcv's batch-mode Mixup/CutMix, with the same lambda on the cached teacher outputs.

    Images and labels are mixed exactly as online (same draws); the teacher's probabilities are mixed
    with lambda (cutmix: the pasted area's share), its features linearly.
    """

    def __init__(self, mixup, names):
        self.mixup, self.names = mixup, tuple(names)

    def __call__(self, images, labels, *outputs):
        lam = self.mixup._mix_batch(images)  # the mixing step of Mixup.__call__: mixes images in place
        target = mixup_target(labels, self.mixup.num_classes, lam, self.mixup.label_smoothing)
        mixed = [_mixed_output(name, values, lam) for name, values in zip(self.names, outputs)]
        return (images.astype(np.float32), target.astype(np.float32), *mixed)


def teacher_columns(names):
    return [f"teacher_{name}" for name in names]


def replay_pipeline(cfg, source, sampler, batch_size, cache, names):
    """Batched train pipeline of a run with a teacher cache: ``image, label, teacher_<name> ...``.

    What ``create_dataset`` builds for the train split when a ``TeacherSource`` hands it ``replay``
    (``cache`` and ``names`` bound there, the outputs checked there once); ``sampler`` gives keys
    ``epoch * N + i``.
    """
    cache.check_split(source)
    before, crop, after = ([], None, []) if source.chw_float else build_replay_transforms(cfg)
    columns = ["image", "label"] + teacher_columns(names)
    decodes_files = cfg["dataset"] == "imagefolder"
    pipeline = ds.GeneratorDataset(
        ReplayedViews(source, cache, names, cfg["seed"], before, crop), columns, sampler=sampler,
        num_parallel_workers=cfg["num_workers"], python_multiprocessing=decodes_files and cfg["python_multiprocessing"])
    if after:
        pipeline = pipeline.map(operations=after, input_columns="image", num_parallel_workers=cfg["num_workers"])
    pipeline = pipeline.batch(batch_size, drop_remainder=True)
    mixup = build_mixup(cfg)
    if mixup is not None:
        pipeline = pipeline.map(operations=MixupWithTeacher(mixup, names), input_columns=columns)
    return pipeline


def view_pairs_pipeline(cfg, source, start, first, stop, views, batch_size):
    """Batched ``image, view, pair`` of pairs ``[first, stop)`` of a part starting at image ``start``, as the
    teacher sees them (no photometric augmentation); the last batch may be short."""
    before, crop, after = ([], None, []) if source.chw_float else build_replay_transforms(cfg, photometric=False)
    pairs = ViewPairs(source, start, first, stop, views, cfg["seed"], cfg["scale"], cfg["ratio"], cfg["hflip"],
                      before, crop)
    decodes_files = cfg["dataset"] == "imagefolder"
    pipeline = ds.GeneratorDataset(pairs, ["image", "view", "pair"], shuffle=False,
                                   num_parallel_workers=cfg["num_workers"],
                                   python_multiprocessing=decodes_files and cfg["python_multiprocessing"])
    if after:
        pipeline = pipeline.map(operations=after, input_columns="image", num_parallel_workers=cfg["num_workers"])
    return pipeline.batch(batch_size, drop_remainder=False)
