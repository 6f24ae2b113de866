"""Our data transforms against timm's, recipe by recipe (benchmarks/transforms_twin.py does the comparing).

The first tests need nothing but our code (torchvision's resize / crop rules, timm's erasing statistics, the
RandAugment op list); the rest compare against timm itself and need PyTorch, timm and torchvision, which CI
installs (.ci/run); without them they are skipped with the reason.
"""
import math
import random

import numpy as np
import pytest

from benchmarks import transforms_twin as twin
from src.data.random_erasing import RandomErasing
from src.data.transforms import (ResizeCenterCrop, build_image_transforms, center_crop_box,
                                 eval_scale_size, resized_size)

RECIPES = twin.RECIPES


# ------------------------------------------------------------------------------ without timm

def test_torchvision_resize_and_crop_rules():
    # shorter side to the size, the longer one truncated (not rounded): 256 * 500 / 375 = 341.33, 640 -> 383.6
    assert resized_size(375, 500, 256) == (256, 341)
    assert resized_size(500, 375, 256) == (341, 256)
    assert resized_size(427, 640, 256) == (256, 383)
    assert resized_size(231, 231, 256) == (256, 256)
    assert eval_scale_size(224, 0.875) == 256 and eval_scale_size(224, 0.9) == 248 and eval_scale_size(64, 0.875) == 73
    # offsets round half to even (Python's round): (341 - 224) / 2 = 58.5 -> 58, (383 - 224) / 2 = 79.5 -> 80
    assert center_crop_box(256, 341, 224) == (16, 58)
    assert center_crop_box(256, 383, 224) == (16, 80)


def test_resize_center_crop_keeps_the_centre_and_antialiases():
    image = np.zeros((375, 500, 3), dtype=np.uint8)
    image[:, ::2] = 255  # one-pixel stripes: averaged to grey by an antialiasing filter, aliased without one
    out = ResizeCenterCrop(224, 0.875, "bilinear")(image)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert 100 < out.mean() < 155 and out.std() < 40


def test_random_erasing_is_timms_distribution():
    erasing = RandomErasing(1.0, "pixel")
    random.seed(0)
    boxes = np.array([erasing.box(224, 224) for _ in range(4000)], dtype=np.float64)
    area = boxes[:, 2] * boxes[:, 3] / 224 ** 2
    log_aspect = np.log(boxes[:, 2] / boxes[:, 3])
    # area uniform in [0.02, 1/3] (mean 0.177, less the few boxes too large to place); aspect log-uniform,
    # symmetric around 1 (MindSpore's own draws it uniformly in [0.3, 3.3]: mean log aspect 0.43)
    assert abs(area.mean() - 0.177) < 0.01 and area.max() < 0.35
    assert abs(log_aspect.mean()) < 0.03 and log_aspect.min() > math.log(0.3) - 0.05
    np.random.seed(0)
    erased = erasing(np.zeros((3, 32, 32), dtype=np.float32))
    fill = erased[erased != 0]
    assert fill.size > 0 and abs(fill.std() - 1) < 0.2  # per-pixel standard normal noise
    assert (RandomErasing(1.0, "const")(np.ones((3, 32, 32), dtype=np.float32)) == 0).any()
    with pytest.raises(ValueError, match="random erasing mode"):
        RandomErasing(0.5, "noise")


def test_rand_augment_has_timms_fifteen_ops():
    cfg = twin.recipe_config("imagenet_vit_mlp")
    ra = next(op for op in build_image_transforms(cfg, True) if type(op).__name__ == "RandAugment")
    names = [op.name for op in ra.ops]
    assert len(names) == 15 and "SolarizeAdd" in names and "TranslateXRel" in names
    solarize_add = ra.ops[names.index("SolarizeAdd")]
    image = np.array([[[0, 127, 128], [200, 100, 255]]], dtype=np.uint8)
    out = solarize_add.aug_fn(image, *solarize_add.level_fn(9.0, solarize_add.hparams))
    assert out.tolist() == [[[99, 226, 128], [200, 199, 255]]]  # +99 (= int(0.9 * 110)) below 128 only


# ------------------------------------------------------------------------------ against timm

@pytest.fixture(scope="module")
def timm():
    try:
        from benchmarks.timm_twin import has_real_torchvision, import_timm

        module = import_timm()
    except ImportError:
        pytest.skip("needs PyTorch and timm (test-only): pip install torch==2.13.0 && pip install --no-deps timm==1.0.31")
    if not has_real_torchvision(module):
        pytest.skip("timm's transforms need torchvision: pip install --no-deps torchvision==0.28.0 (see .ci/run)")
    import timm.data  # noqa: F401

    return module


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jpegs")
    twin.write_jpegs(str(folder), sizes=((500, 375), (375, 500), (231, 231), (640, 427)))
    return str(folder)


@pytest.mark.parametrize("recipe", RECIPES)
def test_eval_preprocessing_equals_timms(timm, jpegs, recipe):
    """C++ JPEG decoding gives PIL's pixels, resize and crop are torchvision's: the tensors agree to float
    rounding (measured 0 / 255 at 224, 96 and 64 px; the C++ resize was up to 181 / 255 off)."""
    arrays = np.random.RandomState(1).randint(0, 256, size=(2, 32, 32, 3)).astype(np.uint8)
    rows = twin.eval_differences(timm, recipe, 96, jpegs, arrays if recipe.startswith("cifar") else None)
    assert len(rows) == 4 + (2 if recipe.startswith("cifar") else 0)
    worst = max(rows, key=lambda row: row["max_abs_255"])
    assert worst["max_abs_255"] < 0.01, worst


@pytest.mark.parametrize("recipe", RECIPES)
def test_training_parameters_equal_timms(timm, recipe):
    cfg = twin.recipe_config(recipe)
    ours, theirs = twin.our_train_parameters(cfg), twin.timm_train_parameters(timm, cfg)
    assert twin.parameter_differences(ours, theirs) == []
    assert ours["crop"]["scale"] == [0.08, 1.0] and ours["hflip"] == 0.5
    if recipe.endswith("vit_mlp"):
        assert ours["erasing"]["mode"] == "pixel" and ours["mixup"]["cutmix_alpha"] == 1.0
        assert len(ours["rand_augment"]["ops"]) == 15


def test_parameter_comparison_finds_a_difference(timm):
    cfg = twin.recipe_config("imagenet_vit_mlp", "re_mode=const", "ratio=[0.5, 2.0]")
    found = twin.parameter_differences(twin.our_train_parameters(cfg),
                                       twin.timm_train_parameters(timm, twin.recipe_config("imagenet_vit_mlp")))
    assert any(line.startswith("erasing.mode") for line in found)
    assert any(line.startswith("crop.ratio") for line in found)


def test_erasing_rand_augment_and_mixup_draw_for_draw(timm):
    """Same seeds, same draws: erasing boxes, RandAugment ops and magnitudes, mixup / cutmix batches
    (CutMix boxes as timm 0.6.5 draws them; timm 1.0 makes odd-sized boxes one pixel larger)."""
    cfg = twin.recipe_config("imagenet_vit_mlp")
    erasing = twin.erasing_comparison(timm, cfg, 500)
    assert erasing["differing_boxes"] == 0 and 0.2 < erasing["erased_fraction"] < 0.3
    rand_augment = twin.rand_augment_comparison(timm, cfg, 300)
    assert rand_augment["differing_calls"] == 0 and rand_augment["calls"][0] > 250
    # each op's pixels: exact, the four enhance ops within PIL-vs-ours rounding (1 / 255)
    outputs = twin.rand_augment_op_outputs(timm, cfg)
    assert len(outputs) == 15 and max(outputs.values()) <= 1.0, outputs
    mixup = twin.mixup_comparison(timm, cfg, 60, bbox_065=True)
    assert mixup["differing_batches"] == 0 and min(mixup["kinds"].values()) > 10
    assert twin.mixup_comparison(timm, cfg, 60)["differing_batches"] > 0  # timm 1.0's box: the test can fail


@pytest.mark.slow
def test_random_resized_crop_statistics_agree(timm):
    """10k boxes of MindSpore's C++ RandomCropDecodeResize against timm's get_params on a 250x200 image.
    Tolerances ~4 standard errors of the difference: 0.015 on the mean area fraction (0.45), 0.01 on the
    mean log aspect and the mean centre (fractions of the size). Seeded: the same numbers every run."""
    result = twin.crop_comparison(timm, twin.recipe_config("imagenet_cnn"), 10000)
    ours, theirs = result["ours"], result["timm"]
    assert abs(ours["area"]["mean"] - theirs["area"]["mean"]) < 0.015, result
    for key in ("log_aspect", "center_x", "center_y"):
        assert abs(ours[key]["mean"] - theirs[key]["mean"]) < 0.01, (key, result)
