"""Learning-rate schedules: the reference recipes' epoch schedules (timm 0.6.5), sampled per step."""
import math

import pytest

from src.engine import lr_schedule


def timm_epoch_lr(scheduler, epoch, lr, min_lr, epochs, warmup_epochs, warmup_lr, decay_epochs=30, decay_rate=0.1):
    """The rate timm 0.6.5's CosineLRScheduler / StepLRScheduler (t_in_epochs, no warm-up prefix) use in ``epoch``."""
    if epoch < warmup_epochs:
        return warmup_lr + epoch * (lr - warmup_lr) / warmup_epochs
    if scheduler == "cosine":
        return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * epoch / epochs))
    return lr * decay_rate ** (epoch // decay_epochs)


RECIPES = {  # scheduler, lr, min_lr, epochs, warm-up epochs, warm-up lr (configs/recipes)
    "imagenet_cnn": ("step", 0.1, 1e-6, 100, 3, 1e-4),
    "imagenet_vit_mlp": ("cosine", 5e-4, 1e-6, 300, 20, 5e-7),
    "cifar100_cnn": ("cosine", 0.05, 1e-3, 300, 3, 1e-4),
    "cifar100_vit_mlp": ("cosine", 5e-4, 1e-5, 300, 20, 5e-7),
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_every_epoch_starts_at_the_reference_rate(recipe):
    scheduler, lr, min_lr, epochs, warmup, warmup_lr = RECIPES[recipe]
    steps = 3
    values = lr_schedule(scheduler, lr, min_lr, epochs, steps, warmup_epochs=warmup, warmup_lr=warmup_lr,
                         decay_epochs=30, decay_rate=0.1)
    assert len(values) == epochs * steps
    for epoch in range(epochs):
        expected = timm_epoch_lr(scheduler, epoch, lr, min_lr, epochs, warmup, warmup_lr)
        assert values[epoch * steps] == pytest.approx(expected, rel=1e-12), epoch


def test_step_schedule_decays_at_multiples_of_decay_epochs_counted_from_the_start():
    values = lr_schedule("step", 0.1, 1e-6, 100, 2, warmup_epochs=3, warmup_lr=1e-4, decay_epochs=30)
    per_epoch = values[::2]
    changes = [e for e in range(4, 100) if per_epoch[e] != per_epoch[e - 1]]
    assert changes == [30, 60, 90]
    assert per_epoch[29] == pytest.approx(0.1) and per_epoch[90] == pytest.approx(1e-4)


def test_warm_up_rises_every_step_and_cosine_counts_the_warm_up_epochs():
    values = lr_schedule("cosine", 1.0, 0.0, 10, 4, warmup_epochs=2, warmup_lr=0.0)
    assert all(b > a for a, b in zip(values[:8], values[1:9]))  # warm-up, step by step
    # right after warm-up the cosine is already at epoch 2 of 10, below the peak
    assert values[8] == pytest.approx(0.5 * (1 + math.cos(math.pi * 2 / 10)))
    assert all(b < a for a, b in zip(values[8:], values[9:]))


def test_no_warm_up_and_constant():
    assert lr_schedule("cosine", 0.2, 0.0, 4, 1)[0] == 0.2
    assert lr_schedule("constant", 0.3, 0.0, 2, 2, warmup_epochs=1, warmup_lr=0.1) == [0.1, 0.2, 0.3, 0.3]


def test_an_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="scheduler"):
        lr_schedule("poly", 0.1, 0.0, 3, 2)


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_per_epoch_rate_is_the_reference_rate_at_every_step_of_the_epoch(recipe):
    scheduler, lr, min_lr, epochs, warmup, warmup_lr = RECIPES[recipe]
    steps = 3
    values = lr_schedule(scheduler, lr, min_lr, epochs, steps, warmup_epochs=warmup, warmup_lr=warmup_lr,
                         per_epoch=True)
    assert len(values) == epochs * steps
    for step, value in enumerate(values):
        expected = timm_epoch_lr(scheduler, step // steps, lr, min_lr, epochs, warmup, warmup_lr)
        assert value == pytest.approx(expected, rel=1e-12), step
    # the per-step form agrees at every epoch start and differs in between (during warm-up)
    moving = lr_schedule(scheduler, lr, min_lr, epochs, steps, warmup_epochs=warmup, warmup_lr=warmup_lr)
    assert moving[::steps] == pytest.approx(values[::steps], rel=1e-12)
    assert moving[1] > values[1]


def test_recipes_set_the_reference_per_epoch_stepping():
    import glob
    import os

    from src.config import load_config

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "recipes")
    paths = sorted(glob.glob(os.path.join(root, "*.yaml")))
    assert len(paths) == 4
    for path in paths:
        assert load_config(path, for_training=False).lr_per_epoch is True, path
    assert load_config(None, {"dataset": "fake"}, for_training=False).lr_per_epoch is False  # the default keeps per-step rates


def test_the_train_step_reads_the_per_epoch_rates(monkeypatch):
    from src.config import load_config
    from src.engine import builders

    seen = {}

    def fake_optimizer(name, groups, lrs, **kwargs):
        seen["lrs"] = lrs
        raise RuntimeError("stop")

    monkeypatch.setattr(builders, "create_optimizer", fake_optimizer)
    monkeypatch.setattr(builders, "param_groups", lambda distiller, wd: [])
    cfg = load_config(None, dict(dataset="fake", lr_per_epoch=True, scheduler="cosine", lr=1.0, min_lr=0.0, epochs=4,
                                 warmup_epochs=2, warmup_lr=0.0), for_training=False)
    with pytest.raises(RuntimeError, match="stop"):
        builders.build_train_step(cfg, None, 3)
    assert seen["lrs"][:6] == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5]
