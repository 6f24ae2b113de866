"""Teacher-output cache: view draws, exact replay, refusals, killed runs, sharded writing, cached training.

Tiny Fashion-MNIST-format IDX files (28 px) are made in a temp dir; the teacher is a randomly initialised
ResNet-10 at 16 px (exactness does not need a trained teacher).
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import mindspore as ms

from helpers import free_port, msrun_env
from src.config import load_config
from src.data import create_dataset, load_source
from src.data.idx import IMAGES_MAGIC, LABELS_MAGIC
from src.data.transforms import build_mixup
from src.teacher import build_teacher_model, build_teacher_source, open_teacher_cache
from src.teacher.fingerprint import split_fingerprint
from src.teacher.plan import MANIFEST, PARTIAL_SUFFIX
from src.teacher.replay import MixupWithTeacher
from src.teacher.views import draw_view, view_schedule
from src.teacher.writer import topk_log_probs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN, VAL = 24, 8


def idx_bytes(array, magic):
    return magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape) + \
        array.astype(np.uint8).tobytes()


def make_idx(root, train=TRAIN, val=VAL):
    os.makedirs(root, exist_ok=True)
    rng = np.random.RandomState(0)
    for prefix, count in (("train", train), ("t10k", val)):
        labels = np.arange(count) % 10
        images = rng.randint(0, 90, size=(count, 28, 28))
        images[:, :, :14] += (labels * 16)[:, None, None]  # a learnable left half, and an asymmetric image
        with open(os.path.join(root, f"{prefix}-images-idx3-ubyte"), "wb") as f:
            f.write(idx_bytes(images, IMAGES_MAGIC))
        with open(os.path.join(root, f"{prefix}-labels-idx1-ubyte"), "wb") as f:
            f.write(idx_bytes(labels, LABELS_MAGIC))
    return root


def tree(path):
    """Every file under ``path`` with its size: what a refusal must leave unchanged."""
    out = {}
    for folder, _, files in os.walk(path):
        for name in files:
            full = os.path.join(folder, name)
            out[full] = os.path.getsize(full)
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Tiny IDX data, a random ResNet-10 teacher checkpoint and a float32 cache with K = 3 views."""
    from src.checkpoint import save_atomic
    from src.teacher import build_teacher_cache
    from src.models import create_model

    root = tmp_path_factory.mktemp("cache")
    data = make_idx(str(root / "data"))
    ms.set_seed(0)
    save_atomic(create_model("resnet10", num_classes=10, image_size=16), str(root / "teacher.ckpt"))
    base = ["dataset=fashion_mnist", f"data_dir={data}", "image_size=16", "batch_size=4", "num_workers=1",
            "student=resnet10", "teacher=resnet10", f"teacher_ckpt={root / 'teacher.ckpt'}", "color_jitter=0",
            "scale=[0.3, 1.0]", "epochs=3", "seed=0", "distiller=ofa", "stages=[3, 4]", "opt=sgd", "lr=0.01",
            "warmup_epochs=0", "scheduler=cosine", "val_every=5", "log_interval=1"]
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        cfg = load_config(None, base)
        # the teacher batch is the training batch (the default): cached logits are then bit for bit the ones
        # the online step computes on CPU
        build_teacher_cache(cfg, str(root / "f32"), views=3, dtype="float32", features=True)
    finally:
        ms.set_context(mode=mode)
    return {"root": root, "data": data, "base": base, "cache": str(root / "f32")}


def config(work, *extra):
    return load_config(None, work["base"] + list(extra))


def cached_config(work, *extra):
    return config(work, f"teacher_cache={work['cache']}", *extra)


def load_teacher(work):
    return build_teacher_model(config(work))


def replayed(cfg, names=("logits",), **kwargs):
    """The train pipeline of a run from ``cfg``'s teacher cache, as the trainer builds it (the source opened once)."""
    return create_dataset(cfg, "train", replay=build_teacher_source(cfg).replay(names), **kwargs)


# ----------------------------------------------------------------------------- views and schedule

def test_view_draws_are_deterministic_and_follow_the_crop_rules():
    scale, ratio = (0.2, 0.9), (0.75, 4 / 3)
    boxes = [draw_view(7, i, v, 30, 40, scale, ratio, 0.5) for i in range(50) for v in range(4)]
    assert boxes == [draw_view(7, i, v, 30, 40, scale, ratio, 0.5) for i in range(50) for v in range(4)]
    assert boxes != [draw_view(8, i, v, 30, 40, scale, ratio, 0.5) for i in range(50) for v in range(4)]
    for top, left, h, w, flip in boxes:
        assert 0 <= top <= 30 - h and 0 <= left <= 40 - w and flip in (0, 1)
        # rounding of the sides moves area and aspect by a pixel at most
        assert scale[0] * 1200 * 0.8 <= h * w <= scale[1] * 1200 * 1.2
        assert ratio[0] * 0.85 <= w / h <= ratio[1] * 1.15
    flips = np.mean([b[4] for b in boxes])
    assert 0.35 < flips < 0.65
    assert all(draw_view(0, i, 0, 30, 40, scale, ratio, 0.0)[4] == 0 for i in range(20))
    # no box of area >= 0.9 fits a 4 x 100 image at aspect 1: the fallback centre crop at the nearest ratio
    assert draw_view(0, 0, 0, 4, 100, (0.9, 1.0), (1.0, 1.0), 0.0) == (0, 48, 4, 4, 0)


def test_view_schedule_uses_every_view_before_any_repeats():
    views, images = 3, 50
    epochs = np.stack([view_schedule(images, views, 5, e) for e in range(2 * views)])
    for rnd in range(2):
        block = np.sort(epochs[rnd * views:(rnd + 1) * views], axis=0)
        assert (block == np.arange(views)[:, None]).all()  # each image sees each view once per round
    assert not np.array_equal(epochs[:views], epochs[views:])  # rounds walk the views in new orders
    np.testing.assert_array_equal(view_schedule(images, views, 5, 4), epochs[4])  # depends on (seed, epoch) only
    assert not np.array_equal(view_schedule(images, views, 6, 0), epochs[0])
    assert (view_schedule(images, 1, 5, 9) == 0).all()


def test_topk_keeps_the_largest_classes_and_spreads_the_rest():
    rng = np.random.RandomState(0)
    logits = rng.randn(6, 10).astype(np.float32) * 3
    logp, classes = topk_log_probs(logits, 3)
    full = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    np.testing.assert_array_equal(classes, np.argsort(-logits, axis=1)[:, :3])
    np.testing.assert_allclose(logp, np.take_along_axis(full, classes, 1), atol=1e-6)


def test_mixup_mixes_teacher_probabilities_with_the_images_lambda():
    cfg = {"mixup": 0.8, "cutmix": 1.0, "mixup_prob": 1.0, "mixup_switch_prob": 0.5, "label_smoothing": 0.1,
           "num_classes": 5}
    rng = np.random.RandomState(1)
    for seed in range(6):  # both mixup and cutmix batches
        images = rng.rand(4, 3, 8, 8).astype(np.float32)
        labels = np.array([0, 1, 2, 3], np.int32)
        logits = rng.randn(4, 5).astype(np.float32)
        np.random.seed(seed)
        ref_images, ref_target = build_mixup(cfg)(images.copy(), labels)
        np.random.seed(seed)
        out_images, out_target, out_logits = MixupWithTeacher(build_mixup(cfg), ["logits"])(images.copy(), labels,
                                                                                            logits)
        np.testing.assert_array_equal(out_images, ref_images)  # images and labels as online, same draws
        np.testing.assert_array_equal(out_target, ref_target)
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        lam = (ref_target[0, 0] - 0.02) / 0.9  # soft label of class 0 in row 0: lam * 0.92 + (1 - lam) * 0.02
        mixed = np.exp(out_logits) / np.exp(out_logits).sum(1, keepdims=True)
        np.testing.assert_allclose(mixed, lam * p + (1 - lam) * p[::-1], atol=1e-6)


# ----------------------------------------------------------------------------- exactness

def test_cached_outputs_equal_the_online_teacher_on_the_replayed_views(work, graph_mode):
    from src.teacher import TeacherOutputs

    cfg = cached_config(work)
    net = TeacherOutputs(load_teacher(work), ("logits", "feature"))
    net.set_train(False)
    cache = open_teacher_cache(work["cache"])
    used = set()
    worst = 0.0
    for epoch in range(3):
        data = replayed(cfg, ("logits", "feature"), start_epoch=epoch)
        for images, labels, logits, feature in data.create_tuple_iterator(num_epochs=1, output_numpy=True):
            assert logits.dtype == np.float32 and logits.shape == (4, 10) and feature.shape == (4, 512)
            online_logits, online_feature = (o.asnumpy() for o in net(ms.Tensor(images)))
            worst = max(worst, np.abs(online_logits - logits).max(), np.abs(online_feature - feature).max())
        views = view_schedule(TRAIN, 3, cfg.seed, epoch)
        used.update((i, int(v)) for i, v in enumerate(views))
    assert worst < 1e-5, worst
    assert len(used) == TRAIN * 3  # three epochs used all three views of every image
    assert len({tuple(cache.view(i, v)) for i in range(TRAIN) for v in range(3)}) > TRAIN  # distinct crops


def test_replayed_view_is_the_online_pipeline_on_the_same_crop(work, graph_mode, tmp_path):
    """With a crop that can only be the whole image and a sure flip, online and replayed batches are identical."""
    from src.teacher import build_teacher_cache

    fixed = ["scale=[1.0, 1.0]", "ratio=[1.0, 1.0]", "hflip=1.0"]
    build_teacher_cache(config(work, *fixed), str(tmp_path / "c"), views=1, dtype="float32")
    online = create_dataset(config(work, *fixed), "train", start_epoch=1)
    cached = replayed(config(work, *fixed, f"teacher_cache={tmp_path / 'c'}"), start_epoch=1)
    pairs = list(zip(online.create_tuple_iterator(num_epochs=1, output_numpy=True),
                     cached.create_tuple_iterator(num_epochs=1, output_numpy=True)))
    assert len(pairs) == TRAIN // 4
    for (image, label), (image_c, label_c, _) in pairs:
        np.testing.assert_array_equal(label, label_c)
        np.testing.assert_array_equal(image, image_c)
    image = pairs[0][0][0][0]
    assert not np.array_equal(image, image[:, :, ::-1])  # the flip is visible on these images


@pytest.mark.parametrize("name", ["ofa", "kd", "dist", "dkd"])
def test_cached_distiller_equals_online_distiller(name):
    """The distiller fed the teacher's logits gives the online distiller's loss, terms and gradients."""
    from mindspore import ops

    from src.distill import build_distiller
    from src.models import create_model
    from src.teacher import TeacherSource

    ms.set_seed(0)
    student = create_model("resnet10", num_classes=10, image_size=16)
    teacher = create_model("resnet10", num_classes=10, image_size=16)
    kwargs = {"stages": (3, 4), "eps": (1.5,)} if name == "ofa" else {}
    online = build_distiller(name, student, teacher, num_classes=10, **kwargs)
    cached = build_distiller(name, student, TeacherSource("resnet10", 10, teacher.feature_dim), num_classes=10,
                             **kwargs)
    cached.branches = online.branches  # the same branch weights
    assert cached.teacher is None and online.teacher is not None
    online.set_train(True)
    cached.set_train(True)
    rng = np.random.RandomState(0)
    images = ms.Tensor(rng.randn(4, 3, 16, 16).astype(np.float32))
    labels = ms.Tensor(np.array([1, 2, 3, 4], np.int32))
    logits_t = online.teacher(images)
    weights = ms.ParameterTuple(online.student.trainable_params() + online.branches.trainable_params())
    grad = ops.GradOperation(get_by_list=True)
    loss_o, terms_o = online(images, labels)
    loss_c, terms_c = cached(images, labels, logits_t)
    np.testing.assert_allclose(terms_c.asnumpy(), terms_o.asnumpy(), rtol=1e-6, atol=1e-7)
    assert len(terms_c.asnumpy()) == len(cached.term_names)
    grads_o = grad(lambda x, y: online(x, y)[0], weights)(images, labels)
    grads_c = grad(lambda x, y, z: cached(x, y, z)[0], weights)(images, labels, logits_t)
    for g_o, g_c in zip(grads_o, grads_c):
        np.testing.assert_allclose(g_c.asnumpy(), g_o.asnumpy(), rtol=1e-5, atol=1e-5 * np.abs(g_o.asnumpy()).max())


def test_approximate_mode_augments_the_student_side_only(work):
    """teacher_cache_approx: RandAugment, erasing and mixup/cutmix run on the replayed views; the teacher's
    probabilities are mixed with the images' lambda."""
    extra = ["auto_augment=randaug-m9-mstd0.5-inc1", "re_prob=0.5", "mixup=0.8", "cutmix=1.0"]
    with pytest.raises(ValueError, match="auto_augment=randaug-m9-mstd0.5-inc1, re_prob=0.5, mixup=0.8, cutmix=1"):
        build_teacher_source(cached_config(work, *extra))
    cfg = cached_config(work, *extra, "teacher_cache_approx=true")
    assert build_teacher_source(cfg).name == "resnet10"
    exact = replayed(cached_config(work), start_epoch=2)
    approx = replayed(cfg, start_epoch=2)
    mixed = 0
    for (_, labels, logits), (images, soft, mixed_logits) in zip(
            exact.create_tuple_iterator(num_epochs=1, output_numpy=True),
            approx.create_tuple_iterator(num_epochs=1, output_numpy=True)):
        assert images.shape == (4, 3, 16, 16) and soft.shape == (4, 10) and mixed_logits.shape == (4, 10)
        np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-5)
        rows = [i for i in range(4) if labels[i] != labels[3 - i]]  # a row and its partner of another class
        if not rows:
            continue
        # one lambda per batch: the row's own class has lam * 0.91 + (1 - lam) * 0.01
        lam = np.full(4, (soft[rows[0], labels[rows[0]]] - 0.01) / 0.9)
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        q = np.exp(mixed_logits - mixed_logits.max(1, keepdims=True))
        q /= q.sum(1, keepdims=True)
        np.testing.assert_allclose(q, lam[:, None] * p + (1 - lam[:, None]) * p[::-1], atol=1e-5)
        mixed += not np.allclose(lam, 1.0)
    assert mixed > 0


# ----------------------------------------------------------------------------- storage

def test_manifest_and_memmapped_rows(work):
    cache = open_teacher_cache(work["cache"])
    m = cache.manifest
    assert m["teacher"] == "resnet10" and m["views"] == 3 and m["dtype"] == "float32"
    assert m["split"] == split_fingerprint(load_source(config(work), "train"))
    assert m["bytes_per_image"] == 3 * (5 * 4 + 10 * 4 + 512 * 4)
    assert sorted(os.listdir(work["cache"])) == sorted([MANIFEST] + list(m["parts"][0]["files"].values()))
    top, left, h, w, flip = cache.view(5, 2)
    assert 0 <= top <= 28 - h and 0 <= left <= 28 - w
    assert cache.output("logits", 5, 2).dtype == np.float32


def test_two_writer_ranks_make_the_single_rank_cache(work, graph_mode, tmp_path):
    from src.teacher import build_teacher_cache

    cfg = config(work)
    out = str(tmp_path / "sharded")
    assert build_teacher_cache(cfg, out, views=3, dtype="float32", rank=0, group_size=2, batch_size=36) is None
    assert not os.path.exists(out) and os.path.isdir(out + PARTIAL_SUFFIX)  # waits for rank 1
    manifest = build_teacher_cache(cfg, out, views=3, dtype="float32", rank=1, group_size=2, batch_size=36)
    assert manifest is not None and len(manifest["parts"]) == 2 and not os.path.exists(out + PARTIAL_SUFFIX)
    one, two = open_teacher_cache(work["cache"]), open_teacher_cache(out)
    for i in range(TRAIN):
        for v in range(3):
            np.testing.assert_array_equal(two.view(i, v), one.view(i, v))
            np.testing.assert_allclose(two.output("logits", i, v), one.output("logits", i, v), atol=1e-5)


def test_float16_and_topk_caches(work, graph_mode, tmp_path):
    from src.teacher import build_teacher_cache

    cfg = config(work)
    half = build_teacher_cache(cfg, str(tmp_path / "f16"), views=3, batch_size=72)
    topk = build_teacher_cache(cfg, str(tmp_path / "top3"), views=3, dtype="float32", topk=3, batch_size=72)
    assert half["bytes_per_image"] == 3 * (5 * 4 + 10 * 2) and topk["bytes_per_image"] == 3 * (5 * 4 + 3 * 4 + 3 * 2)
    one = open_teacher_cache(work["cache"])
    half, topk = open_teacher_cache(str(tmp_path / "f16")), open_teacher_cache(str(tmp_path / "top3"))
    for i in range(TRAIN):
        for v in range(3):
            full = one.output("logits", i, v)
            np.testing.assert_allclose(half.output("logits", i, v), full, atol=2e-2)
            p_full = np.exp(full - full.max()) / np.exp(full - full.max()).sum()
            p_top = np.exp(topk.output("logits", i, v))
            keep = np.argsort(-p_full)[:3]
            np.testing.assert_allclose(p_top.sum(), 1.0, rtol=1e-5)
            np.testing.assert_allclose(p_top[keep], p_full[keep], rtol=1e-4)
            rest = np.delete(p_top, keep)
            np.testing.assert_allclose(rest, (1 - p_full[keep].sum()) / 7, rtol=1e-3)


def test_a_killed_cache_run_is_never_used_and_resumes_to_the_same_cache(work, graph_mode, tmp_path):
    from src.teacher import build_teacher_cache

    class Killed(Exception):
        pass

    def kill_after(pairs):
        def on_event(kind, info):
            if kind == "progress" and info["pairs_done"] >= pairs:
                raise Killed()
        return on_event

    cfg = config(work)
    out = str(tmp_path / "killed")
    with pytest.raises(Killed):
        build_teacher_cache(cfg, out, views=3, dtype="float32", batch_size=4, flush_seconds=0, on_event=kill_after(30))
    assert not os.path.exists(out) and os.path.isdir(out + PARTIAL_SUFFIX)
    with pytest.raises(ValueError, match="is incomplete.*run tools/cache_teacher.py again"):
        open_teacher_cache(out)
    with pytest.raises(ValueError, match="is incomplete"):
        replayed(config(work, f"teacher_cache={out}"))
    before = tree(str(tmp_path))
    with pytest.raises(ValueError, match=r"other settings \(views: 3 there, 4 now\)"):
        build_teacher_cache(cfg, out, views=4, dtype="float32")
    assert tree(str(tmp_path)) == before
    events = []
    build_teacher_cache(cfg, out, views=3, dtype="float32", batch_size=4, on_event=lambda k, i: events.append((k, i)))
    assert events[0][1]["pairs_done"] >= 28  # resumed after the last flushed batch, not from the start
    resumed, straight = open_teacher_cache(out), open_teacher_cache(work["cache"])
    for i in range(TRAIN):
        for v in range(3):
            np.testing.assert_array_equal(resumed.view(i, v), straight.view(i, v))
            np.testing.assert_allclose(resumed.output("logits", i, v), straight.output("logits", i, v), atol=1e-5)


# ----------------------------------------------------------------------------- refusals

def _refused(work, tmp_path, call, match):
    """``call()`` raises one line matching ``match`` and leaves every file as it was."""
    before = tree(str(work["root"])), tree(str(tmp_path))
    with pytest.raises(ValueError, match=match) as err:
        call()
    assert "\n" not in str(err.value)
    assert (tree(str(work["root"])), tree(str(tmp_path))) == before
    return str(err.value)


def test_cache_run_refusals_write_nothing(work, tmp_path, monkeypatch):
    from src.teacher import build_teacher_cache, writer

    cfg = config(work)
    _refused(work, tmp_path, lambda: build_teacher_cache(cfg, work["cache"], views=3), "already exists")
    _refused(work, tmp_path, lambda: build_teacher_cache(config(work, "color_jitter=0.4", "mixup=0.2"),
                                                         str(tmp_path / "c"), views=3),
             "color_jitter=0.4, mixup=0.2 cannot be replayed.*turn them off with color_jitter=0 mixup=0 "
             r"\(on the cache tool's command and on every train command.*teacher_cache_approx: true")
    _refused(work, tmp_path, lambda: build_teacher_cache(cfg, str(tmp_path / "c"), views=3, topk=10),
             "--topk must be in 1..9")
    _refused(work, tmp_path, lambda: build_teacher_cache(cfg, str(tmp_path / "c"), views=0), "--views must be >= 1")
    _refused(work, tmp_path, lambda: build_teacher_cache(config(work, "teacher_ckpt=null"), str(tmp_path / "c"),
                                                         views=1), "'teacher_ckpt' is required")
    _refused(work, tmp_path, lambda: build_teacher_cache(config(work, "teacher=resnet18"), str(tmp_path / "c"),
                                                         views=1), "does not match")

    class Tiny:
        free = 100

    monkeypatch.setattr(writer.shutil, "disk_usage", lambda path: Tiny())
    _refused(work, tmp_path, lambda: build_teacher_cache(cfg, str(tmp_path / "c"), views=3),
             "not enough disk space for the cache")


def test_training_refuses_a_cache_that_does_not_match(work, tmp_path):
    from src.checkpoint import save_atomic
    from src.models import create_model

    def refused(match, *extra):
        return _refused(work, tmp_path, lambda: build_teacher_source(cached_config(work, *extra)), match)

    refused("teacher is \"resnet10\" in the cache but \"resnet18\"", "teacher=resnet18")
    other = str(tmp_path / "other.ckpt")
    save_atomic(create_model("resnet10", num_classes=10, image_size=16), other)
    refused("teacher checkpoint \\(SHA-256\\).*is not the checkpoint the cache was made from", f"teacher_ckpt={other}")
    refused("image_size is 16 in the cache but 32 in this run", "image_size=32")
    refused("dataset is \"fashion_mnist\" in the cache but \"mnist\"", "dataset=mnist")
    refused("scale is", "scale=[0.5, 1.0]")
    refused("mean is", "mean=[0.5]")
    refused("views is 3 in the cache but \"epochs=4\".*teacher_cache_strict", "epochs=4", "teacher_cache_strict=true")
    refused("re_prob=0.25 cannot be replayed", "re_prob=0.25")
    build_teacher_source(cached_config(work, "epochs=4"))  # views repeat without strict: accepted
    build_teacher_source(cached_config(work, "re_prob=0.25", "teacher_cache_approx=true"))
    _refused(work, tmp_path, lambda: replayed(cached_config(work, "train_subset=12")),
             "split is \"24 samples.*but \"12 samples")


def test_damaged_caches_are_refused(work, tmp_path):
    def copy(name):
        path = str(tmp_path / name)
        shutil.copytree(work["cache"], path)
        return path

    logits_file = open_teacher_cache(work["cache"]).manifest["parts"][0]["files"]["logits"]
    truncated = copy("truncated")
    with open(os.path.join(truncated, logits_file), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(truncated, logits_file)) - 40)
    _refused(work, tmp_path, lambda: open_teacher_cache(truncated), f"{logits_file} is truncated")
    missing = copy("missing")
    os.remove(os.path.join(missing, logits_file))
    _refused(work, tmp_path, lambda: open_teacher_cache(missing), f"array file {logits_file} is missing")
    no_manifest = copy("no_manifest")
    os.remove(os.path.join(no_manifest, MANIFEST))
    _refused(work, tmp_path, lambda: open_teacher_cache(no_manifest), "has no manifest.json")
    _refused(work, tmp_path, lambda: open_teacher_cache(str(tmp_path / "nowhere")), "does not exist")


def test_a_feature_distiller_refuses_a_logits_only_cache(work, tmp_path, monkeypatch):
    from src.distill import build_distiller, distillers
    from src.models import create_model
    from src.teacher import TeacherSource

    class FeatureKD(distillers.KDDistiller):
        teacher_outputs = ("logits", "feature")

    monkeypatch.setitem(distillers.DISTILLERS, "feature_kd", FeatureKD)
    student = create_model("resnet10", num_classes=10, image_size=16)
    with pytest.raises(ValueError, match="needs the teacher's feature, which the teacher cache does not hold"):
        build_distiller("feature_kd", student, TeacherSource("resnet10", 10, 512, ("logits",)), num_classes=10)
    logits_only = str(tmp_path / "logits_only")
    shutil.copytree(work["cache"], logits_only)
    manifest = json.loads(open(os.path.join(logits_only, MANIFEST)).read())
    manifest["outputs"] = ["logits"]
    del manifest["arrays"]["feature"]
    with open(os.path.join(logits_only, MANIFEST), "w") as f:
        json.dump(manifest, f)
    _refused(work, tmp_path, lambda: replayed(config(work, f"teacher_cache={logits_only}"), ("logits", "feature")),
             "has no feature output.*--features")


def test_a_run_opens_its_cache_once(work, tmp_path, monkeypatch):
    """The trainer builds one TeacherSource and hands it to the distiller (no teacher built) and to every
    epoch's train pipeline (the cached logits as a column): the cache is opened and checked once."""
    from src.engine.trainer import Trainer
    from src.teacher import reader

    opened = []
    open_cache = reader.TeacherCache.__init__

    def counting(self, path):
        opened.append(path)
        open_cache(self, path)

    monkeypatch.setattr(reader.TeacherCache, "__init__", counting)
    trainer = Trainer(cached_config(work, "distiller=kd", f"output_dir={tmp_path / 'run'}"))
    for epoch in range(3):
        images, labels, logits = next(trainer._dataset("train", epoch).create_tuple_iterator(num_epochs=1,
                                                                                            output_numpy=True))
        assert images.shape == (4, 3, 16, 16) and logits.shape == (4, 10)
    assert opened == [work["cache"]]  # the probe pipeline and three epochs' pipelines: one open
    assert trainer.distiller.teacher is None and trainer.teacher.cache is not None
    with pytest.raises(ValueError, match="replays its views; build it with replay="):  # never the online pipeline
        create_dataset(cached_config(work), "train")


def test_teacher_cache_needs_a_distiller():
    with pytest.raises(ValueError, match="key 'teacher_cache' needs a distiller"):
        load_config(None, ["student=resnet10", "dataset=fake", "distiller=none", "teacher_cache=/x"])


# ----------------------------------------------------------------------------- cached training (slow)

def _train(cfg, stop_after=None, online_teacher=False, monkeypatch=None):
    """Train in this process; ``online_teacher`` runs the teacher in the step on the cache's views.

    Returns the state (student, branches, optimizer) before and after training.
    """
    import dataclasses

    from src.engine import trainer as trainer_module
    from src.engine.builders import setup_context

    class Killed(Exception):
        pass

    def on_event(kind, info):
        if kind == "epoch" and stop_after is not None and info["epoch"] == stop_after:
            raise Killed()

    if online_teacher:  # the forced-view online run: same replayed pipeline, a real teacher in the step
        monkeypatch.setattr(trainer_module, "build_teacher_source",
                            lambda cfg: dataclasses.replace(build_teacher_source(cfg), model=build_teacher_model(cfg)))
    setup_context(cfg, distributed=False)
    trainer = trainer_module.Trainer(cfg, on_event=on_event)
    before = {p.name: p.asnumpy().copy() for p in trainer.resume_params()}
    try:
        trainer.fit()
    except Killed:
        pass
    finally:
        if online_teacher:
            monkeypatch.undo()
    assert (trainer.distiller.teacher is None) != online_teacher
    return before, {p.name: p.asnumpy().copy() for p in trainer.resume_params()}


@pytest.mark.slow
def test_cached_training_equals_online_training_on_the_same_views(work, monkeypatch):
    """The same weights: the cache was made with the training batch size, so its logits are the online step's
    bit for bit. (Any rounding difference would grow step after step in this BatchNorm student at batch 4.)"""
    before, cached = _train(cached_config(work, f"output_dir={work['root'] / 'cached'}", "epochs=2"))
    start, online = _train(cached_config(work, f"output_dir={work['root'] / 'online'}", "epochs=2"),
                           online_teacher=True, monkeypatch=monkeypatch)
    assert online.keys() == cached.keys()
    for name in before:
        np.testing.assert_array_equal(start[name], before[name], err_msg=name)  # same init: RNG untouched
    for name, value in cached.items():
        np.testing.assert_allclose(value, online[name], rtol=1e-5, atol=1e-6, err_msg=name)
    assert sum(not np.array_equal(cached[n], before[n]) for n in cached) > 10  # training moved the weights


@pytest.mark.slow
def test_resume_from_a_cached_run_is_exact(work):
    args = ["distiller=kd", "epochs=2"]
    _, straight = _train(cached_config(work, f"output_dir={work['root'] / 'straight'}", *args))
    out = work["root"] / "stopped"
    _, after_one = _train(cached_config(work, f"output_dir={out}", *args), stop_after=1)
    _, resumed = _train(cached_config(work, f"output_dir={out}", *args, f"resume={out / 'resume.ckpt'}"))
    assert resumed.keys() == straight.keys()
    for name, value in straight.items():
        np.testing.assert_allclose(resumed[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    assert any(not np.allclose(after_one[n], straight[n]) for n in straight if n.startswith("student."))




@pytest.mark.slow
def test_cache_tool_and_cached_training_under_two_worker_msrun(work):
    """The tool shards the cache over two msrun ranks; cached training on two ranks ends with equal weights."""
    root = work["root"] / "msrun"
    env = msrun_env(GLOG_v="3")
    args = list(work["base"]) + ["epochs=1"]
    cache = root / "cache"
    proc = subprocess.run(
        ["msrun", "--worker_num=2", "--local_worker_num=2", f"--master_port={free_port()}",
         f"--log_dir={root / 'cache_logs'}", "--join=True", os.path.join(ROOT, "tools", "cache_teacher.py"),
         *args, "--out", str(cache), "--views", "2", "--dtype", "float32", "--teacher-batch", "24"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    manifest = json.loads((cache / MANIFEST).read_text())
    assert manifest["ranks"] == 2 and [p["start"] for p in manifest["parts"]] == [0, TRAIN // 2]
    single = open_teacher_cache(work["cache"])  # 3 views; the first two are drawn alike
    sharded = open_teacher_cache(str(cache))
    for i in range(TRAIN):
        np.testing.assert_array_equal(sharded.view(i, 1), single.view(i, 1))
        np.testing.assert_allclose(sharded.output("logits", i, 1), single.output("logits", i, 1), atol=1e-5)

    out = root / "train"
    empty = root / "empty.yaml"  # every key comes from the command line
    empty.write_text("{}\n")
    env.update(MASTER_PORT=str(free_port()), LOG_DIR=str(out / "logs"))
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "run_distribute_train.sh"), "2", str(empty),
         *args, "distiller=kd", f"teacher_cache={cache}", "rank_checkpoints=true", f"output_dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    logs = ""
    if (out / "logs").is_dir():
        logs = "\n".join((out / "logs" / f).read_text(errors="replace")[-2000:] for f in os.listdir(out / "logs"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + logs
    assert "not built" in (out / "train.log").read_text()
    r0 = ms.load_checkpoint(str(out / "rank_0" / "last.ckpt"))
    r1 = ms.load_checkpoint(str(out / "rank_1" / "last.ckpt"))
    weights = [n for n in r0 if not n.endswith(("moving_mean", "moving_variance"))]
    assert len(weights) > 10 and r0.keys() == r1.keys()
    for name in weights:
        np.testing.assert_array_equal(r0[name].asnumpy(), r1[name].asnumpy(), err_msg=name)


@pytest.mark.slow
def test_tool_and_train_refusals_are_one_line_errors(work, tmp_path):
    tool = [sys.executable, os.path.join(ROOT, "tools", "cache_teacher.py"), *work["base"], "color_jitter=0.4",
            "--out", str(tmp_path / "c"), "--views", "2"]
    proc = subprocess.run(tool, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: teacher_cache: color_jitter=0.4 cannot be")
    assert len(proc.stderr.strip().splitlines()) == 1 and not os.listdir(tmp_path)
    train = [sys.executable, os.path.join(ROOT, "train.py"), *work["base"], f"teacher_cache={work['cache']}",
             "image_size=32", f"output_dir={tmp_path / 'run'}"]
    proc = subprocess.run(train, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: teacher_cache ")
    assert "image_size is 16 in the cache but 32 in this run" in proc.stderr
    assert not os.path.exists(os.path.join(tmp_path, "run", "last.ckpt"))


# ----------------------------------------------------------------------------- checksums and untrusted manifests

def _copy_cache(work, tmp_path, name):
    path = str(tmp_path / name)
    shutil.copytree(work["cache"], path)
    with open(os.path.join(path, MANIFEST)) as f:
        return path, json.load(f)


def _write_manifest(path, manifest):
    with open(os.path.join(path, MANIFEST), "w") as f:
        json.dump(manifest, f)


def test_flipped_bytes_in_logits_are_refused_naming_the_file(work, tmp_path, caplog):
    from src.files import file_sha256

    cache, manifest = _copy_cache(work, tmp_path, "flipped")
    part = manifest["parts"][0]
    assert set(part["sha256"]) == set(manifest["arrays"])  # every array of every part has its checksum
    assert part["sha256"]["logits"] == file_sha256(os.path.join(cache, part["files"]["logits"]))
    open_teacher_cache(cache)  # intact: opens
    logits = os.path.join(cache, part["files"]["logits"])
    data = bytearray(open(logits, "rb").read())
    for at in (200, 1000, len(data) - 3):  # three logits changed, the shape and size as they were
        data[at] ^= 0x40
    with open(logits, "wb") as f:
        f.write(bytes(data))
    message = _refused(work, tmp_path, lambda: open_teacher_cache(cache),
                       f"{part['files']['logits']} does not match the SHA-256 in its manifest.json")
    assert cache in message and "tools/cache_teacher.py" in message
    # a cache made before the checksums opens, with a warning that says how to have them
    old, manifest = _copy_cache(work, tmp_path, "old")
    for part in manifest["parts"]:
        del part["sha256"]
    _write_manifest(old, manifest)
    with caplog.at_level("WARNING"):
        open_teacher_cache(old)
    assert f"teacher_cache {old} records no checksums" in caplog.text and "tools/cache_teacher.py" in caplog.text


def test_a_manifest_naming_arrays_outside_the_cache_is_refused(work, tmp_path):
    outside = tmp_path / "outside.npy"
    np.save(str(outside), np.zeros(3, np.float32))
    for name, path in (("absolute", str(outside)), ("dotdot", "../outside.npy"), ("nested", "sub/logits.npy")):
        cache, manifest = _copy_cache(work, tmp_path, name)
        manifest["parts"][0]["files"]["logits"] = path
        _write_manifest(cache, manifest)
        _refused(work, tmp_path, lambda: open_teacher_cache(cache),
                 f"names the logits file '{path}', not a file name inside the cache folder")


def test_view_boxes_outside_the_image_are_named_with_the_cache_and_file(work, tmp_path):
    from src.data import pipeline_error_message
    from src.files import file_sha256

    cache, manifest = _copy_cache(work, tmp_path, "boxes")
    views_file = manifest["parts"][0]["files"]["views"]
    views = np.load(os.path.join(cache, views_file), mmap_mode="r+")
    views[:, 0] = 20  # every box's top at row 20 of a 28-pixel image
    views[:, 2] = 20
    views.flush()
    del views
    manifest["parts"][0]["sha256"]["views"] = file_sha256(os.path.join(cache, views_file))  # a consistent cache
    _write_manifest(cache, manifest)
    pipeline = replayed(config(work, f"teacher_cache={cache}"))
    with pytest.raises(RuntimeError) as err:
        for _ in pipeline.create_tuple_iterator(num_epochs=1):
            pass
    message = pipeline_error_message(err.value)
    assert f"teacher_cache {cache}: {views_file} gives image" in message, message
    assert "top 20" in message and "outside its 28x28 pixels" in message
