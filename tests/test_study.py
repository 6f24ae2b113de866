"""The Fashion-MNIST study tool (tools/study.py) on a tiny synthetic IDX dataset, end to end."""
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from fake_fashion import write_fake_fashion_mnist
from src.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx, read_mnist
from src.provenance import provenance
from tools import study
from tools.study_plot import draw_panels, draw_sweep


def test_write_idx_round_trip_and_subset_is_fixed_and_balanced(tmp_path):
    data = write_fake_fashion_mnist(str(tmp_path / "data"), train=203, test=20)
    images, labels = read_mnist(data, "train")
    assert images.shape == (203, 28, 28) and labels.shape == (203,)
    folder, counts = study.make_subset_dir(data, str(tmp_path / "sub"), 50, seed=3)
    assert counts == [5] * 10
    sub_images, sub_labels = read_mnist(folder, "train")
    assert len(sub_labels) == 50 and np.bincount(sub_labels, minlength=10).tolist() == [5] * 10
    # every subset image is one of the originals with its own label
    index = {images[i].tobytes(): labels[i] for i in range(len(labels))}
    assert all(index[img.tobytes()] == lab for img, lab in zip(sub_images, sub_labels))
    # the test split is the original one, untouched
    test_images, _ = read_mnist(folder, "val")
    assert np.array_equal(test_images, read_mnist(data, "val")[0])
    # the same draw again gives the same files; another seed another subset
    again, _ = study.make_subset_dir(data, str(tmp_path / "sub2"), 50, seed=3)
    assert np.array_equal(read_mnist(again, "train")[0], sub_images)
    other, _ = study.make_subset_dir(data, str(tmp_path / "sub3"), 50, seed=4)
    assert not np.array_equal(read_mnist(other, "train")[0], sub_images)
    assert read_idx(os.path.join(folder, "train-labels-idx1-ubyte"), LABELS_MAGIC).dtype == np.uint8
    with pytest.raises(ValueError, match="magic"):
        read_idx(os.path.join(folder, "train-labels-idx1-ubyte"), IMAGES_MAGIC)


def test_mean_std():
    mean, std = study.mean_std([80.0, 82.0, 84.0])
    assert mean == pytest.approx(82.0) and std == pytest.approx(2.0)  # sample std (n - 1)
    assert study.mean_std([70.0]) == (70.0, 0.0)


def test_plot_draws_every_series(tmp_path):
    path = str(tmp_path / "p.png")
    panels = [{"title": "a -> b", "series": {"scratch": {"mean": [50, 60, 70], "low": [48, 59, 69],
                                                         "high": [52, 61, 71]},
                                              "OFA": {"mean": [55, 66, 75]}}},
              {"title": "c -> d", "series": {"scratch": {"mean": [40, 45, 47]}}}]
    draw_panels(panels, path, title="t")
    image = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    assert Image.open(path).size[0] == 2 * 420
    assert (image == (90, 90, 90)).all(axis=1).sum() > 50  # the scratch lines are drawn
    assert (image == (213, 94, 0)).all(axis=1).sum() > 20  # and the OFA line (one panel only)
    with pytest.raises(ValueError):
        draw_panels([], path)


def test_sweep_plot_draws_lines_and_bands(tmp_path):
    path = str(tmp_path / "s.png")
    draw_sweep({"OFA w_ofa=1": {"x": [1.0, 1.5], "mean": [70, 72], "low": [69, 71], "high": [71, 73]}},
               {"KD": {"mean": 71.0, "low": 70.5, "high": 71.5}}, path, title="t")
    image = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
    assert Image.open(path).size == (640, 420)
    assert (image == (0, 114, 178)).all(axis=1).sum() > 50  # the KD baseline line
    with pytest.raises(ValueError):
        draw_sweep({}, {}, path)


def test_method_overrides():
    args = study.parse_args(["--out", "x", "--eps", "1.5", "--w-ofa", "0.5"])
    assert study.method_overrides(args, "ofa") == {"distiller": "ofa", "eps": [1.5], "stages": [1, 2, 3, 4],
                                                   "loss_weights": [1.0, 1.0], "ofa_branch_weight": 0.5}
    assert study.method_overrides(args, "ofa_w0.1")["ofa_branch_weight"] == 0.1
    assert study.method_overrides(args, "ofa_stage4")["stages"] == [4]
    assert study.method_overrides(args, "none")["distiller"] == "none"
    assert study.method_overrides(args, "rsd") == {"distiller": "rsd", "loss_weights": [1.0, 1.0]}
    assert study.method_overrides(args, "ofa+rsd") == {"distiller": "ofa+rsd", "eps": [1.5], "stages": [1, 2, 3, 4],
                                                       "loss_weights": [1.0, 1.0], "ofa_branch_weight": 0.5}
    # RSD at another weight of its term: a variant for --ablation, reading the teacher cache with features
    assert study.method_overrides(args, "rsd_w0.01") == {"distiller": "rsd", "loss_weights": [1.0, 1.0],
                                                         "rsd_weight": 0.01}
    assert study.reads_features("rsd_w0.001") and study.reads_features("ofa+rsd") and not study.reads_features("kd")
    assert study.parse_args(["--out", "x", "--ablation", "rsd_w0.1,rsd_w0.001"]).ablation == ["rsd_w0.1", "rsd_w0.001"]
    # the ViT teacher trains longer than the CNN one, in its own folder
    assert study.teacher_overrides(args, "vit_p4_pico", "vit")["epochs"] == 5
    assert study.teacher_overrides(args, "vit_p4_pico", "vit")["output_dir"].endswith("vit_p4_pico_e5")
    assert "epochs" not in study.teacher_overrides(args, "resnet10", "cnn")
    with pytest.raises(SystemExit):
        study.parse_args(["--out", "x", "--methods", "kd,fitnet"])
    assert study.parse_args(["--out", "x", "--seeds", "5", "--only-seeds", "5", "4"]).only_seeds == [5, 4]
    with pytest.raises(SystemExit):  # a seed outside 1..--seeds
        study.parse_args(["--out", "x", "--seeds", "3", "--only-seeds", "4"])


@pytest.fixture(scope="module")
def quick_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    data = write_fake_fashion_mnist(str(root / "data"))
    argv = ["--out", str(root / "out"), "--quick", "--data-dir", data, "--work-dir", str(root / "work"),
            "--pairs", "cnn2vit,cnn2mlp", "--methods", "none,ofa", "--cnn-teacher", "resnet10",
            # cheap-to-compile students that still cover both branch kinds (token and conv)
            "--vit-student", "resmlp_p4_pico", "--mlp-student", "resnet10"]
    assert study.main(argv) == 0
    return root, argv


@pytest.mark.slow
def test_quick_study_writes_consistent_report(quick_study):
    root, argv = quick_study
    out = root / "out"
    results = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    assert results["command"] == "python -m tools.study " + " ".join(argv)
    assert results["command"] in md
    facts = results["provenance"]  # the invocation: command, commit, cores, load at the start and the end
    assert facts["command"] == results["command"] and facts["cpu_count"] == os.cpu_count()
    assert len(facts["load_average"]) == 3 and len(facts["load_average_end"]) == 3
    assert [p["key"] for p in results["pairs"]] == ["cnn2vit", "cnn2mlp"]
    assert results["missing"] == []
    teacher = results["teachers"]["cnn"]
    assert teacher["model"] == "resnet10" and 0.0 <= teacher["top1"] <= 100.0
    assert os.path.isfile(os.path.join(root / "work", "teachers", "resnet10", "last.ckpt"))
    # the teacher ran once into a cache (one view per epoch, no feature: no RSD here) that the OFA runs read
    assert teacher["cache"]["views"] == 1 and teacher["cache"]["features"] is False
    for pair in ("cnn2vit", "cnn2mlp"):
        run = json.loads((root / "work" / "runs" / pair / "ofa" / "seed1" / "study_run.json").read_text())
        assert run["config"]["teacher_cache"].endswith(os.path.basename(teacher["cache"]["path"]))
        alone = json.loads((root / "work" / "runs" / pair / "none" / "seed1" / "study_run.json").read_text())
        assert alone["config"]["teacher_cache"] is None
    for pair in results["pairs"]:
        assert set(pair["methods"]) == {"none", "ofa"}
        for method, s in pair["methods"].items():
            assert s["n"] == 1 and s["seeds"] == [1] and len(s["curve_mean"]) == 1
            assert 0.0 <= s["top1_mean"] <= 100.0 and s["top1_std"] == 0.0
            assert s["curve_mean"][-1] == pytest.approx(s["top1_mean"])
            assert (s["branch_params"] > 0) == (method == "ofa")
        # the table row shows the JSON numbers
        row = next(line for line in md.splitlines() if line.startswith(f"| {pair['teacher']} (") and
                   f"-> {pair['student']} |" in line)
        for s in pair["methods"].values():
            assert f"{s['top1_mean']:.2f} (1 seed)" in row
        assert f"{pair['methods']['ofa']['top1_mean'] - pair['methods']['none']['top1_mean']:+.2f}" in row
    assert "resnet10 (" in md and "-> resmlp_p4_pico |" in md and "-> resnet10 |" in md
    settings = results["settings"]
    assert settings["subset"] == 256 and sum(settings["class_counts"]) == 256
    image = Image.open(out / "curves.png")
    assert image.format == "PNG" and image.size[0] == 2 * 420 and image.size[1] > 200


@pytest.mark.slow
def test_report_only_reuses_the_cached_runs(quick_study):
    root, argv = quick_study
    before = json.loads((root / "out" / "results.json").read_text())
    out2 = root / "out2"
    argv2 = [a if a != str(root / "out") else str(out2) for a in argv] + ["--report-only"]
    assert study.main(argv2) == 0
    after = json.loads((out2 / "results.json").read_text())
    for a, b in zip(before["pairs"], after["pairs"]):
        for m in a["methods"]:
            assert a["methods"][m]["top1_runs"] == b["methods"][m]["top1_runs"]
    assert after["report_only"] and after["command"] == before["command"].replace(str(root / "out"), str(out2))
    assert re.search(r"rebuilt from the cached runs \(--report-only\)", (out2 / "results.md").read_text())
    assert after["train_time_min"] == pytest.approx(before["train_time_min"])


def fake_record(seed, final, curve=None, branch_params=500):
    curve = curve or [final - 5.0, final]
    return {"config": {"seed": seed, "epochs": len(curve), "image_size": 16, "batch_size": 64, "opt": "adamw",
                       "lr": 2e-3, "mode": "graph"},
            "curve": curve, "final_top1": final, "best_top1": max(curve), "student_params": 1000,
            "branch_params": branch_params, "time_s": 60.0}


def test_report_has_rsd_columns_training_only_parameters_and_flags_a_weak_teacher(tmp_path):
    args = study.parse_args(["--out", str(tmp_path), "--pairs", "cnn2vit,vit2cnn", "--seeds", "1"])
    models = {"teacher": {"cnn": "resnet10", "vit": "vit_p4_pico"},
              "student": {"cnn": "resnet10", "vit": "vit_p4_pico", "mlp": "resmlp_p4_pico"}}
    teachers = {"cnn": {"model": "resnet10", "top1": 86.0, "params": 5, "epochs": 2, "time_s": 1.0},
                "vit": {"model": "vit_p4_pico", "top1": 80.0, "params": 5, "epochs": 2, "time_s": 1.0}}
    branches = {"none": 0, "kd": 0, "ofa": 7000, "rsd": 300, "ofa+rsd": 7300}
    records = {(p, m): [fake_record(1, 70.0 + k + (12 if p == "vit2cnn" else 0), branch_params=branches[m])]
               for p in ("cnn2vit", "vit2cnn") for k, m in enumerate(study.METHODS)}
    results = study.collect(args, "cmd", models, teachers, records, [], [1] * 10, 0.0)
    md = study.render_markdown(results)
    assert "| teacher (top-1) -> student | scratch | KD | OFA | RSD | OFA+RSD |" in md
    row = next(line for line in md.splitlines() if line.startswith("| resnet10 (86.00) -> vit_p4_pico"))
    assert "73.00 (1 seed) | 74.00 (1 seed) |" in row  # RSD, OFA+RSD
    assert "| cnn2vit | 1,000 | +0 | +7,000 | +300 | +7,300 |" in md
    # the ViT teacher at 80.00 is weaker than its student alone at 82.00: said so
    assert "Not a fair pair" in md and "vit_p4_pico (80.00) -> resnet10 (82.00 alone)" in md
    assert "resnet10 (86.00) -> vit_p4_pico (70.00 alone)" not in md


def test_report_lists_ablation_variants_and_the_differences(tmp_path):
    args = study.parse_args(["--out", str(tmp_path), "--pairs", "cnn2vit", "--seeds", "2",
                             "--ablation", "ofa_w0.1", "--ablation-pair", "cnn2vit"])
    models = {"teacher": {"cnn": "resnet10", "vit": "vit_p4_pico"},
              "student": {"cnn": "resnet10", "vit": "vit_p4_pico", "mlp": "resmlp_p4_pico"}}
    teachers = {"cnn": {"model": "resnet10", "top1": 86.0, "params": 5, "epochs": 2, "time_s": 120.0}}
    records = {("cnn2vit", "none"): [fake_record(1, 70.0), fake_record(2, 72.0)],
               ("cnn2vit", "kd"): [fake_record(1, 72.0), fake_record(2, 73.0)],
               ("cnn2vit", "ofa"): [fake_record(1, 74.0), fake_record(2, 75.0)],
               ("cnn2vit", "ofa_w0.1"): [fake_record(1, 71.0), fake_record(2, 71.5)]}
    results = study.collect(args, "python -m tools.study x", models, teachers, records, [], [1] * 10, 0.0)
    assert results["train_time_min"] == pytest.approx((120.0 + 8 * 60.0) / 60)
    md = study.render_markdown(results)
    row = next(line for line in md.splitlines() if line.startswith("| resnet10 (86.00) -> vit_p4_pico"))
    assert "71.00 ± 1.41" in row and "72.50 ± 0.71" in row and "74.50 ± 0.71" in row
    # 95 % t interval with 1 degree of freedom: 74.50 +- 12.706 x 0.71 / sqrt(2)
    assert "74.50 ± 0.71 [68.15, 80.85]" in row
    # OFA - KD: +2.00, Welch's interval with 2 degrees of freedom +- 4.303 x 0.71 holds 0
    assert "| +2.00 (within noise) | +3.50 (within noise) |" in row
    assert "| cnn2vit: OFA vs KD | +2.00 | [-1.04, +5.04] | 2 / 2 | within noise |" in md
    assert "| ofa_w0.1 | w_ofa 0.1 | 71.25 ± 0.35 [68.07, 74.43] | 2 |" in md
    # Welch's degrees of freedom here: 1.47 (unequal spreads), so the interval is wide
    assert "| ofa_w0.1 vs OFA | -3.25 | [-6.71, +0.21] | 2 / 2 | within noise |" in md
    assert results["provenance"] is None  # collect() outside main(): no command line to record
    assert "| cnn2vit | ofa_w0.1 | 2 | 71.50 | 71.50 |" in md
    study.write_report(args, "cmd", results, str(tmp_path))
    assert Image.open(tmp_path / "curves.png").size[0] == 420


@pytest.mark.slow
def test_eps_sweep_two_values_from_one_cache_and_resume(tmp_path):
    """A two-value sweep on tiny data: table, JSON and PNG agree; the teacher runs once; a rerun trains nothing."""
    from tools import eps_sweep

    data = write_fake_fashion_mnist(str(tmp_path / "data"), train=160, test=64)
    out = tmp_path / "out"
    argv = ["--out", str(out), "--quick", "--data-dir", data, "--work-dir", str(tmp_path / "work"),
            "--teacher", "resnet10", "--student", "resmlp_p4_pico", "--eps", "1.0", "1.5", "--w-ofa", "1.0",
            "--seeds", "1", "--subset", "64", "--teacher-subset", "160", "--val-subset", "64", "--batch-size", "16",
            "--image-size", "8", "--stages", "4", "--time-teacher"]
    assert eps_sweep.main(argv) == 0
    results = json.loads((out / "sweep.json").read_text())
    md = (out / "sweep.md").read_text()
    assert set(results["cells"]) == {"alone", "kd", "ofa_eps1_w1", "ofa_eps1.5_w1"}
    assert results["distilled_runs"] == 3 and results["wall"]["runs_reused"] == 0
    caches = [c for c in os.listdir(tmp_path / "work" / "caches") if os.path.isdir(tmp_path / "work" / "caches" / c)]
    assert caches == [os.path.basename(results["cache"]["path"])]  # one cache, one teacher run into it
    assert os.path.isfile(results["cache"]["path"] + ".teacher_timing.json")
    for cell in ("ofa_eps1_w1", "ofa_eps1.5_w1", "kd", "alone"):
        c = results["cells"][cell]
        assert c["n"] == 1 and 0.0 <= c["top1_mean"] <= 100.0
    for eps in ("1", "1.5"):
        row = next(line for line in md.splitlines() if line.startswith(f"| {eps} |"))
        assert f"{results['cells'][f'ofa_eps{eps}_w1']['top1_mean']:.2f} (1 seed)" in row
    assert f"| KD | {results['cells']['kd']['top1_mean']:.2f} (1 seed) |" in md
    assert "teacher ran once" in md and "without the cache (estimate)" in md
    # the distilled runs read the cache, the baseline does not
    runs = tmp_path / "work" / "runs" / "resnet10_to_resmlp_p4_pico"
    for cell in ("kd", "ofa_eps1.5_w1"):
        assert json.loads((runs / cell / "seed1" / "study_run.json").read_text())["config"]["teacher_cache"] \
            == results["cache"]["path"]
    assert Image.open(out / "sweep.png").format == "PNG"
    # started again: every run is reused, nothing trains, the numbers are the same
    stamp = os.path.getmtime(runs / "kd" / "seed1" / "study_run.json")
    assert eps_sweep.main(argv) == 0
    again = json.loads((out / "sweep.json").read_text())
    assert again["wall"]["runs_reused"] == 4
    assert os.path.getmtime(runs / "kd" / "seed1" / "study_run.json") == stamp
    assert [r["final_top1"] for r in again["runs"]] == [r["final_top1"] for r in results["runs"]]


def test_eps_sweep_report_table_json_and_chart_agree(tmp_path):
    from tools import eps_sweep

    args = eps_sweep.parse_args(["--out", str(tmp_path), "--eps", "1.0", "1.5", "--w-ofa", "1.0", "0.1",
                                 "--seeds", "2", "--subset", "640"])
    assert [name for name, _ in eps_sweep.cells(args)] == [
        "alone", "kd", "ofa_eps1_w1", "ofa_eps1.5_w1", "ofa_eps1_w0.1", "ofa_eps1.5_w0.1"]
    finals = {"alone": 70.0, "kd": 72.0, "ofa_eps1_w1": 73.0, "ofa_eps1.5_w1": 75.0, "ofa_eps1_w0.1": 72.5,
              "ofa_eps1.5_w0.1": 71.0}
    records = {name: [fake_record(1, v), fake_record(2, v + 1.0)] for name, v in finals.items()}
    teacher = {"final_top1": 85.0, "time_s": 120.0, "student_params": 5, "config": {"epochs": 2}}
    cache = {"path": str(tmp_path / "cache_k2"), "built": True, "seconds": 30.0, "write_seconds": 20.0,
             "views_per_s": 400.0}
    timing = {"forward_s_per_step": 0.05, "compile_s": 4.0}
    args.provenance = provenance("cmd", study.ROOT)  # what main() records before the first run
    results = eps_sweep.collect(args, "cmd", teacher, cache, timing, records, [64] * 10, 0.0, 0)
    facts = results["provenance"]
    assert facts["command"] == "cmd" and facts["cpu_count"] == os.cpu_count() and len(facts["load_average_end"]) == 3
    assert results["distilled_runs"] == 10 and results["settings"]["steps_per_run"] == 10 * 2
    # without a cache: 10 distilled runs x (20 steps x 0.05 s + 4 s compile) more
    assert results["wall"]["estimated_teacher_s_without_cache"] == pytest.approx(10 * (20 * 0.05 + 4.0))
    eps_sweep.write_report(results, str(tmp_path))
    md = (tmp_path / "sweep.md").read_text()
    assert json.loads((tmp_path / "sweep.json").read_text())["cells"]["ofa_eps1.5_w1"]["top1_mean"] == 75.5
    assert "| eps | OFA, w_ofa 1 | OFA, w_ofa 0.1 |" in md
    assert "| 1.5 | 75.50 ± 0.71 [69.15, 81.85] | 71.50 ± 0.71 [65.15, 77.85] |" in md
    assert "| KD | 72.50 ± 0.71 [66.15, 78.85] |" in md and "| student alone | 70.50 ± 0.71 [64.15, 76.85] |" in md
    assert ("Highest OFA mean: eps 1.5, w_ofa 1: 75.50, +3.00 over KD (within noise), +5.00 over the student "
            "alone (higher).") in md
    assert "| ofa_eps1.5_w1 vs KD | +3.00 | [-0.04, +6.04] | 2 / 2 | within noise |" in md
    assert "teacher ran once" in md
    assert Image.open(tmp_path / "sweep.png").size == (640, 420)


def test_a_run_locked_by_a_live_process_is_skipped_and_a_stale_lock_taken_over(tmp_path):
    folder = str(tmp_path / "run")
    os.makedirs(folder)
    lock = os.path.join(folder, study.RUN_LOCK)
    assert study._lock_run(folder) and open(lock).read() == str(os.getpid())
    os.remove(lock)
    with open(lock, "w") as f:
        f.write(str(os.getppid()))  # a live process (the test runner's parent) holds it
    assert not study._lock_run(folder)
    with open(lock, "w") as f:
        f.write("999999999")  # no such process: a lock left by a killed study
    assert study._lock_run(folder) and open(lock).read() == str(os.getpid())
