"""Figures quoted in README.md and docs/ against the committed files under results/ (tools/results_tables.py)."""
import json
import os

from tools import results_tables

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_results_block_matches_its_file():
    assert results_tables.check(ROOT) == []


def test_figures_in_readme_and_docs_are_in_a_results_file():
    # every quoted ratio ("1.28x"), percentage ("57.89 %") and spread ("± 0.72") in README.md and docs/, the
    # study and speed pages alike, outside passages marked <!-- unbacked: ... --> that say their run left no file
    have = results_tables.numbers_in_results(ROOT)
    unbacked = {os.path.relpath(page, ROOT): results_tables.unbacked_figures(page, have)
                for page in results_tables.pages(ROOT)}
    assert {page: figures for page, figures in unbacked.items() if figures} == {}


def _study_json(finals):
    runs = {m: {"n": len(v), "top1_runs": v, "top1_mean": sum(v) / len(v), "top1_std": 0.0}
            for m, v in finals.items()}
    return {"methods": list(finals), "teachers": {"cnn": {"top1": 86.0}},
            "pairs": [{"key": "cnn2vit", "teacher_role": "cnn", "teacher": "resnet10", "student": "vit_p4_pico",
                       "methods": runs}]}


def test_a_changed_number_or_a_missing_file_is_caught(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "results").mkdir()
    path = tmp_path / "results" / "s.json"
    path.write_text(json.dumps(_study_json({"kd": [72.0, 73.0, 74.0], "ofa": [75.0, 76.0, 77.0]})))
    page = tmp_path / "README.md"
    page.write_text("intro\n<!-- results:study results/s.json -->\nstale\n<!-- /results -->\nend\n")
    new, problems = results_tables.update_text(page.read_text(), str(tmp_path))
    assert problems == []
    # mean 73 +- 1 over 3 seeds: 73 +- 4.303 / sqrt(3); OFA - KD = +3 with Welch's interval +- 4.303 x 0.816
    assert "| 73.00 ± 1.00 [70.52, 75.48] | 76.00 ± 1.00 [73.52, 78.48] | +3.00 (higher) |" in new
    assert new.startswith("intro\n<!-- results:study results/s.json -->\n| teacher") and new.endswith("<!-- /results -->\nend\n")
    page.write_text(new)
    assert results_tables.check(str(tmp_path)) == []
    page.write_text(new.replace("76.00 ± 1.00", "76.10 ± 1.00"))  # a number edited by hand
    assert results_tables.check(str(tmp_path)) == [
        "README.md: a results block differs from its file; run python -m tools.results_tables"]
    path.unlink()
    assert results_tables.check(str(tmp_path))[0] == \
        "README.md: results file results/s.json is missing (a results block quotes it)"


def test_unbacked_figures_follow_the_quoted_precision(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("OFA 57.89 % and 1.28x, spread +- 0.72.\n```\n9.99x in a code block\n```\n"
                    "<!-- results:demo results/x.json -->\n| 12.34 % |\n<!-- /results -->\nKD 51.5 %\n"
                    "<!-- unbacked: its run left no file -->\nNo file backs 3.21x.\n<!-- /unbacked -->\n")
    # 0.5789 is a fraction (x 100), 1.2799 rounds to 1.28, 0.72 is there; 51.5 is not
    assert results_tables.unbacked_figures(str(page), {0.5789, 1.2799, 0.72}) == ["51.5 %"]


def test_a_sweeps_block_has_a_row_per_cell_and_says_when_a_cell_has_fewer_seeds(tmp_path):
    (tmp_path / "results").mkdir()

    def summary(runs):
        return {"n": len(runs), "top1_runs": runs, "top1_mean": sum(runs) / len(runs), "top1_std": 0.0}

    cells = {"alone": summary([70.0, 71.0, 72.0]), "kd": summary([72.0, 73.0, 74.0]),
             "ofa_eps1_w0.1": summary([74.0, 75.0]), "ofa_eps2_w1": summary([73.5])}
    (tmp_path / "results" / "a.json").write_text(json.dumps(
        {"teacher": {"model": "resnet10", "top1": 85.0}, "student": "vit_p4_pico", "cells": cells}))
    lines = results_tables.render_block(str(tmp_path), "sweeps", ["results/a.json"]).splitlines()
    assert lines[0] == "| cell | resnet10 (85.00 %) -> vit_p4_pico |"
    assert lines[2].startswith("| student alone | 71.00 ± 1.00 [68.52, 73.48] |")
    assert lines[3].startswith("| KD | 73.00 ± 1.00 ")
    assert lines[4].startswith("| OFA eps 1, w_ofa 0.1 | 74.50 ± 0.71 [") and lines[4].endswith(" (2 seeds) |")
    assert lines[5] == "| OFA eps 2, w_ofa 1 | 73.50 (1 seed) |"
