"""Every shipped config loads, names registered models, and matches the recipe it claims."""
import glob
import os
import re

import pytest

from src.config import load_config
from src.models import list_models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAIR_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "imagenet", "*.yaml")) +
                    glob.glob(os.path.join(ROOT, "configs", "cifar100", "*.yaml")))


def test_every_published_pair_has_a_config():
    names = {os.path.relpath(p, os.path.join(ROOT, "configs")) for p in PAIR_FILES}
    for pair in ("cifar100/swin_tiny_to_resnet18.yaml", "cifar100/vit_small_to_mobilenetv2_100.yaml",
                 "cifar100/convnext_tiny_to_deit_tiny.yaml", "cifar100/convnext_tiny_to_resmlp_12.yaml",
                 "imagenet/swin_tiny_to_resnet18.yaml", "imagenet/convnext_tiny_to_deit_tiny.yaml",
                 "imagenet/beitv2_base_to_cyclemlp_b3.yaml", "imagenet/resnet34_to_resnet18.yaml"):
        assert pair in names
    assert len([n for n in names if n.startswith("cifar100/")]) == 12


@pytest.mark.parametrize("path", PAIR_FILES, ids=[os.path.basename(p) for p in PAIR_FILES])
def test_pair_config_loads_and_names_registered_models(path, tmp_path):
    cfg = load_config(path, [f"data_dir={tmp_path}"])
    assert cfg.student in list_models() and cfg.teacher in list_models()
    assert cfg.distiller == "ofa" and cfg.image_size == 224
    if "/cifar100/" in path:
        assert cfg.num_classes == 100 and cfg.epochs == 300 and cfg.loss_weights == [1.0, 1.0] and cfg.ofa_branch_weight == 0.1
    else:
        assert cfg.num_classes == 1000 and cfg.eps == [1.5]
    expected_opt = "sgd" if cfg.student in ("resnet18", "resnet34", "mobilenetv1", "mobilenetv2_100") else "adamw"
    assert cfg.opt == expected_opt


FASHION = sorted(p for p in glob.glob(os.path.join(ROOT, "configs", "fashion_mnist", "*.yaml"))
                 if os.path.basename(p) != "base.yaml")  # base.yaml names no student on purpose


@pytest.mark.parametrize("path", FASHION, ids=[os.path.basename(p) for p in FASHION])
def test_fashion_mnist_configs_load(path):
    # the study's files are bases that tools/study.py completes with the models of each run
    extra = ["student=vit_p4_pico", "teacher=resnet10"] if os.path.basename(path).startswith("study_") else []
    cfg = load_config(path, extra)
    assert cfg.dataset == "fashion_mnist" and cfg.student in list_models()


def test_the_configs_page_names_only_config_files_that_exist():
    with open(os.path.join(ROOT, "docs", "configs.md"), encoding="utf-8") as f:
        text = f.read()
    start = text.index("configs/\n")
    tree = text[start:text.index("```", start)]  # the folder tree at the top of the page
    shipped = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "configs", "**", "*.yaml"), recursive=True)}
    named = set(re.findall(r"[\w.]+\.yaml", tree))
    assert {"demo_teacher.yaml", "demo_student.yaml"} <= named
    assert named <= shipped, sorted(named - shipped)
