"""What a run folder guarantees: it belongs to one run, one process trains into it at a time, nothing of it
is followed through a symbolic link, a log that cannot be written ends the run in one line, a resumed
epoch reports the loss of all its steps, and misleading inputs are named."""
import errno
import json
import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = ["dataset=fake", "student=resnet10", "distiller=none", "num_classes=4", "image_size=16", "batch_size=4",
        "num_workers=1", "opt=adamw", "lr=1.0e-3", "min_lr=1.0e-5", "scheduler=cosine", "warmup_epochs=0",
        "crop_pct=1.0", "fake_samples=16"]


def snapshot(folder):
    """Every file under ``folder`` (links not followed) with its bytes: equal snapshots mean nothing was touched."""
    out = {}
    for base, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = os.path.join(base, name)
            if os.path.islink(path):
                out[os.path.relpath(path, folder)] = "-> " + os.readlink(path)
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    out[os.path.relpath(path, folder)] = f.read()
    return out


@pytest.fixture(autouse=True)
def _logging_restored():
    """train.train() sets up the root logger for a run; later tests get theirs back."""
    from src import logs

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    if logs._state["file"] is not None:
        logs._state["file"].close()
    logs._state.update(buffer=None, file=None)
    root.handlers[:] = handlers
    root.setLevel(level)


def run_train(capsys, out, *extra):
    """train.py's ``train()`` in this process: ``(exit code, stderr lines)``."""
    import train
    from src.config import load_config

    cfg = load_config(None, BASE + [f"output_dir={out}", *extra])
    code = train.train(cfg, train.StopRequest())
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def write_resume_state(path, run_id, epoch=1, step=0, **meta):
    """A resume state as train.py writes one (position, config, run id), with a stand-in for the weights."""
    from mindspore import Parameter, Tensor

    from src.checkpoint import save_atomic

    extra = {"epoch": epoch, "step": step, "best_top1": 50.0, "meta.config": "{}", "meta.run_id": run_id,
             **{f"meta.{k}": v for k, v in meta.items()}}
    save_atomic([{"name": "w", "data": Parameter(Tensor(np.ones(4, np.float32)), name="w")}], str(path),
                append_dict=extra)
    return str(path)


def finished_run(folder, run_id="20261204-000000-bbbbbbbb"):
    """A folder holding a finished run (its files' contents are not read by the checks under test)."""
    folder.mkdir(parents=True)
    for name in ("best.ckpt", "last.ckpt", "resume.ckpt", "config.yaml", "train.log"):
        (folder / name).write_bytes(f"{name} of run {run_id}\n".encode())
    (folder / "metrics.json").write_text(json.dumps({"history": [{"epoch": 1}], "finished": True}))
    if run_id:
        (folder / "run.json").write_text(json.dumps({"run_id": run_id}))
    return folder


# ------------------------------------------------------------------------------------------- ownership

def test_resume_from_another_run_into_a_folder_holding_a_run_is_refused_by_name(tmp_path, capsys):
    state = write_resume_state(tmp_path / "run_a" / "resume.ckpt", "20261204-000000-aaaaaaaa")
    for other, folder_id in ((tmp_path / "other", "20261204-000000-bbbbbbbb"), (tmp_path / "legacy", None)):
        finished_run(other, folder_id)
        before = snapshot(other)
        code, lines = run_train(capsys, other, f"resume={state}", "epochs=2")
        assert code == 2 and len(lines) == 1, lines
        assert f"output_dir {other} holds another run (run id {folder_id or 'not recorded'}" in lines[0]
        assert "belongs to run 20261204-000000-aaaaaaaa" in lines[0] and "overwrite=true" in lines[0]
        assert snapshot(other) == before


def test_a_run_folder_records_its_identity_and_a_fork_gets_its_own(tmp_path):
    from src.engine.run_dir import plan_run, read_run_id, record_run_identity

    ids = {"a": "20261204-000000-aaaaaaaa"}
    state = write_resume_state(tmp_path / "run_a" / "resume.ckpt", ids["a"])
    run_id_of = {state: ids["a"]}.get
    # continuing in its own folder keeps the run; the folder records the id of the run that wrote the state
    own = plan_run(str(tmp_path / "run_a"), "auto", state_run_id=run_id_of)
    assert own.run_id == ids["a"] and own.resume_path == state and not own.clear
    record_run_identity(str(tmp_path / "run_a"), own)
    assert read_run_id(str(tmp_path / "run_a")) == ids["a"]
    # the folder's own state copied elsewhere is the same run
    finished_run(tmp_path / "home", ids["a"])
    assert plan_run(str(tmp_path / "home"), state, state_run_id=run_id_of).run_id == ids["a"]
    # into an empty folder: a new run that names where it started
    fork = plan_run(str(tmp_path / "fork"), state, state_run_id=run_id_of)
    assert fork.run_id != ids["a"] and fork.resumed_from == {"path": state, "run_id": ids["a"]}
    # overwrite=true replaces the other run, after the checks
    finished_run(tmp_path / "other")
    replace = plan_run(str(tmp_path / "other"), state, overwrite=True, state_run_id=run_id_of)
    assert replace.clear and replace.run_id not in (ids["a"], "20261204-000000-bbbbbbbb")


# ------------------------------------------------------------------------------------------- the lock

HOLD = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("run_dir", "src/engine/run_dir.py")  # without MindSpore
run_dir = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_dir)
run_dir.RunLock.acquire(sys.argv[1], "train.py")
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_process_into_a_run_still_training_is_refused_by_name_and_a_dead_holder_is_named(tmp_path, capsys):
    from src.engine.run_dir import RunLock, check_not_in_use, stale_lock_note

    out = tmp_path / "run"
    finished_run(out)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(out)
        code, lines = run_train(capsys, out, "resume=auto", "epochs=2")
        assert code == 2 and len(lines) == 1, lines
        assert f"output_dir {out} is in use: train.py pid {holder.pid} on " in lines[0], lines
        assert f"kill -INT {holder.pid}" in lines[0]
        with pytest.raises(ValueError, match=f"pid {holder.pid}"):
            RunLock.acquire(str(out))
        assert snapshot(out) == before
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel released the dead holder's lock; its record names it
    stale = check_not_in_use(str(out))
    assert stale["pid"] == holder.pid
    lock = RunLock.acquire(str(out), "train.py")
    assert lock.stale["pid"] == holder.pid and f"pid {holder.pid}" in stale_lock_note(lock.path, lock.stale)
    assert json.loads((out / "run.lock").read_text())["pid"] == os.getpid()
    lock.release()
    assert check_not_in_use(str(out)) is None  # a released lock is not stale


# ------------------------------------------------------------------------------------------- symbolic links

def test_a_symlinked_train_log_is_refused_and_its_target_untouched(tmp_path, capsys):
    from src.logs import RunLogHandler

    target = tmp_path / "elsewhere.txt"
    target.write_text("not the run's\n")
    out = tmp_path / "run"
    out.mkdir()
    (out / "train.log").symlink_to(target)
    code, lines = run_train(capsys, out, "epochs=1")
    assert code == 2 and len(lines) == 1 and "train.log is a symbolic link" in lines[0], lines
    assert target.read_text() == "not the run's\n" and sorted(os.listdir(out)) == ["train.log"]
    with pytest.raises(ValueError, match="symbolic link"):  # and the file is opened without following links
        RunLogHandler(str(out / "train.log"))
    assert target.read_text() == "not the run's\n"


def test_overwrite_checks_everything_before_it_deletes_anything(tmp_path, capsys):
    from src.engine.run_dir import clear_run

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "last.ckpt").write_bytes(b"another run's checkpoint")
    out = finished_run(tmp_path / "run")
    (out / "rank_0").symlink_to(kept, target_is_directory=True)
    before, kept_before = snapshot(out), snapshot(kept)
    code, lines = run_train(capsys, out, "epochs=1", "overwrite=true")
    assert code == 2 and len(lines) == 1 and "rank_0 is a symbolic link" in lines[0], lines
    assert "Traceback" not in "\n".join(lines)
    assert snapshot(out) == before and snapshot(kept) == kept_before
    # one level down too, in clear_run itself
    os.remove(out / "rank_0")
    (out / "rank_1").mkdir()
    (out / "rank_1" / "last.ckpt").symlink_to(kept / "last.ckpt")
    before = snapshot(out)
    with pytest.raises(ValueError, match="rank_1/last.ckpt is a symbolic link.*nothing was deleted"):
        clear_run(str(out))
    assert snapshot(out) == before and snapshot(kept) == kept_before


# ------------------------------------------------------------------------------------------- a full disk

def _disk_full_after(monkeypatch, budget):
    """The log's writes get ``budget`` bytes in all; then half of a write lands and the disk is full."""
    from src import logs

    left = {"bytes": budget}

    def write(fd, data):
        if len(data) <= left["bytes"]:
            left["bytes"] -= len(data)
            return os.write(fd, data)
        if left["bytes"] > 0:
            n = os.write(fd, data[:max(left["bytes"] // 2, 1)])
            left["bytes"] = 0
            return n
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(logs, "_write", write)


def test_a_log_on_a_full_disk_fails_in_one_line_and_keeps_what_was_there(tmp_path, monkeypatch, capsys):
    from src.files import WriteError
    from src.logs import attach_log_file, check_log_file, log_file_only, setup_logging

    path = tmp_path / "train.log"
    path.write_text("2026-12-04 10:00:00 INFO a line of the previous process\n")
    before = path.read_bytes()
    setup_logging(None)
    log = logging.getLogger("train")
    log.info("buffered before the file exists")
    _disk_full_after(monkeypatch, 150)
    attach_log_file(str(path))
    for i in range(20):
        log.info("step %d of a run on a disk that fills", i)
    with pytest.raises(WriteError) as err:
        check_log_file()
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "No space left on device (ENOSPC)" in message
    assert log_file_only("error: the entry point's last line") is False  # the failure path raises nothing
    text = path.read_bytes()
    assert text.startswith(before) and text.endswith(b"\n")  # whole lines only: the half one was cut off
    assert all(b"INFO" in line for line in text.splitlines())
    assert "Logging error" not in capsys.readouterr().err


def test_train_on_a_full_disk_ends_with_one_line_and_keeps_the_previous_run(tmp_path, monkeypatch, capsys):
    from src.engine.trainer import Trainer
    from src.config import load_config
    from src.engine.builders import setup_context

    out = tmp_path / "run"
    cfg = load_config(None, BASE + [f"output_dir={out}", "epochs=1"])
    setup_context(cfg, distributed=False)
    Trainer(cfg, run_id="20261204-000000-cccccccc")._save_resume(1, 0)
    (out / "train.log").write_text("2026-12-04 10:00:00 INFO the first process\n")
    (out / "config.yaml").write_text("epochs: 1\n")
    (out / "run.json").write_text(json.dumps({"run_id": "20261204-000000-cccccccc"}))
    before = snapshot(out)
    _disk_full_after(monkeypatch, 0)
    code, lines = run_train(capsys, out, "resume=auto", "epochs=2")
    assert code == 2 and lines[-1] == (f"error: cannot write {out}/train.log: No space left on device (ENOSPC); "
                                       f"the previous file, if any, is unchanged"), lines
    assert not [line for line in lines if "Traceback" in line or "Logging error" in line], lines
    after = snapshot(out)
    assert after.pop("run.lock") == b"" and after == before  # the lock is released, nothing else changed


# ------------------------------------------------------------------------------------------- resumed epochs

def test_a_resumed_epoch_reports_the_loss_of_all_its_steps(tmp_path):
    """A resume point after all of epoch 1's steps (as when Ctrl-C comes during its evaluation): the
    continued process runs no step of that epoch, and its train_loss is still the epoch's."""
    from src.config import load_config
    from src.engine.builders import setup_context
    from src.engine.trainer import Trainer

    out = tmp_path / "run"

    def trainer(*extra):
        cfg = load_config(None, BASE + [f"output_dir={out}", "epochs=2", "val_every=2", *extra])
        setup_context(cfg, distributed=False)
        return Trainer(cfg)

    first = trainer()
    spe = first.steps_per_epoch
    first._save_resume(0, spe, {"steps": spe, "loss": 1.25 * spe, "overflows": 0})
    resumed = trainer("resume=auto")
    assert (resumed.epoch, resumed.step_in_epoch) == (0, spe)
    resumed._run_epoch(0, spe)
    record = resumed.history[-1]
    assert record["epoch"] == 1 and record["train_loss"] == pytest.approx(1.25)
    assert json.loads((out / "metrics.json").read_text())["history"][-1]["train_loss"] == pytest.approx(1.25)


@pytest.mark.slow
def test_after_a_mid_epoch_stop_the_epoch_loss_equals_the_uninterrupted_run(tmp_path):
    """Epoch 1 of 2 (no evaluation in it) straight, and stopped after step 3 of 6 then continued."""
    from src.config import load_config
    from src.engine.builders import setup_context
    from src.engine.trainer import RunInterrupted, Trainer

    def trainer(out, *extra, **kwargs):
        cfg = load_config(None, BASE + [f"output_dir={out}", "epochs=2", "val_every=2", "log_interval=2",
                                        "fake_samples=24", *extra])
        setup_context(cfg, distributed=False)
        return Trainer(cfg, **kwargs)

    straight = trainer(tmp_path / "straight")
    straight._run_epoch(0, 0)
    steps = {"done": 0}

    def count(kind, info):
        if kind == "tick":
            steps["done"] = info["step"]

    broken = trainer(tmp_path / "broken", on_event=count, should_stop=lambda: steps["done"] >= 3)
    with pytest.raises(RunInterrupted):
        broken.fit()
    resumed = trainer(tmp_path / "broken", "resume=auto")
    assert resumed.step_in_epoch == 3
    resumed._run_epoch(0, 3)
    loss = [t.history[0]["train_loss"] for t in (straight, resumed)]
    assert loss[1] == pytest.approx(loss[0], rel=1e-5)  # the same steps, summed in other groups


# ------------------------------------------------------------------------------------------- misleading input

def test_an_output_dir_that_is_a_file_is_named(tmp_path, capsys):
    out = tmp_path / "results.txt"
    out.write_text("a file\n")
    code, lines = run_train(capsys, out, "epochs=1")
    assert code == 2 and lines == [f"error: output_dir {out} is a file, not a folder; choose another output_dir"]
    assert out.read_text() == "a file\n"


def test_a_resume_point_given_for_a_model_checkpoint_is_named(tmp_path):
    from mindspore import nn

    from src.checkpoint import load_model_checkpoint

    state = write_resume_state(tmp_path / "run" / "resume.ckpt", "20261204-000000-aaaaaaaa")
    with pytest.raises(ValueError) as err:
        load_model_checkpoint(nn.Dense(4, 2), state, "student 'resnet10'")
    message = str(err.value)
    assert "\n" not in message and f"'{state}' is a resume point" in message
    assert str(tmp_path / "run" / "best.ckpt") in message and "another architecture" not in message


def test_a_train_subset_larger_than_the_split_is_said(caplog):
    from src.config import load_config
    from src.data import load_source

    with caplog.at_level(logging.WARNING):
        source = load_source(load_config(None, BASE + ["fake_samples=40", "train_subset=100"]), "train")
    assert len(source) == 40
    assert "train_subset=100 is more than the 40 images of the train split" in caplog.text


# ------------------------------------------------------------------------------------------- tool flags

FLAGS = [
    ("tools.eps_sweep", "parse_args", ["--out", "x", "--epochs", "0"], "--epochs", "an integer >= 1, got 0"),
    ("tools.eps_sweep", "parse_args", ["--out", "x", "--stages", "5"], "--stages", "an integer in 1..4, got 5"),
    ("tools.study", "parse_args", ["--out", "x", "--time-limit", "-1"], "--time-limit", "a number >= 0, got -1"),
    ("tools.cache_teacher", "main", ["--views", "2", "--teacher-batch", "0"], "--teacher-batch", ">= 1, got 0"),
    ("tools.cache_teacher", "main", ["--views", "2", "--teacher-batch", "-5"], "--teacher-batch", ">= 1, got -5"),
    ("tools.cache_teacher", "main", ["--views", "0"], "--views", ">= 1, got 0"),
    ("tools.convert_checkpoint", "main", ["--image-size", "0"], "--image-size", ">= 1, got 0"),
    ("benchmarks.train_step", "main", ["--drop-path", "1.5"], "--drop-path", "a number in [0, 1), got 1.5"),
    ("benchmarks.loader_speed", "main", ["--rounds", "0"], "--rounds", ">= 1, got 0"),
    ("benchmarks.model_speed", "main", ["--batch-size", "nan"], "--batch-size", "an integer >= 1, got 'nan'"),
    ("benchmarks.loop_overhead", "main", ["--steps", "-2"], "--steps", ">= 1, got -2"),
]


@pytest.mark.parametrize("module, function, argv, flag, why", FLAGS, ids=[f"{m}{f[2]}" for m, *f in FLAGS])
def test_a_numeric_tool_flag_out_of_range_is_refused_naming_it(module, function, argv, flag, why, capsys):
    import importlib

    try:  # argparse exits; the tools that read a config too report it as their one-line error
        code = getattr(importlib.import_module(module), function)(argv)
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: must be {why}" in err or (f"argument {flag}" in err and why in err), err
    if module.startswith("benchmarks."):  # the benchmarks' errors are one line, as their other refusals
        assert len(err.strip().splitlines()) == 1 and err.startswith(f"error: argument {flag}: must be "), err
