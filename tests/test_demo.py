"""The Fashion-MNIST demo (tools/demo.py, scripts/run_fashion_mnist_demo.sh): its helpers, and a tiny run end to end."""
import argparse
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from fake_fashion import write_fake_fashion_mnist
from tools import demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_format_table_has_a_row_per_model_and_marks_reused_runs():
    rows = [{"what": "teacher alone", "model": "resnet10", "images": 10000, "epochs": 2, "top1": 84.123,
             "time_s": 90.0, "reused": True},
            {"what": "student alone", "method": "none", "model": "resmlp_p4_pico", "images": 2000, "epochs": 4,
             "top1": 70.0, "time_s": 30.0},
            {"what": "student + KD", "method": "kd", "model": "resmlp_p4_pico", "images": 2000, "epochs": 4,
             "top1": 71.5, "time_s": 33.0},
            {"what": "student + OFA-KD", "method": "ofa", "model": "resmlp_p4_pico", "images": 2000, "epochs": 4,
             "top1": None, "time_s": 45.0}]
    lines = demo.format_table(rows)
    assert len(lines) == 2 + 4
    assert lines[2] == "| teacher alone | `resnet10` | 10,000 | 2 | 84.12 % | 1.5 min (reused) |"
    assert lines[5].startswith("| student + OFA-KD | `resmlp_p4_pico` | 2,000 | 4 | - | 0.8 min")
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert demo.gains(rows) == {"KD - alone": pytest.approx(1.5)}  # OFA has no top-1: no OFA difference


def test_progress_lines_are_shortened_with_their_eta():
    step = ("2026-11-30 18:39:51 INFO epoch 1/4 step 20/32 loss 1.5876 (gt 1.2 kd 0.3 ofa 0.1) "
            "lr 0.000563 eta 2.1 min")
    assert demo.echo_progress(step) == "epoch 1/4 step 20/32, loss 1.5876, eta 2.1 min"
    assert demo.echo_progress("INFO epoch 1/4 step 1/32 loss 2.3 (gt 2.3) lr 1e-4 eta ?").endswith("eta ?")
    done = ("2026-11-30 18:42:53 INFO epoch 2 done in 211.6s (47.2 img/s, train loss 1.2886); val top1 71.32 "
            "top5 98.39 loss 0.8200 (best 71.32)")
    assert demo.echo_progress(done) == "epoch 2 done in 212 s (47.2 img/s), test top-1 71.32"
    assert demo.echo_progress("INFO epoch 1 done in 3.0s (10.0 img/s, train loss 1.0)") == \
        "epoch 1 done in 3 s (10.0 img/s)"
    assert demo.echo_progress("[WARNING] ME(1:2,3):something") is None
    assert demo.echo_tool("2026-11-30 18:00:00 INFO views 100/800: 50.0 teacher images/s (12.5 source images/s), "
                          "eta 0.2 min").startswith("views 100/800")
    assert demo.echo_tool("[WARNING] cache something") is None
    assert demo.echo_tool("2026-11-30 18:00:00 INFO cache complete: /c (train from it with teacher_cache: /c)") == \
        "cache complete: /c"


def test_throttle_passes_a_progress_line_every_so_often_and_always_the_last():
    now = [0.0]
    throttle = demo.Throttle(seconds=20, clock=lambda: now[0])
    passed = []
    for i, t in enumerate((0, 5, 10, 21, 30, 45), start=1):
        now[0] = t
        passed.append(throttle(f"views {i}/6: 10 teacher images/s, eta 0.1 min"))
    assert passed == [True, False, False, True, False, True]  # the last one: views 6/6
    assert throttle("cache complete: /c")


def test_log_interval_and_cache_name():
    assert demo.log_interval(2000, 64) == 10  # 32 steps, about 3 lines per epoch
    assert demo.log_interval(10, 64) == 1
    fields = {"train_subset": 2000, "image_size": 16}
    name = demo.cache_name("resnet10", "ab" * 32, fields, 4)
    assert name.startswith("resnet10-k4-") and name == demo.cache_name("resnet10", "ab" * 32, dict(fields), 4)
    assert name != demo.cache_name("resnet10", "cd" * 32, fields, 4)  # another teacher checkpoint
    assert name != demo.cache_name("resnet10", "ab" * 32, dict(fields, image_size=32), 4)


def test_parse_args_refuses_nonsense():
    assert demo.parse_args([]).views is None
    with pytest.raises(SystemExit):
        demo.parse_args(["--epochs", "0"])
    with pytest.raises(SystemExit):
        demo.parse_args(["--teacher-subset", "-1"])


@pytest.mark.slow
def test_demo_script_prints_the_table_and_writes_curves_and_mindir(tmp_path):
    data, work = tmp_path / "fashion", tmp_path / "demo"
    write_fake_fashion_mnist(str(data), train=240, test=100, gz=True)
    cmd = ["bash", os.path.join(ROOT, "scripts", "run_fashion_mnist_demo.sh"), str(data), "--work-dir", str(work),
           "--teacher-epochs", "1", "--teacher-subset", "0", "--epochs", "2", "--subset", "80", "--val-subset", "50",
           "--batch-size", "16", "--teacher-batch-size", "16", "--image-size", "16"]
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "`" in line]
    assert [row.split("|")[1].strip() for row in rows] == \
        ["teacher alone", "student alone", "student + KD", "student + OFA-KD"]
    assert "`resnet10` | 240 | 1 |" in rows[0] and "`resmlp_p4_pico` | 80 | 2 |" in rows[3]
    assert "eta" in out and "[3/5] student + OFA-KD" in out  # progress with ETA, step by step
    results = json.loads((work / "results.json").read_text())
    assert [r["top1"] is not None for r in results["rows"]] == [True] * 4
    facts = results["provenance"]  # where the numbers came from
    assert facts["command"].startswith("python -m tools.demo --data-dir ") and "--subset 80" in facts["command"]
    assert facts["cpu_count"] == os.cpu_count() and len(facts["load_average_end"]) == 3
    png, mindir = work / "curves.png", work / "student_ofa.mindir"
    printed = dict(line.split(":  ", 1) for line in out.splitlines() if line.startswith(("curves:  ", "MINDIR:  ")))
    assert os.path.normpath(os.path.join(ROOT, printed["curves"])) == str(png)  # paths print relative to the repo
    assert os.path.normpath(os.path.join(ROOT, printed["MINDIR"].split(" (")[0])) == str(mindir)
    assert Image.open(png).size[0] > 100 and mindir.stat().st_size > 10000
    # the KD and OFA-KD students read one cache; the teacher was not built in their runs
    assert len(os.listdir(work / "teacher_cache")) == 2  # the cache folder and its log
    assert "not built" in (work / "student_ofa" / "train.log").read_text()

    # again: every step is reused, nothing trains
    again = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("(reused) |") == 4 and "cache: reusing" in again.stdout


def test_the_chart_names_its_lines_as_the_table_does_and_draws_the_teacher_level(tmp_path, monkeypatch):
    from tools import study_plot

    records = {m: {"curve": [40.0 + i, 50.0 + i, 55.0 + i]} for i, m in enumerate(demo.METHODS)}
    series = demo.curve_series(records, {"final_top1": 79.3})
    rows = demo.format_table([{"what": title, "model": "m", "images": 1, "epochs": 3, "top1": 1.0, "time_s": 1}
                              for title in series])
    assert list(series) == ["teacher alone", "student alone", "student + KD", "student + OFA-KD"]
    assert [row.split("|")[1].strip() for row in rows[2:]] == list(series)
    figures = []
    monkeypatch.setattr(study_plot.plt, "close", figures.append)  # keep the figure to look at its lines
    demo.draw_curves(records, {"final_top1": 79.3}, "resnet10", argparse.Namespace(student="s", train_subset=9),
                     str(tmp_path / "curves.png"))
    ax = figures[0].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    teacher = lines["teacher alone"]
    assert set(teacher.get_ydata()) == {79.3} and teacher.get_marker() in ("None", "", None)
    assert teacher.get_linestyle() == "--" and list(teacher.get_xdata()) == [0, 1]  # across the axes
    assert list(lines["student + OFA-KD"].get_ydata()) == [42.0, 52.0, 57.0]
    legend = [text.get_text() for text in figures[0].legends[0].get_texts()]
    assert legend == list(series)
