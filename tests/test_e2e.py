"""The user path end to end on tiny ImageFolder data: train -> eval -> export, resume, msrun, bad input."""
import json
import os
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = 3


def make_image_folder(root, per_class=(16, 4), size=40):
    rng = np.random.RandomState(0)
    for split, count in zip(("train", "val"), per_class):
        for c in range(CLASSES):
            folder = os.path.join(root, split, f"class_{c}")
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                # each class has its own dominant colour, so the task is learnable
                img = rng.randint(0, 80, (size, size, 3)).astype(np.uint8)
                img[..., c] += 150
                Image.fromarray(img).save(os.path.join(folder, f"{i}.jpg"), quality=95)


def run(script, *args, env=None, check=True):
    cmd = [sys.executable, os.path.join(ROOT, script), *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Tiny data, a base config and a trained (1 epoch) resnet10 teacher checkpoint."""
    root = tmp_path_factory.mktemp("e2e")
    data = root / "data"
    make_image_folder(str(data))
    cfg = root / "base.yaml"
    cfg.write_text(
        "dataset: imagefolder\n"
        f"data_dir: {data}\n"
        f"num_classes: {CLASSES}\n"
        "image_size: 32\nbatch_size: 8\nnum_workers: 1\nepochs: 2\n"
        "opt: adamw\nlr: 1.0e-3\nmin_lr: 1.0e-5\nweight_decay: 0.05\nscheduler: cosine\n"
        "warmup_epochs: 0\nscale: [0.8, 1.0]\ncolor_jitter: 0.0\ncrop_pct: 1.0\nlog_interval: 1\n")
    run("train.py", "--config", str(cfg), "distiller=none", "student=resnet10", "epochs=1",
        f"output_dir={root / 'teacher'}")
    return {"root": root, "data": data, "cfg": str(cfg), "teacher": str(root / "teacher" / "last.ckpt")}


def ofa_args(work, out, *extra):
    return ("--config", work["cfg"], "distiller=ofa", "teacher=resnet10", f"teacher_ckpt={work['teacher']}",
            "student=vit_p4_pico", f"output_dir={out}", *extra)


def test_train_eval_export(work):
    out = work["root"] / "ofa"
    proc = run("train.py", *ofa_args(work, out))
    for name in ("last.ckpt", "best.ckpt", "resume.ckpt", "config.yaml", "metrics.json", "train.log"):
        assert (out / name).is_file(), name
    assert "gt " in proc.stderr and "kd " in proc.stderr and "ofa " in proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 2 and "val_top1" in metrics["history"][-1]

    import mindspore as ms
    names = set(ms.load_checkpoint(str(out / "last.ckpt")))
    assert names and not any(n.startswith(("teacher", "branches", "student.")) for n in names)

    run_cfg = str(out / "config.yaml")  # the resolved config the run saved is what eval/export take
    proc = run("eval.py", "--config", run_cfg, "--checkpoint", str(out / "best.ckpt"), "--json", str(out / "eval.json"))
    result = json.loads((out / "eval.json").read_text())
    assert result["num_samples"] == CLASSES * 4
    assert 0.0 <= result["top1"] <= result["top5"] <= 100.0
    assert abs(result["top1"] - metrics["best_top1"]) < 1e-6
    assert "top1" in proc.stdout

    proc = run("export.py", "--config", run_cfg, "--checkpoint", str(out / "best.ckpt"),
               "--file_name", str(out / "student"), "--batch_size", "2")
    assert (out / "student.mindir").is_file()
    diff = float(proc.stdout.split("max abs difference to the checkpointed network")[1].split()[0])
    assert diff <= 1e-5


def _train_in_process(cfg, stop_after=None):
    """Run a Trainer in this process; with ``stop_after`` it is 'killed' after that epoch."""
    from src.engine.builders import setup_context
    from src.engine.trainer import Trainer

    class Killed(Exception):
        pass

    def on_event(kind, info):
        if kind == "epoch" and stop_after is not None and info["epoch"] == stop_after:
            raise Killed()

    setup_context(cfg, distributed=False)
    trainer = Trainer(cfg, on_event=on_event)
    try:
        trainer.fit()
    except Killed:
        pass
    return {p.name: p.asnumpy().copy() for p in trainer.step.get_parameters() if not p.name.startswith("teacher.")}


def test_resume_after_a_stop_gives_the_same_weights(work):
    from src.config import load_config

    base = ["distiller=ofa", "teacher=resnet10", f"teacher_ckpt={work['teacher']}", "student=resnet10",
            "stages=[3, 4]", "epochs=2", "val_every=5"]
    straight = _train_in_process(load_config(work["cfg"], base + [f"output_dir={work['root'] / 'straight'}"]))
    out = work["root"] / "stopped"
    after_one = _train_in_process(load_config(work["cfg"], base + [f"output_dir={out}"]), stop_after=1)
    assert (out / "resume.ckpt").is_file()
    resumed = _train_in_process(load_config(work["cfg"], base + [f"output_dir={out}", f"resume={out / 'resume.ckpt'}"]))
    assert straight.keys() == resumed.keys()
    for name, value in straight.items():
        np.testing.assert_allclose(resumed[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    # the second epoch changed the student, so the equality above means something
    assert any(not np.allclose(after_one[n], straight[n]) for n in straight if n.startswith("student."))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_worker_msrun_ends_with_identical_weights(work):
    if shutil.which("msrun") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "msrun")):
        pytest.fail("msrun is not installed next to this Python: it ships with MindSpore")
    out = work["root"] / "msrun"
    env = {**os.environ, "PYTHON": sys.executable, "MASTER_PORT": str(_free_port()), "LOG_DIR": str(out / "logs"),
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "scripts", "run_distribute_train.sh"), "2", work["cfg"],
         "distiller=kd", "teacher=resnet10", f"teacher_ckpt={work['teacher']}", "student=resnet10",
         "epochs=1", "rank_checkpoints=true", f"output_dir={out}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    logs = ""
    if (out / "logs").is_dir():
        logs = "\n".join((out / "logs" / f).read_text(errors="replace")[-2000:] for f in os.listdir(out / "logs"))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + logs
    import mindspore as ms
    r0 = ms.load_checkpoint(str(out / "rank_0" / "last.ckpt"))
    r1 = ms.load_checkpoint(str(out / "rank_1" / "last.ckpt"))
    assert r0.keys() == r1.keys()
    # Trained weights are identical; BatchNorm running statistics are per rank (each sees its own shard,
    # as without SyncBN in any data-parallel framework) and rank 0's are the ones saved.
    weights = [n for n in r0 if not n.endswith(("moving_mean", "moving_variance"))]
    assert len(weights) > 10
    for name in weights:
        np.testing.assert_array_equal(r0[name].asnumpy(), r1[name].asnumpy(), err_msg=name)
    stats = [n for n in r0 if n.endswith("moving_mean")]
    assert any(not np.array_equal(r0[n].asnumpy(), r1[n].asnumpy()) for n in stats)  # the ranks saw different data
    assert (out / "last.ckpt").is_file() and (out / "config.yaml").is_file()


# ------------------------------------------------------------------------------------------- bad input

def test_unknown_key_is_a_one_line_error(work):
    proc = run("train.py", "--config", work["cfg"], "student=resnet10", "distiller=none", "lrr=0.1", check=False)
    assert proc.returncode == 2
    assert "lrr" in proc.stderr and "Traceback" not in proc.stderr


def test_missing_teacher_checkpoint(work):
    proc = run("train.py", *ofa_args(work, work["root"] / "x"), "teacher_ckpt=/nonexistent/t.ckpt", check=False)
    assert proc.returncode == 2 and "/nonexistent/t.ckpt" in proc.stderr and "does not exist" in proc.stderr


def test_checkpoint_of_another_architecture(work):
    proc = run("train.py", *ofa_args(work, work["root"] / "x"), "teacher=resnet18", check=False)
    assert proc.returncode == 2 and "does not match" in proc.stderr and work["teacher"] in proc.stderr


def test_corrupt_checkpoint(work):
    bad = work["root"] / "corrupt.ckpt"
    bad.write_bytes(b"not a checkpoint at all")
    proc = run("eval.py", "--config", work["cfg"], "student=resnet10", "distiller=none", "--checkpoint", str(bad),
               check=False)
    assert proc.returncode == 2 and "corrupt" in proc.stderr and str(bad) in proc.stderr


def test_wrong_num_classes_is_named(work):
    proc = run("eval.py", "--config", work["cfg"], "student=resnet10", "distiller=none", "num_classes=5",
               "--checkpoint", work["teacher"], check=False)
    assert proc.returncode == 2 and "num_classes=5" in proc.stderr, proc.stderr


def test_export_rejects_missing_checkpoint(work):
    proc = run("export.py", "--config", work["cfg"], "student=resnet10", "distiller=none", "--checkpoint", "/nope.ckpt",
               check=False)
    assert proc.returncode == 2 and "/nope.ckpt" in proc.stderr


def test_unreadable_image_is_named(work, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(work["data"], data)
    broken = data / "train" / "class_1" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is no jpeg")
    proc = run("train.py", "--config", work["cfg"], f"data_dir={data}", "distiller=none", "student=resnet10",
               "epochs=1", f"output_dir={tmp_path / 'out'}", check=False)
    assert proc.returncode == 2 and "broken.jpg" in proc.stderr, proc.stderr[-2000:]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(work, tmp_path):
    out = tmp_path / "nan"
    out.mkdir()
    shutil.copy(work["teacher"], out / "last.ckpt")
    before = (out / "last.ckpt").read_bytes()
    proc = run("train.py", "--config", work["cfg"], "distiller=none", "student=resnet10", "opt=sgd", "lr=1.0e+30",
               "warmup_epochs=0", "epochs=1", f"output_dir={out}", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "non-finite" in proc.stderr and "step" in proc.stderr
    assert (out / "last.ckpt").read_bytes() == before
