"""Exit branches: parameter counts equal the authors' code's (docs/method.md), shapes, errors."""
import numpy as np
import pytest

import mindspore as ms

from src.distill import ConvBranch, TokenBranch, build_branch
from src.models import create_model


def n_params(cell):
    return sum(int(np.prod(p.shape)) for p in cell.trainable_params())


# student, teacher, classes, per-stage branch parameters of the authors' branches (random init)
REFERENCE_ROWS = [
    ("resnet18", "deit_tiny", 1000, (781_800, 767_976, 715_752, 775_656)),
    ("resnet18", "swin_tiny", 100, (411_748, 397_924, 345_700, 470_884)),
    ("mobilenetv2_100", "deit_tiny", 100, (275_044, 221_796, 264_676, 1_767_780)),
    ("deit_tiny", "resnet18", 1000, (1_674_856, 1_230_568, 786_280, 786_280)),
    ("swin_nano", "convnext_tiny", 1000, (12_202_472, 8_130_536, 4_190_184, 3_663_848)),
    ("resmlp_12", "convnext_tiny", 100, (5_951_332, 4_178_020, 2_404_708, 2_404_708)),
]
TEACHER_DIM = {"deit_tiny": 192, "swin_tiny": 768, "convnext_tiny": 768, "resnet18": 512}


@pytest.mark.parametrize("student,teacher,classes,expected", REFERENCE_ROWS,
                         ids=[f"{s}<-{t}" for s, t, _, _ in REFERENCE_ROWS])
def test_branch_parameter_counts_match_reference(student, teacher, classes, expected):
    net = create_model(student, num_classes=classes, image_size=224)
    shapes = net.stage_shapes(224)
    counts = tuple(n_params(build_branch(net, s, shapes[s - 1], TEACHER_DIM[teacher], classes)) for s in (1, 2, 3, 4))
    assert counts == expected
    assert sum(counts) == sum(expected)


def test_teacher_feature_dims_used_above_are_the_models():
    for name, dim in TEACHER_DIM.items():
        assert create_model(name, num_classes=10, image_size=224).feature_dim == dim


def test_conv_branch_maps_stage_to_logits():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    branch = ConvBranch(16, stage=2, width=64, num_classes=7)
    out = branch(ms.Tensor(np.random.randn(2, 16, 8, 8).astype(np.float32)))
    assert out.shape == (2, 7)


def test_token_branch_keeps_cls_token_out_of_the_merge():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    # 1 cls + 14x14 patches -> one merge to 7x7, read-out is the cls token
    branch = TokenBranch(197, 32, stage=3, width=32, num_classes=5, num_prefix_tokens=1)
    assert len(branch.merge) == 1
    x = np.random.RandomState(0).randn(2, 197, 32).astype(np.float32)
    out = branch(ms.Tensor(x))
    assert out.shape == (2, 5)
    # changing only the cls token changes the output: it is carried through, not merged away
    x2 = x.copy()
    x2[:, 0] += 1.0
    assert not np.allclose(out.asnumpy(), branch(ms.Tensor(x2)).asnumpy())


def test_token_branch_merge_count_and_projection_for_narrow_stage():
    # Swin-like stage 1 at 32 px: 8x8 grid -> no merge, width 48 -> 96 needs a projection
    branch = TokenBranch(64, 48, stage=1, width=96, num_classes=3)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    out = branch(ms.Tensor(np.random.randn(2, 64, 48).astype(np.float32)))
    assert out.shape == (2, 3)
    # 56x56 grid -> 3 merges to 7x7
    assert len(TokenBranch(3136, 16, stage=1, width=32, num_classes=3).merge) == 3


@pytest.mark.parametrize("tokens,match", [(200, "square"), (30 * 30, "cannot be merged")])
def test_token_branch_rejects_unmergeable_grids(tokens, match):
    with pytest.raises(ValueError, match=match):
        TokenBranch(tokens, 16, stage=1, width=16, num_classes=3)
