"""The training loop in process, on tiny fake data: host reads only at log points, one evaluation graph,
weights equal to a plain step-by-step loop, a NaN stop that names its step, resume against a changed config."""
import json
import os

import numpy as np
import pytest

BASE = ["dataset=fake", "student=resnet10", "distiller=none", "num_classes=4", "image_size=16", "batch_size=4",
        "num_workers=1", "opt=adamw", "lr=1.0e-3", "min_lr=1.0e-5", "weight_decay=0.05", "scheduler=cosine",
        "warmup_epochs=0", "crop_pct=1.0"]


def make_trainer(out, *extra, **kwargs):
    from src.config import load_config
    from src.engine.builders import setup_context
    from src.engine.trainer import Trainer

    cfg = load_config(None, BASE + [f"output_dir={out}", *extra])
    setup_context(cfg, distributed=False)
    return Trainer(cfg, **kwargs)


def student_weights(trainer):
    return {p.name: p.asnumpy().copy() for p in trainer.student.get_parameters()}


def schedule_param(trainer):
    """The per-step learning rates the optimizer indexes inside the graph."""
    return next(p for p in trainer.step.get_parameters() if p.name == "learning_rate").asnumpy().copy()


class HostReads:
    """Counts every device-to-host read of a MindSpore tensor, by the training step it happened after."""

    NAMES = ("asnumpy", "_item", "tolist", "__array__")

    def __init__(self, monkeypatch):
        from mindspore.common.tensor import Tensor

        self.step = 0
        self.by_step = {}
        for name in self.NAMES:
            original = getattr(Tensor, name)
            monkeypatch.setattr(Tensor, name, self._counting(original))

    def _counting(self, original):
        def read(tensor, *args, **kwargs):
            self.by_step[self.step] = self.by_step.get(self.step, 0) + 1
            return original(tensor, *args, **kwargs)
        return read

    def on_event(self, kind, info):
        if kind == "tick":
            self.step = info["global_step"]


@pytest.mark.slow
def test_no_host_read_between_log_points_one_eval_graph_and_the_plain_loop_weights(tmp_path, monkeypatch):
    """20 steps per epoch, log_interval 10, 3 epochs with an evaluation after each."""
    args = ("fake_samples=80", "val_batch_size=40", "log_interval=10", "epochs=3", "val_every=1")
    reads = HostReads(monkeypatch)
    steps_logged = []

    def on_event(kind, info):
        reads.on_event(kind, info)
        if kind == "step":
            steps_logged.append(info["global_step"])

    trainer = make_trainer(tmp_path / "loop", *args, on_event=on_event)
    assert trainer.steps_per_epoch == 20
    trainer.fit()
    monkeypatch.undo()
    between = {step: n for step, n in reads.by_step.items() if step % 10 != 0}
    assert between == {}, f"host reads between log points: {between}"
    assert steps_logged == [10, 20, 30, 40, 50, 60]
    # the reads at a log point: the step sums (one read), and at epoch ends evaluation and checkpoints
    assert all(reads.by_step[s] >= 1 for s in steps_logged)
    assert trainer.evaluator.compiled_graphs() == 1  # three evaluations, one graph
    assert len(trainer.stats.compile_cache) == 1
    assert [r["epoch"] for r in trainer.history] == [1, 2, 3] and all("val_top1" in r for r in trainer.history)

    # the same run as a plain loop that calls the step on every batch: identical weights
    plain = make_trainer(tmp_path / "plain", *args)
    for epoch in range(3):
        for columns in plain._dataset("train", epoch).create_tuple_iterator(num_epochs=1):
            plain.step(*columns)
    looped, stepped = student_weights(trainer), student_weights(plain)
    assert looped.keys() == stepped.keys()
    for name, value in looped.items():
        np.testing.assert_array_equal(value, stepped[name], err_msg=name)


@pytest.mark.slow
def test_a_nan_at_step_k_stops_naming_k_and_saves_nothing_after_it(tmp_path):
    from mindspore import Tensor

    from src.engine.trainer import read_resume_point

    out = tmp_path / "nan"
    trainer = make_trainer(out, "fake_samples=80", "log_interval=5", "save_every_steps=4", "epochs=1")
    batches = trainer._batches

    def poisoned(epoch, start):
        for step, columns in enumerate(batches(epoch, start), start + 1):
            if step == 7:
                columns = [Tensor(np.full(columns[0].shape, np.nan, np.float32))] + list(columns[1:])
            yield columns

    trainer._batches = poisoned
    with pytest.raises(FloatingPointError) as excinfo:
        trainer.fit()
    message = str(excinfo.value)
    assert "\n" not in message
    # (a NaN image may leave the loss finite through max-pooling; its gradients are not)
    assert "non-finite" in message and "at epoch 1 step 7 (global step 7)" in message, message
    assert "step 4/20" in message  # the last resume point, which is intact
    # the read at step 8 (a save point) found the NaN before saving: the resume point is still step 4
    assert read_resume_point(str(out / "resume.ckpt"))[:2] == (0, 4)
    assert not (out / "last.ckpt").exists()


def test_resume_recomputes_the_schedule_and_refuses_what_cannot_change(tmp_path):
    """No step runs here: a resume state is written at step 0, then read back under changed configs."""
    out = tmp_path / "run"
    first = make_trainer(out, "fake_samples=40", "epochs=2", "lr=1.0e-3")
    first._save_resume(1, 0)  # as after epoch 1
    saved_lr = schedule_param(first)

    events = []
    resumed = make_trainer(out, "fake_samples=40", "epochs=4", "lr=5.0e-4", "warmup_epochs=1", "resume=auto",
                           on_event=lambda kind, info: events.append((kind, info)))
    info = dict(events)["resumed"]
    assert (info["epoch"], info["step"]) == (1, 0)
    assert {(k, old, new) for k, old, new in info["changed"]} >= {("epochs", 2, 4), ("lr", 1e-3, 5e-4),
                                                                  ("warmup_epochs", 0, 1)}
    # the optimizer runs the schedule of the current config (4 epochs, the new lr), not the stored one
    lr = schedule_param(resumed)
    assert lr.shape == (4 * resumed.steps_per_epoch,) and saved_lr.shape == (2 * first.steps_per_epoch,)
    np.testing.assert_allclose(lr, np.array(resumed.lrs, np.float32))
    # cosine over every epoch, warm-up included (timm's schedule): the peak is below the new lr, far from the old
    assert 0.8 * 5e-4 < max(resumed.lrs) <= 5e-4 * (1 + 1e-6) and resumed.epoch == 1

    for change, (key, old, new) in {"batch_size=2": ("batch_size", "4", "2"),
                                    "stages=[3,4]": ("stages", "[1, 2, 3, 4]", "[3, 4]")}.items():
        with pytest.raises(ValueError) as excinfo:
            make_trainer(out, "fake_samples=40", "epochs=4", "resume=auto", change)
        message = str(excinfo.value)
        assert "\n" not in message and f"key '{key}'" in message
        assert f"{key}={old}" in message and f"{key}={new}" in message, message
    with pytest.raises(ValueError, match="key 'epochs'.*at epoch 2 step 0, beyond epochs=1"):
        first._save_resume(2, 0)
        make_trainer(out, "fake_samples=40", "epochs=1", "resume=auto")
    meta = json.loads(str(__import__("mindspore").load_checkpoint(str(out / "resume.ckpt"))["meta.config"]))
    assert meta["lr"] == pytest.approx(1e-3)  # the state keeps the config it was made with


def test_a_resume_state_of_another_world_size_is_refused(tmp_path):
    out = tmp_path / "run"
    first = make_trainer(out, "fake_samples=40", "epochs=2")
    first.group_size = 2  # as if saved by a two-device run
    first._save_resume(1, 0)
    with pytest.raises(ValueError, match="made on 2 device"):
        make_trainer(out, "fake_samples=40", "epochs=2", "resume=auto")
    assert os.path.isfile(out / "resume.ckpt")
