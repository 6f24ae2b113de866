"""Data readers and pipelines on tiny files made in a temp dir."""
import gzip
import io
import logging
import os
import pickle

import mindspore.dataset as ds
import numpy as np
import pytest
from PIL import Image

from src.config import load_config
from src.data import PAD_LABEL, balanced_subset, create_dataset, load_source, pipeline_error_message
from src.data.cifar import read_cifar
from src.data.folder import check_jpeg, check_png, read_encoded
from src.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_mnist
from src.data.sampler import PaddedValSampler, padded_val_indices, shard_indices
from src.data.transforms import build_image_transforms

COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def make_cfg(dataset, data_dir=None, *extra):
    args = ["student=resnet18", "distiller=none", f"dataset={dataset}", "image_size=16", "batch_size=2",
            "num_workers=1", "seed=0"]
    if data_dir is not None:
        args.append(f"data_dir={data_dir}")
    return load_config(None, args + list(extra))


def batches(pipeline, epochs=1):
    it = pipeline.create_tuple_iterator(output_numpy=True, num_epochs=epochs)
    return [[(image, label) for image, label in it] for _ in range(epochs)]


# ----------------------------------------------------------------------------- tiny data makers

def jpeg_bytes(color, size=(20, 12)):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def make_image_folder(root, per_class=None, splits=("train", "val")):
    per_class = per_class or {"train": 3, "val": 2}
    for split in splits:
        for label, color in enumerate(COLORS):
            folder = os.path.join(root, split, f"class_{label}")
            os.makedirs(folder, exist_ok=True)
            for i in range(per_class[split]):
                with open(os.path.join(folder, f"img_{i}.jpg"), "wb") as f:
                    f.write(jpeg_bytes(color))
    return str(root)


def cifar_arrays(count, num_classes, seed):
    rng = np.random.RandomState(seed)
    rows = rng.randint(0, 256, size=(count, 3072)).astype(np.uint8)
    labels = rng.randint(0, num_classes, size=count)
    return rows, labels


def planes_to_hwc(rows):
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def write_cifar100_pickle(root, train=7, test=5):
    folder = os.path.join(root, "cifar-100-python")
    os.makedirs(folder, exist_ok=True)
    made = {}
    for name, count, seed in (("train", train, 1), ("test", test, 2)):
        rows, labels = cifar_arrays(count, 100, seed)
        data = {b"data": rows, b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist()}
        with open(os.path.join(folder, name), "wb") as f:
            pickle.dump(data, f)
        made[name] = (rows, labels)
    return str(root), made


def write_cifar100_binary(root, train=6, test=3):
    made = {}
    for name, count, seed in (("train", train, 3), ("test", test, 4)):
        rows, labels = cifar_arrays(count, 100, seed)
        records = np.concatenate([(labels // 5)[:, None], labels[:, None], rows], axis=1).astype(np.uint8)
        records.tofile(os.path.join(root, f"{name}.bin"))
        made[name] = (rows, labels)
    return str(root), made


def idx_bytes(array, magic):
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_set(root, counts=(6, 4), gz=True):
    os.makedirs(root, exist_ok=True)
    made = {}
    for prefix, count, seed in (("train", counts[0], 5), ("t10k", counts[1], 6)):
        rng = np.random.RandomState(seed)
        images = rng.randint(0, 256, size=(count, 28, 28)).astype(np.uint8)
        labels = rng.randint(0, 10, size=count).astype(np.uint8)
        for stem, array, magic in ((f"{prefix}-images-idx3-ubyte", images, IMAGES_MAGIC),
                                   (f"{prefix}-labels-idx1-ubyte", labels, LABELS_MAGIC)):
            data = idx_bytes(array, magic)
            path = os.path.join(root, stem + (".gz" if gz else ""))
            with open(path, "wb") as f:
                f.write(gzip.compress(data) if gz else data)
        made[prefix] = (images, labels)
    return str(root), made


# ----------------------------------------------------------------------------- image folder

def test_image_folder_counts_labels_and_batches(tmp_path):
    root = make_image_folder(tmp_path / "imgs")
    cfg = make_cfg("imagefolder", root, "num_classes=3")
    train = load_source(cfg, "train")
    assert len(train) == 9 and train.classes == ["class_0", "class_1", "class_2"]
    for i in range(len(train)):
        image, label = train[i]
        assert image.shape == (12, 20, 3) and image.dtype == np.uint8 and label.dtype == np.int32
        assert int(np.argmax(image.reshape(-1, 3).mean(0))) == int(label)  # the class colour
    epoch = batches(create_dataset(cfg, "train", source=train))[0]
    assert len(epoch) == 4  # 9 samples, batch 2, the remainder dropped
    image, label = epoch[0]
    assert image.shape == (2, 3, 16, 16) and image.dtype == np.float32
    assert label.shape == (2,) and label.dtype == np.int32
    val = batches(create_dataset(cfg, "val"))[0]
    labels = np.concatenate([label for _, label in val])
    assert len(val) == 3 and sorted(labels[labels >= 0].tolist()) == [0, 0, 1, 1, 2, 2]
    assert val[0][0].shape == (2, 3, 16, 16)


def test_image_folder_structure_errors_name_the_path(tmp_path):
    root = make_image_folder(tmp_path / "imgs", splits=("train",))
    cfg = make_cfg("imagefolder", root, "num_classes=3")
    with pytest.raises(ValueError, match=f"split not found: {os.path.join(root, 'val')}"):
        create_dataset(cfg, "val")
    empty = os.path.join(root, "train", "class_3")
    os.makedirs(empty)
    with pytest.raises(ValueError, match=f"empty class folder: {empty}"):
        load_source(make_cfg("imagefolder", root, "num_classes=4"), "train")
    with pytest.raises(ValueError, match="num_classes is 3 but .* has 4 class folders"):
        load_source(cfg, "train")
    os.rmdir(empty)
    os.rename(os.path.join(root, "train"), os.path.join(root, "val"))  # an eval-only copy: val/ alone
    assert len(load_source(cfg, "val")) == 9


def textured_image(seed, size=(40, 30), format="JPEG", mode="RGB", **save):
    """Encoded bytes of a smooth random image (JPEG-like content, so decoders and resizers are exercised)."""
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 256, size=(size[1] // 8 + 1, size[0] // 8 + 1, 3)).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize(size, Image.BILINEAR).convert(mode).save(buffer, format=format, **save)
    return buffer.getvalue()


def write_file(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def test_cpp_decoding_keeps_labels_and_order(tmp_path):
    root = make_image_folder(tmp_path / "imgs")
    cfg = make_cfg("imagefolder", root, "num_classes=3", "num_workers=2")
    val_source = load_source(cfg, "val")
    images, labels = map(np.concatenate, zip(*batches(create_dataset(cfg, "val"))[0]))
    assert labels.tolist() == val_source.labels.tolist() == [0, 0, 1, 1, 2, 2]  # file order, no padding needed
    assert (images.mean(axis=(2, 3)).argmax(axis=1) == labels).all()  # each image is its class colour
    train_source = load_source(cfg, "train")
    images, labels = map(np.concatenate, zip(*batches(create_dataset(cfg, "train", source=train_source))[0]))
    order = shard_indices(len(train_source), 0, 1, True, 0, 0)[:8]  # the sampler's epoch-0 order, 4 full batches
    assert labels.tolist() == train_source.labels[order].tolist()
    assert (images.mean(axis=(2, 3)).argmax(axis=1) == labels).all()


def test_eval_transforms_match_the_pil_path(tmp_path):
    """C++ ``Decode`` of JPEG/PNG gives PIL's pixels exactly (both use libjpeg-turbo / libpng), so the val
    tensors equal those of the former path: PIL decoding, then the same resize/crop/normalise ops."""
    files = {"a/0.jpg": textured_image(0), "a/1.jpg": textured_image(1, (30, 44), quality=70),
             "a/2.jpg": textured_image(2, (33, 27), mode="L"),
             "b/0.jpg": textured_image(3, progressive=True), "b/1.png": textured_image(4, format="PNG"),
             "b/2.png": textured_image(5, (25, 41), format="PNG", mode="RGBA"),
             "c/0.bmp": textured_image(6, format="BMP"), "c/1.jpg": textured_image(7, (64, 48), mode="CMYK")}
    if "WEBP" in Image.registered_extensions().values():
        files["c/2.webp"] = textured_image(8, format="WEBP")  # not decodable in C++: PIL, handed on as BMP
    for name, data in files.items():
        write_file(os.path.join(tmp_path, "val", name), data)
    cfg = make_cfg("imagefolder", str(tmp_path), "num_classes=3", "crop_pct=0.9")
    source = load_source(cfg, "val")
    new = np.concatenate([image for image, _ in batches(create_dataset(cfg, "val", source=source))[0]])
    old = ds.GeneratorDataset(source, ["image", "label"], sampler=PaddedValSampler(len(source), batch_size=2))
    old = old.map(operations=build_image_transforms(cfg, False), input_columns="image").batch(2)
    old = np.concatenate([image for image, _ in batches(old)[0]])
    assert new.shape == old.shape == (len(files) + len(files) % 2, 3, 16, 16)
    np.testing.assert_allclose(new, old, atol=1e-5)


def test_structure_checks_find_broken_files(tmp_path):
    jpeg, png = textured_image(0), textured_image(0, format="PNG")
    assert check_jpeg(jpeg) == "" and check_png(png) == ""
    assert check_jpeg(textured_image(1, progressive=True)) == ""
    lossless = bytearray(jpeg)
    lossless[lossless.index(b"\xff\xc0") + 1] = 0xC3  # a lossless frame: not for MindSpore's decoder
    assert check_jpeg(bytes(lossless)) is None
    for cut in (20, 200, len(jpeg) // 2, len(jpeg) - 2):  # a 200-byte JPEG crashes MindSpore's decoder
        assert check_jpeg(jpeg[:cut]) != "", cut
    assert "truncated" in check_png(png[:-12])
    flipped = bytearray(png)
    flipped[60] ^= 0xFF
    assert "wrong CRC" in check_png(bytes(flipped))
    garbage = write_file(os.path.join(tmp_path, "x.jpg"), b"not an image at all")
    with pytest.raises(ValueError, match=f"cannot read image {garbage}: UnidentifiedImageError"):
        read_encoded(garbage)
    big = textured_image(2, (200, 150))  # half of it ends inside the entropy-coded data
    half = write_file(os.path.join(tmp_path, "half.jpg"), big[:len(big) // 2])
    with pytest.raises(ValueError, match=f"cannot read image {half}: truncated"):
        read_encoded(half)


def corrupt_folder(root, split):
    root = make_image_folder(root, splits=("train", "val"))
    bad = os.path.join(root, split, "class_1", "img_1.jpg" if split == "val" else "img_2.jpg")
    with open(bad, "wb") as f:
        f.write(jpeg_bytes(COLORS[1])[:200])  # truncated JPEG: the header opens, decoding fails
    return root, bad


def test_corrupt_image_is_named_or_skipped(tmp_path, caplog):
    root, bad = corrupt_folder(tmp_path / "imgs", "train")  # the last image of class_1
    cfg = make_cfg("imagefolder", root, "num_classes=3")
    with pytest.raises(RuntimeError, match=bad) as excinfo:
        batches(create_dataset(cfg, "train"))
    message = pipeline_error_message(excinfo.value)
    assert message.startswith(f"cannot read image {bad}: ") and "\n" not in message
    skip_cfg = make_cfg("imagefolder", root, "num_classes=3", "skip_corrupt=true")
    source = load_source(skip_cfg, "train")
    position = source.paths.index(bad)
    with caplog.at_level(logging.WARNING, logger="src.data.folder"):
        data, label = source.encoded()[position]
        image, decoded_label = source[position]  # the decoded (teacher-cache) path skips the same way
    # replaced by the next image, class_2/img_0, and its label goes with it
    assert int(label) == int(decoded_label) == int(source.labels[position + 1]) == 2
    assert image.shape == (12, 20, 3) and data.tobytes() == jpeg_bytes(COLORS[2])
    assert [r.getMessage() for r in caplog.records if bad in r.getMessage()]  # logged once per file
    assert len(batches(create_dataset(skip_cfg, "train", source=source))[0]) == 4


def test_skipped_val_image_is_counted_once(tmp_path, caplog):
    root, bad = corrupt_folder(tmp_path / "imgs", "val")
    with pytest.raises(RuntimeError, match=bad):
        batches(create_dataset(make_cfg("imagefolder", root, "num_classes=3"), "val"))
    cfg = make_cfg("imagefolder", root, "num_classes=3", "skip_corrupt=true")
    with caplog.at_level(logging.WARNING, logger="src.data.folder"):
        labels = np.concatenate([label for _, label in batches(create_dataset(cfg, "val"))[0]])
    # the corrupt class_1 image becomes padding: 5 images are evaluated, the next one is not counted twice
    assert sorted(labels[labels >= 0].tolist()) == [0, 0, 1, 2, 2] and (labels == PAD_LABEL).sum() == 1
    assert any(bad in record.getMessage() for record in caplog.records)


def test_corrupt_image_with_python_multiprocessing(tmp_path):
    """Python transforms in worker processes (RandAugment): the error still names the file in one line,
    and skipping still works."""
    root, bad = corrupt_folder(tmp_path / "imgs", "train")
    extra = ("num_classes=3", "python_multiprocessing=true", "num_workers=2", "auto_augment=rand-m9-mstd0.5-inc1")
    with pytest.raises(RuntimeError) as excinfo:
        batches(create_dataset(make_cfg("imagefolder", root, *extra), "train"))
    assert pipeline_error_message(excinfo.value).startswith(f"cannot read image {bad}: ")
    epoch = batches(create_dataset(make_cfg("imagefolder", root, *extra, "skip_corrupt=true"), "train"))[0]
    assert len(epoch) == 4 and epoch[0][0].shape == (2, 3, 16, 16)


def test_error_message_of_a_worker_process():
    """A source running in a worker process fails as "ValueError: Traceback ..." around the cause."""
    err = RuntimeError("Exception thrown from user defined Python function in dataset.\n"
                       "- Python Call Stack:\nTraceback (most recent call last):\n"
                       "  File \"datasets_user_defined.py\", line 409, in process\n"
                       "ValueError: Traceback (most recent call last):\n"
                       "  File \"src/data/folder.py\", line 74, in load\n"
                       "ValueError: cannot read image /d/train/a/1.jpg: OSError: Truncated File Read\n"
                       "- Dataset Pipeline Error Message:\n[ERROR] Execute user Python code failed")
    assert pipeline_error_message(err) == "cannot read image /d/train/a/1.jpg: OSError: Truncated File Read"


# ----------------------------------------------------------------------------- CIFAR

def test_cifar100_pickle_reader(tmp_path):
    root, made = write_cifar100_pickle(tmp_path / "c100")
    images, labels = read_cifar(root, "train", 100)
    assert images.shape == (7, 32, 32, 3) and images.dtype == np.uint8
    np.testing.assert_array_equal(images, planes_to_hwc(made["train"][0]))
    np.testing.assert_array_equal(labels, made["train"][1])
    cfg = make_cfg("cifar100", root)
    val = batches(create_dataset(cfg, "val"))[0]
    labels = np.concatenate([label for _, label in val])
    assert val[0][0].shape == (2, 3, 16, 16) and val[0][0].dtype == np.float32
    assert sorted(labels[labels >= 0].tolist()) == sorted(made["test"][1].tolist())
    assert (labels == PAD_LABEL).sum() == 1  # 5 samples padded to 3 batches of 2


def test_cifar100_binary_reader_any_record_count(tmp_path):
    root, made = write_cifar100_binary(str(tmp_path))
    images, labels = read_cifar(root, "train", 100)
    assert images.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(images, planes_to_hwc(made["train"][0]))
    np.testing.assert_array_equal(labels, made["train"][1])  # the fine label, not the coarse one
    assert len(load_source(make_cfg("cifar100", root), "val")) == 3
    with open(os.path.join(root, "train.bin"), "ab") as f:
        f.write(b"\0" * 10)
    with pytest.raises(ValueError, match="train.bin: .* not a whole number of CIFAR-100 records"):
        read_cifar(root, "train", 100)


def test_cifar10_pickle_batches_and_missing_files(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    expected = []
    for name, seed in [(f"data_batch_{i}", i) for i in range(1, 6)] + [("test_batch", 9)]:
        rows, labels = cifar_arrays(2, 10, seed)
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": rows, b"labels": labels.tolist()}, f)
        if name != "test_batch":
            expected.extend(labels.tolist())
    images, labels = read_cifar(str(tmp_path), "train", 10)
    assert images.shape == (10, 32, 32, 3) and labels.tolist() == expected
    os.remove(folder / "data_batch_3")
    with pytest.raises(ValueError, match="missing .*data_batch_3"):
        read_cifar(str(tmp_path), "train", 10)
    with pytest.raises(ValueError, match="no CIFAR-100 files"):
        read_cifar(str(tmp_path), "train", 100)


# ----------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_gz_and_plain(tmp_path, gz):
    root, made = write_idx_set(str(tmp_path / "mnist"), gz=gz)
    images, labels = read_mnist(root, "train")
    np.testing.assert_array_equal(images, made["train"][0])
    np.testing.assert_array_equal(labels, made["train"][1])
    cfg = make_cfg("fashion_mnist", root)
    source = load_source(cfg, "val")
    assert len(source) == 4
    image, label = source[0]
    assert image.shape == (28, 28, 3) and (image[..., 0] == made["t10k"][0][0]).all()
    val = batches(create_dataset(cfg, "val"))[0]
    image = val[0][0]
    assert image.shape == (2, 3, 16, 16)
    np.testing.assert_allclose(image[:, 0], image[:, 2], atol=1e-5)  # gray repeated to 3 channels


def test_idx_wrong_magic_names_the_file(tmp_path):
    root, _ = write_idx_set(str(tmp_path / "mnist"), gz=False)
    path = os.path.join(root, "train-labels-idx1-ubyte")
    with open(path, "r+b") as f:
        f.write(IMAGES_MAGIC.to_bytes(4, "big"))  # an image magic in a label file
    with pytest.raises(ValueError, match=f"{path}: wrong IDX magic number 0x00000803, expected 0x00000801"):
        read_mnist(root, "train")
    with pytest.raises(ValueError, match="IDX file not found"):
        read_mnist(str(tmp_path), "train")


def test_grayscale_one_channel_input(tmp_path):
    root, _ = write_idx_set(str(tmp_path / "mnist"))
    cfg = make_cfg("mnist", root, "in_channels=1", "auto_augment=randaug-m9-mstd0.5-inc1", "re_prob=0.5")
    image, label = batches(create_dataset(cfg, "train"))[0][0]
    assert image.shape == (2, 1, 16, 16) and image.dtype == np.float32 and label.dtype == np.int32


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST), reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_counts():
    images, labels = read_mnist(FASHION_MNIST, "train")
    assert images.shape == (60000, 28, 28) and np.bincount(labels).tolist() == [6000] * 10
    assert read_mnist(FASHION_MNIST, "val")[0].shape == (10000, 28, 28)


# ----------------------------------------------------------------------------- sharding, order, subsets

def test_two_way_sharding_has_no_overlap(tmp_path):
    root = str(tmp_path)
    rows = np.zeros((8, 3072), np.uint8)
    (np.concatenate([np.zeros((8, 1)), np.arange(8)[:, None], rows], axis=1).astype(np.uint8)
     .tofile(os.path.join(root, "train.bin")))  # label i for sample i
    (np.concatenate([np.zeros((7, 1)), np.arange(7)[:, None], rows[:7]], axis=1).astype(np.uint8)
     .tofile(os.path.join(root, "test.bin")))
    cfg = make_cfg("cifar100", root)
    seen = {}
    for split in ("train", "val"):
        for rank in (0, 1):
            epoch = batches(create_dataset(cfg, split, rank=rank, group_size=2))[0]
            seen[split, rank] = np.concatenate([label for _, label in epoch]).tolist()
    assert len(seen["train", 0]) == len(seen["train", 1]) == 4
    assert sorted(seen["train", 0] + seen["train", 1]) == list(range(8))
    assert len(seen["val", 0]) == len(seen["val", 1]) == 4  # the same number of batches on both ranks
    real = [x for x in seen["val", 0] + seen["val", 1] if x != PAD_LABEL]
    assert sorted(real) == list(range(7))  # every val sample exactly once


def test_train_order_depends_only_on_epoch(tmp_path):
    root, _ = write_cifar100_binary(str(tmp_path), train=6)
    cfg = make_cfg("cifar100", root)
    run = batches(create_dataset(cfg, "train"), epochs=3)
    orders = [np.concatenate([label for _, label in epoch]).tolist() for epoch in run]
    assert orders[0] != orders[1] or orders[1] != orders[2]  # reshuffled every epoch
    resumed = batches(create_dataset(cfg, "train", start_epoch=1), epochs=2)
    assert [np.concatenate([label for _, label in epoch]).tolist() for epoch in resumed] == orders[1:]


def test_sampler_index_math():
    shards = [shard_indices(10, r, 3, True, 0, 0) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    assert set(np.concatenate(shards)) == set(range(10))
    assert padded_val_indices(5, 1, 2, 4).tolist() == [1, 3, -1, -1]


def test_balanced_subset_and_train_subset(tmp_path):
    labels = np.repeat(np.arange(4), [10, 10, 10, 2])
    picked = balanced_subset(labels, 10, seed=0)
    counts = np.bincount(labels[picked], minlength=4)
    assert counts[3] == 2 and sorted(counts[:3].tolist()) == [2, 3, 3]  # round-robin over classes
    assert balanced_subset(labels, 10, seed=0).tolist() == picked.tolist()  # fixed by the seed
    root = make_image_folder(tmp_path / "imgs")
    source = load_source(make_cfg("imagefolder", root, "num_classes=3", "train_subset=6"), "train")
    assert len(source) == 6 and np.bincount(source.labels).tolist() == [2, 2, 2]


def test_batch_larger_than_shard_is_an_error(tmp_path):
    root, _ = write_cifar100_binary(str(tmp_path), train=6)
    with pytest.raises(ValueError, match="batch_size 4 is larger than the 3 train samples"):
        create_dataset(make_cfg("cifar100", root, "batch_size=4"), "train", rank=0, group_size=2)


# ----------------------------------------------------------------------------- mixup, fake

def test_mixup_cutmix_give_soft_labels_summing_to_one(tmp_path):
    root, _ = write_cifar100_binary(str(tmp_path), train=8)
    cfg = make_cfg("cifar100", root, "batch_size=4", "mixup=0.8", "cutmix=1.0", "label_smoothing=0.1",
                   "auto_augment=rand-m9-mstd0.5-inc1", "re_prob=0.25", "color_jitter=0.4")
    for image, label in batches(create_dataset(cfg, "train"), epochs=2)[1]:
        assert image.shape == (4, 3, 16, 16) and image.dtype == np.float32
        assert label.shape == (4, 100) and label.dtype == np.float32
        np.testing.assert_allclose(label.sum(axis=1), 1.0, rtol=1e-5)
        assert label.min() >= 0.1 / 100 - 1e-7 and (label > 0.1).sum(axis=1).min() >= 1
    image, label = batches(create_dataset(cfg, "val"))[0][0]
    assert label.dtype == np.int32 and label.shape == (4,)  # val labels stay hard


def test_fake_dataset_for_benchmarks():
    cfg = make_cfg("fake", None, "fake_samples=10", "num_classes=5", "image_size=24", "batch_size=4")
    train = batches(create_dataset(cfg, "train"))[0]
    assert len(train) == 2 and train[0][0].shape == (4, 3, 24, 24) and train[0][0].dtype == np.float32
    assert all(0 <= label.min() and label.max() < 5 for _, label in train)
    val = batches(create_dataset(cfg, "val"))[0]
    assert len(val) == 3 and (np.concatenate([label for _, label in val]) == PAD_LABEL).sum() == 2
