"""The user path end to end on tiny data: train -> eval -> export, kill -9 / Ctrl-C and resume, a NaN and a
full disk, a protected output_dir, msrun, bad input."""
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers import free_port, msrun_env

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


@pytest.mark.slow
def test_train_eval_export(work):
    out = work["root"] / "ofa"
    proc = run("train.py", *ofa_args(work, out))
    for name in ("last.ckpt", "best.ckpt", "resume.ckpt", "config.yaml", "metrics.json", "train.log"):
        assert (out / name).is_file(), name
    assert "gt " in proc.stderr and "ofa_final " in proc.stderr and "ofa_branches " in proc.stderr
    teacher_log = (work["root"] / "teacher" / "train.log").read_text()
    assert "resnet10 trained alone" in teacher_log and "teacher None" not in teacher_log
    assert " ofa_final " not in teacher_log and " ofa_branches " not in teacher_log  # a lone run logs only its own loss terms
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
    # MindSpore's ONNX exporter lacks an operator of the ViT student: the error names it, no file is left
    proc = run("export.py", "--config", run_cfg, "--checkpoint", str(out / "best.ckpt"), "--file_format", "ONNX",
               "--file_name", str(out / "student"), check=False)
    assert proc.returncode == 2 and "blocked by the operator" in proc.stderr and "MINDIR" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (out / "student.onnx").exists()




@pytest.mark.slow
def test_two_worker_msrun_ends_with_identical_weights(work):
    out = work["root"] / "msrun"
    env = msrun_env(MASTER_PORT=str(free_port()), LOG_DIR=str(out / "logs"))
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
    log = (out / "train.log").read_text()
    assert "device_target auto: " in log
    if "device_target auto: CPU" in log:  # a teacher-student pair on several CPU workers is warned about
        assert "distiller kd on 2 CPU workers" in log


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
    proc = run("eval.py", "--config", work["cfg"], "student=resnet10", "--checkpoint", str(bad), check=False)
    assert proc.returncode == 2 and "corrupt" in proc.stderr and str(bad) in proc.stderr


def test_wrong_num_classes_is_named(work):
    proc = run("eval.py", "--config", work["cfg"], "student=resnet10", "num_classes=5",
               "--checkpoint", work["teacher"], check=False)
    assert proc.returncode == 2 and "num_classes=5" in proc.stderr, proc.stderr


def test_export_rejects_missing_checkpoint(work):
    proc = run("export.py", "--config", work["cfg"], "student=resnet10", "--checkpoint", "/nope.ckpt", check=False)
    assert proc.returncode == 2 and "/nope.ckpt" in proc.stderr


@pytest.mark.slow
def test_unreadable_image_is_named(work, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(work["data"], data)
    broken = data / "train" / "class_1" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 this is no jpeg")
    proc = run("train.py", "--config", work["cfg"], f"data_dir={data}", "distiller=none", "student=resnet10",
               "epochs=1", f"output_dir={tmp_path / 'out'}", check=False)
    assert proc.returncode == 2 and "broken.jpg" in proc.stderr, proc.stderr[-2000:]
    assert "broken.jpg" in last_log_line(tmp_path / "out")  # every fatal error also ends train.log




# ------------------------------------------------------------------------------------------- lifecycle

def last_log_line(out):
    lines = (out / "train.log").read_text().strip().splitlines()
    return lines[-1] if lines else ""


def snapshot(folder):
    """Every file under ``folder`` with its bytes: equal snapshots mean nothing was touched."""
    out = {}
    for base, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(base, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, folder)] = f.read()
    return out


def params_of(path):
    """The tensors of a checkpoint (not the position, history or config stored beside them)."""
    import mindspore as ms

    return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items()
            if not k.startswith(("meta.", "epoch", "step", "best_"))}


def assert_same_params(a, b):
    pa, pb = params_of(a), params_of(b)
    assert pa.keys() == pb.keys() and len(pa) > 10
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=f"{name} ({a} vs {b})")


def run_until(args, pattern, sig, env=None):
    """Start train.py, send ``sig`` as soon as a stderr line matches ``pattern``; ``(returncode, lines)``."""
    cmd = [sys.executable, os.path.join(ROOT, "train.py"), *args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, bufsize=1,
                            env={**os.environ, **(env or {})})
    lines, sent = [], False
    for line in proc.stderr:
        lines.append(line.rstrip("\n"))
        if not sent and re.search(pattern, line):
            proc.send_signal(sig)
            sent = True
    proc.wait(timeout=600)
    assert sent, "\n".join(lines[-30:])
    return proc.returncode, lines


@pytest.mark.slow
def test_kill_9_and_ctrl_c_mid_epoch_then_resume_give_the_uninterrupted_weights(work):
    """One uninterrupted run; another killed with SIGKILL after a mid-epoch resume point, resumed, stopped
    with Ctrl-C in the next epoch, resumed again: the same checkpoints, bit for bit."""
    common = ["--config", work["cfg"], "distiller=none", "student=resnet10", "batch_size=4", "epochs=2",
              "save_every_steps=2", "log_interval=1"]
    straight, broken = work["root"] / "straight", work["root"] / "interrupted"
    run("train.py", *common, f"output_dir={straight}")

    code, lines = run_until(common + [f"output_dir={broken}"], r"epoch 1/2 step 3/12 ", signal.SIGKILL)
    assert code == -signal.SIGKILL
    from src.engine.trainer import read_resume_point

    epoch, step, _ = read_resume_point(str(broken / "resume.ckpt"))
    assert epoch == 0 and step >= 2 and step % 2 == 0, (epoch, step)  # a mid-epoch resume point

    code, lines = run_until(common + [f"output_dir={broken}", "resume=auto"], r"epoch 2/2 step 3/12 ", signal.SIGINT)
    assert code == 130, "\n".join(lines[-20:])
    message = lines[-1]
    found = re.match(r"error: interrupted \(Ctrl-C\) at epoch 2 step (\d+)/12: saved a resume point to (\S+); "
                     r"continue with: python train.py --config (\S+) resume=auto$", message)
    assert found, message
    assert found.group(2) == str(broken / "resume.ckpt") and found.group(3) == str(broken / "config.yaml")
    assert read_resume_point(found.group(2))[:2] == (1, int(found.group(1)))
    assert "interrupted (Ctrl-C)" in last_log_line(broken)
    assert any("resuming" in line and "epoch 1 step" in line for line in lines)
    resumed = [line for line in lines if re.search(r"epoch 2/2 step \d+/12 loss", line)]
    assert resumed and re.search(r"eta \d", resumed[-1])  # the ETA is known right after a resume

    run("train.py", *common, f"output_dir={broken}", "resume=auto")
    for name in ("last.ckpt", "best.ckpt", "resume.ckpt"):
        assert_same_params(straight / name, broken / name)
    history = json.loads((broken / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]  # the whole history, across three processes
    assert not [n for n in os.listdir(broken) if n.startswith(".partial-")]

    # a finished run: resume=auto says so and changes nothing; a new run there is refused
    before = snapshot(broken)
    proc = run("train.py", *common, f"output_dir={broken}", "resume=auto")
    assert "is finished (epoch 2 of 2 done" in proc.stderr
    proc = run("train.py", *common, f"output_dir={broken}", check=False)
    assert proc.returncode == 2 and "already holds a run" in proc.stderr and "overwrite=true" in proc.stderr
    proc = run("train.py", *common, f"output_dir={broken}", "student=no_such_model", check=False)
    assert proc.returncode == 2
    assert snapshot(broken) == before
    # a new run that fails its checks writes nothing at all
    fresh = work["root"] / "never"
    proc = run("train.py", *common, f"output_dir={fresh}", "student=no_such_model", check=False)
    assert proc.returncode == 2 and "no_such_model" in proc.stderr and not fresh.exists()


def _limit_file_size(limit):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.slow
def test_nan_then_lower_lr_resume_and_a_full_disk_keep_every_good_file(work, tmp_path):
    """Continue the 1-epoch teacher run to 2 epochs: with lr=1e30 (NaN), with a disk that takes no
    checkpoint, then with a sane lr: the last one finishes, nothing good was lost on the way."""
    out = tmp_path / "run"
    shutil.copytree(work["root"] / "teacher", out)
    first_log_line = (out / "train.log").read_text().splitlines()[0]
    good = {n: (out / n).read_bytes() for n in ("resume.ckpt", "last.ckpt", "best.ckpt")}
    common = ["--config", work["cfg"], "distiller=none", "student=resnet10", f"output_dir={out}", "resume=auto",
              "epochs=2"]

    proc = run("train.py", *common, "lr=1e30", check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[-1]
    found = re.search(r"error: non-finite (loss|gradients) at epoch 2 step (\d+) .*lr=([0-9.e+-]+)", error)
    assert found, error
    assert float(found.group(3)) > 1e20  # the lr the optimizer used: the new one, from the current config
    assert "non-finite" in last_log_line(out)
    assert {n: (out / n).read_bytes() for n in good} == good

    cmd = [sys.executable, os.path.join(ROOT, "train.py"), *common, "lr=1e-3"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          preexec_fn=_limit_file_size(256 * 1024))  # config and log fit, a checkpoint does not
    assert proc.returncode == 2, proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[-1]
    assert re.match(rf"error: cannot write {re.escape(str(out))}/\w+\.ckpt: File too large", error), error
    assert "Traceback" not in proc.stderr and "cannot write" in last_log_line(out)
    assert {n: (out / n).read_bytes() for n in good} == good
    assert not [n for n in os.listdir(out) if n.startswith(".partial-")]

    proc = run("train.py", *common, "lr=1e-3")
    assert "changed since the resume state: epochs 1 -> 2" in proc.stderr
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    log = (out / "train.log").read_text()
    assert log.startswith(first_log_line) and "non-finite" in log and "cannot write" in log  # the whole story
    assert "done: best val top1" in last_log_line(out)


def write_idx_files(root, counts=(64, 16)):
    """A tiny Fashion-MNIST look-alike: 28x28 grayscale IDX files whose class sets the mean brightness."""
    import gzip

    rng = np.random.RandomState(0)
    root.mkdir(parents=True)
    for prefix, count in zip(("train", "t10k"), counts):
        labels = (np.arange(count) % 10).astype(np.uint8)
        images = np.clip(rng.randint(0, 60, (count, 28, 28)) + 19 * labels[:, None, None], 0, 255).astype(np.uint8)
        for stem, array, magic in ((f"{prefix}-images-idx3-ubyte", images, 0x803),
                                   (f"{prefix}-labels-idx1-ubyte", labels, 0x801)):
            header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            (root / f"{stem}.gz").write_bytes(gzip.compress(header + array.tobytes()))


@pytest.mark.slow
def test_grayscale_data_with_in_channels_1_trains_evaluates_and_exports(tmp_path):
    data, out = tmp_path / "fashion", tmp_path / "gray"
    write_idx_files(data)
    common = ["--config", os.path.join(ROOT, "configs", "fashion_mnist", "base.yaml"), f"data_dir={data}",
              "in_channels=1", "train_subset=0", "image_size=16", "batch_size=8", "epochs=1", "warmup_epochs=0"]
    run("train.py", *common, "distiller=none", "student=resnet10", f"output_dir={out}")
    import mindspore as ms

    first_conv = [v for k, v in ms.load_checkpoint(str(out / "best.ckpt")).items() if v.asnumpy().ndim == 4][0]
    assert first_conv.shape[1] == 1  # a 1-channel model
    proc = run("eval.py", "--config", str(out / "config.yaml"), "--checkpoint", str(out / "best.ckpt"))
    assert "(16 images)" in proc.stdout
    proc = run("export.py", "--config", str(out / "config.yaml"), "--checkpoint", str(out / "best.ckpt"),
               "--file_name", str(out / "gray"))
    assert (out / "gray.mindir").is_file() and "12 BatchNorm layer(s) folded" in proc.stdout
    diff = float(proc.stdout.split("max abs difference to the checkpointed network")[1].split()[0])
    assert diff <= 1e-4  # the folded MINDIR against the unfolded checkpoint: float32 rounding
