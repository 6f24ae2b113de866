"""What a user meets first: --help everywhere, example paths that exist, scripts that find the project's
Python, eval/export options limited to what they use, an ETA that is right after a resume."""
import glob
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = sorted(p for p in glob.glob(os.path.join(ROOT, "scripts", "*.sh")) if not p.endswith(("common.sh", "launch_distributed.sh")))  # sourced
ENTRY_POINTS = ("train.py", "eval.py", "export.py")


def sh(*args, env=None):
    return subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("script", [os.path.basename(p) for p in SCRIPTS])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_every_script_prints_its_usage(script, flag):
    proc = sh("bash", os.path.join("scripts", script), flag)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: bash scripts/" + script) and not proc.stderr


@pytest.mark.parametrize("script", ENTRY_POINTS)
def test_entry_points_print_usage_and_their_keys(script):
    proc = sh(sys.executable, script, "-h")
    assert proc.returncode == 0 and proc.stdout.startswith("usage: "), proc.stderr
    text = proc.stdout
    assert "--config" in text and "--student" in text
    if script == "train.py":
        assert "--lr " in text and "--save_every_steps" in text and "--overwrite" in text
    else:  # only the keys evaluation / export read
        assert "--lr " not in text and "--epochs" not in text and "--distiller" not in text
    if script == "export.py":
        assert "--dataset" not in text
        assert re.search(r"--file_format \{MINDIR,AIR,ONNX\}\s+MINDIR \(default", text)


def test_scripts_run_the_projects_venv_python_by_themselves(tmp_path):
    """A copy of the repository's scripts next to a .venv whose python records how it was called."""
    root = tmp_path / "repo"
    shutil.copytree(os.path.join(ROOT, "scripts"), root / "scripts")
    venv_python = root / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path / 'called'}\n")
    venv_python.chmod(venv_python.stat().st_mode | stat.S_IEXEC)
    (root / "run.yaml").write_text("student: resnet10\n")
    (root / "best.ckpt").write_bytes(b"x")
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    proc = subprocess.run(["bash", str(root / "scripts" / "run_eval.sh"), str(root / "run.yaml"),
                           str(root / "best.ckpt")], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    called = (tmp_path / "called").read_text()
    assert called.startswith("eval.py --config " + str(root / "run.yaml")) and "--checkpoint" in called
    proc = subprocess.run(["bash", str(root / "scripts" / "run_eval.sh"), str(root / "run.yaml")],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2 and proc.stderr.startswith("error: CONFIG and CHECKPOINT are required")


def test_eta_counts_only_the_steps_this_process_ran():
    sys.path.insert(0, ROOT)
    import train

    now = [0.0]
    progress = train.Progress(is_main=True, clock=lambda: now[0])
    # resumed at global step 50 of 100: the first step (with the graph compile) ends at t=30
    now[0] = 30.0
    assert progress.eta(51, 100) is None
    now[0] = 40.0  # then 10 steps in 10 s
    assert progress.eta(61, 100) == pytest.approx(39.0)


def test_a_student_trained_alone_is_described_without_a_teacher():
    sys.path.insert(0, ROOT)
    import train
    from src.config import load_config

    alone = load_config(None, ["student=resnet10", "distiller=none", "dataset=fake"])
    text = train._describe_run(alone, 1)
    assert "resnet10 trained alone" in text and "None" not in text
    pair = load_config(None, ["student=resnet10", "teacher=deit_tiny", "dataset=fake"])
    assert "teacher deit_tiny, distiller ofa" in train._describe_run(pair, 2)


def test_a_failed_graph_compile_is_one_line_with_its_report_outside_the_working_directory(tmp_path, monkeypatch):
    import numpy as np

    import mindspore as ms
    from mindspore import nn

    from src.mindspore_process import runtime_error_message, send_compile_reports_to

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MS_OM_PATH", raising=False)
    send_compile_reports_to(str(tmp_path / "reports"))
    ms.set_context(mode=ms.GRAPH_MODE)
    with pytest.raises(RuntimeError) as excinfo:
        nn.Conv2d(3, 4, 3)(ms.Tensor(np.zeros((1, 1, 8, 8), np.float32)))  # 1 channel into a 3-channel conv
    message = runtime_error_message(excinfo.value)
    assert "\n" not in message and message.startswith("graph compile failed: ") and "Conv2D" in message
    assert str(tmp_path / "reports") in message
    assert os.listdir(tmp_path) == ["reports"]  # nothing in the working directory itself


def test_eval_of_the_teacher_of_a_run_trained_from_a_teacher_cache(tmp_path):
    """The config a cached run saved names ``teacher_cache``; ``--model teacher`` still evaluates the teacher
    network (the cache stand-in has no weights to load)."""
    import json

    import mindspore as ms

    sys.path.insert(0, ROOT)
    import eval as eval_entry
    from src.config import load_config, save_config
    from src.checkpoint import save_atomic
    from src.models import create_model

    ms.set_seed(0)
    teacher_ckpt = str(tmp_path / "teacher.ckpt")
    save_atomic(create_model("resnet10", num_classes=10, image_size=16), teacher_ckpt)
    run_cfg = load_config(None, ["dataset=fake", "fake_samples=8", "num_classes=10", "image_size=16", "batch_size=4",
                                 "num_workers=1", "student=vit_p4_pico", "teacher=resnet10", "color_jitter=0",
                                 f"teacher_ckpt={teacher_ckpt}", f"teacher_cache={tmp_path / 'cache'}"])
    save_config(run_cfg, str(tmp_path / "config.yaml"))
    out = tmp_path / "teacher_eval.json"
    assert eval_entry.main(["--config", str(tmp_path / "config.yaml"), "--model", "teacher",
                            "--json", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["model"] == "resnet10" and metrics["num_samples"] == 8
    assert metrics["checkpoint"] == teacher_ckpt


def test_a_missing_teacher_checkpoint_says_how_to_train_one():
    from src.config import load_config
    from src.teacher import build_teacher_model

    cfg = load_config(None, ["dataset=fake", "num_classes=10", "image_size=16", "student=vit_p4_pico",
                             "teacher=resnet10"])
    with pytest.raises(ValueError) as excinfo:
        build_teacher_model(cfg)
    message = str(excinfo.value)
    assert "'teacher_ckpt'" in message and "distiller=none student=resnet10" in message
    assert "tools/convert_checkpoint.py" in message and "\n" not in message


def test_msrun_is_started_with_its_info_and_warning_lines_off_the_console(tmp_path):
    """A stand-in interpreter records the log level msrun (scripts/msrun_node.py) is started with, and its
    arguments; any other use of the interpreter by the launcher goes to the real one."""
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\n"
                    f"case \"$1\" in *msrun_node.py) echo \"$GLOG_v $@\" > {tmp_path / 'called'}; exit 0;; esac\n"
                    f"exec {sys.executable} \"$@\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    config = tmp_path / "run.yaml"
    config.write_text("student: resnet10\n")
    env = {k: v for k, v in os.environ.items() if k != "GLOG_v"}
    env.update(PYTHON=str(fake), LOG_DIR=str(tmp_path / "logs"))
    script = os.path.join(ROOT, "scripts", "run_distribute_train.sh")
    proc = subprocess.run(["bash", script, "2", str(config)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    called = (tmp_path / "called").read_text().split()
    assert called[0] == "3" and "--worker_num=2" in called and "train.py" in called
    env["GLOG_v"] = "1"  # asked for: kept
    subprocess.run(["bash", script, "2", str(config)], capture_output=True, text=True, timeout=60, env=env)
    assert (tmp_path / "called").read_text().split()[0] == "1"
