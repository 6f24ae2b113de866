"""The loader benchmark (``python -m benchmarks loader``): its report on a tiny JPEG folder it writes itself."""
import json
import os

from benchmarks.__main__ import main as benchmarks_main


def test_loader_benchmark_report(tmp_path, capsys):
    out = tmp_path / "loader.json"
    code = benchmarks_main(["loader", "--images", "16", "--classes", "2", "--width", "40", "--height", "30",
                            "--image-size", "16", "--batch-size", "4", "--rounds", "2", "--settings", "1", "2mp",
                            "--with-pil", "--json", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out.read_text())
    assert lines[-1] == f"ours_over_imagefolder={result['ours_over_imagefolder']:.4f}"
    assert set(result["settings"]) == {"1", "2mp"}
    for setting, workers, multiprocessing in (("1", 1, False), ("2mp", 2, True)):
        row = result["settings"][setting]
        for way in ("ours", "imagefolder", "pil"):
            timing = row[way]
            assert timing["workers"] == workers and timing["python_multiprocessing"] == multiprocessing
            # 16 images, batch 4: 3 timed batches after the first, in each of the 2 epochs
            assert [epoch["images"] for epoch in timing["epochs"]] == [12, 12]
            assert timing["images_per_s"] > 0 and timing["images_per_cpu_s"] > 0
            assert abs(timing["images_per_s_per_worker"] * workers - timing["images_per_s"]) < 1e-6
        ratio = row["ours"]["images_per_s"] / row["imagefolder"]["images_per_s"]
        assert abs(row["ours_over_imagefolder"] - ratio) < 1e-9
    assert result["ours_over_imagefolder"] == min(r["ours_over_imagefolder"] for r in result["settings"].values())
    assert result["config"]["split"] == "train" and len(result["machine"]["loadavg_start"]) == 3
    # every benchmark's JSON says where it came from: commit, cores, load, options
    assert result["provenance"]["cpu_count"] == os.cpu_count() and len(result["provenance"]["load_average"]) == 3
    in_git = os.path.exists(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".git"))
    assert len(result["provenance"]["commit"] or "") == (40 if in_git else 0)
    assert result["options"]["images"] == 16 and result["options"]["json"] == str(out)


def test_loader_benchmark_rejects_too_few_images(capsys):
    assert benchmarks_main(["loader", "--images", "4", "--batch-size", "4"]) == 2
    assert capsys.readouterr().err.startswith("error: need --images >= 2 batches")
