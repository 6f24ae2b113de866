"""Tables in README.md and docs/*.md generated from the results files committed under results/.

    python -m tools.results_tables            # rewrite every results block from its file
    python -m tools.results_tables --check    # list stale blocks and missing files; exit status 1 if any

A results block in a page is

    <!-- results:KIND results/PATH.json [results/OTHER.json ...] -->
    (generated text: never edit by hand)
    <!-- /results -->

KIND says how to render its files: ``demo`` (the demo's table, tools/demo.py), ``study`` (a study's table
per pair: mean ± sample std [95 % t interval] per method), ``differences`` (a study's or a sweep's
"A vs B" differences with their 95 % Welch intervals and "within noise" where the interval holds 0),
``ablation`` (a study's ablation variants) and ``sweeps`` (one row per eps sweep file). The intervals and
differences are computed here from the per-seed numbers in the files (src/stats.py), so a report written
before the statistics existed is shown the same way as a new one.
"""
import argparse
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"(<!-- results:(?P<kind>[\w-]+)(?P<files>(?: [^\s>]+)+) -->\n)(?P<body>.*?)(<!-- /results -->)",
                   re.S)


def pages(root=ROOT):
    """README.md and every page under docs/ (the pages that may quote results)."""
    return [os.path.join(root, "README.md")] + sorted(glob.glob(os.path.join(root, "docs", "*.md")))


def read_results(root, path):
    """The JSON at ``path`` (relative to the repository); a missing or unreadable file is a ValueError."""
    full = os.path.join(root, path)
    if not os.path.isfile(full):
        raise ValueError(f"results file {path} is missing (a results block quotes it)")
    try:
        with open(full, encoding="utf-8") as f:
            return json.load(f)
    except ValueError as err:
        raise ValueError(f"results file {path} is not valid JSON: {err}") from None


# ----------------------------------------------------------------------------- statistics of old and new reports

def with_statistics(summary):
    """A method's summary with its 95 % interval recomputed from its per-seed finals (``top1_runs``)."""
    from src.stats import mean_interval

    if not summary or not summary.get("n"):
        return summary
    interval = mean_interval(summary["top1_runs"])
    ci = [interval["low"], interval["high"]] if interval["low"] is not None else None
    return {**summary, "top1_mean": interval["mean"], "top1_std": interval["std"] or 0.0, "top1_ci95": ci}


def study_differences(pair, methods):
    from tools.study import compare, comparison_pairs

    return compare({m: with_statistics(s) for m, s in pair["methods"].items()}, comparison_pairs(methods))


# ----------------------------------------------------------------------------- renderers: (files) -> lines

def render_demo(root, files):
    from tools.demo import format_table

    (path,) = files
    r = read_results(root, path)
    facts = r.get("provenance") or {}
    gains = ", ".join(f"{name}: {value:+.2f} points" for name, value in r["gains"].items())
    load = ""
    if facts.get("load_average") and facts.get("load_average_end"):
        load = f" at load average {facts['load_average'][0]:.1f} -> {facts['load_average_end'][0]:.1f}"
    return format_table(r["rows"]) + [
        "",
        f"{gains} (one seed). Teacher cache {r['cache']['time_s'] / 60:.1f} min, export "
        f"{r['export']['time_s'] / 60:.1f} min; whole demo {r['elapsed_s'] / 60:.1f} min{load} on "
        f"{facts.get('cpu_count', '?')} cores (`{path}`).",
    ]


def render_study(root, files):
    from tools.study import METHOD_TITLES, fmt_summary

    lines = []
    for path in files:
        r = read_results(root, path)
        methods = r["methods"]
        if not lines:
            columns = ["teacher (top-1) -> student"] + [METHOD_TITLES[m] for m in methods]
            columns += ["OFA - KD"] if "kd" in methods and "ofa" in methods else []
            lines += ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
        for pair in r["pairs"]:
            t = r["teachers"].get(pair["teacher_role"], {})
            cells = [f"{pair['teacher']} ({t.get('top1', 0):.2f}) -> {pair['student']}"]
            cells += [fmt_summary(with_statistics(pair["methods"].get(m))) for m in methods]
            if "kd" in methods and "ofa" in methods:
                d = next((d for d in study_differences(pair, methods) if (d["a"], d["b"]) == ("ofa", "kd")), None)
                cells.append(f"{d['diff']:+.2f} ({d['verdict']})" if d else "-")
            lines.append("| " + " | ".join(cells) + " |")
    seeds = sorted({s["n"] for path in files for p in read_results(root, path)["pairs"]
                    for s in p["methods"].values() if s.get("n")})
    return lines + ["", "Final test top-1 (%), mean ± sample std [95 % t interval of the mean] over "
                    f"{' / '.join(map(str, seeds))} seed(s) ({', '.join(f'`{p}`' for p in files)})."]


def render_differences(root, files):
    from tools.study import render_differences as rows_to_lines

    rows = []
    for path in files:
        r = read_results(root, path)
        if "pairs" in r:  # a study
            for pair in r["pairs"]:
                top1 = r["teachers"].get(pair["teacher_role"], {}).get("top1")
                label = pair["key"] + (f" (teacher {top1:.2f})" if top1 is not None else "")
                rows += [dict(d, pair=label) for d in study_differences(pair, r["methods"])]
            if r.get("ablation"):
                rows += ablation_differences(r["ablation"])
        else:  # an eps sweep
            from tools.eps_sweep import comparison_pairs
            from tools.study import compare

            cells = {name: with_statistics(s) for name, s in r["cells"].items()}
            ofa = [n for n in cells if n.startswith("ofa_")]
            rows += [dict(d, pair=r["student"]) for d in compare(cells, comparison_pairs(ofa))]
    return rows_to_lines(rows) + ["", "A - B of the mean final top-1 with its two-sided 95 % Welch interval; "
                                  "\"within noise\": the interval holds 0, the seeds cannot tell A from B."]


def ablation_differences(ab):
    from tools.study import compare

    variants = {v: with_statistics(s) for v, s in ab["variants"].items()}
    own = [v for v in variants if v not in ("none", "kd", "ofa")]
    return [dict(d, pair=ab["pair"]) for d in compare(variants, [(v, b) for b in ("kd", "ofa", "none") for v in own])]


def render_ablation(root, files):
    from tools.study import fmt_summary

    (path,) = files
    ab = read_results(root, path)["ablation"]
    lines = [f"| variant ({ab['teacher']} -> {ab['student']}) | overrides | top-1 | seeds |", "| --- | --- | --- | --- |"]
    for name, s in ab["variants"].items():
        lines.append(f"| {name} | {ab['overrides'].get(name, '')} | {fmt_summary(with_statistics(s))} | {s['n']} |")
    return lines + ["", f"Mean ± sample std [95 % t interval] (`{path}`)."]


def render_sweeps(root, files):
    """One row per cell (the student alone, KD, then every OFA (eps, w_ofa)), one column per sweep file."""
    from tools.study import fmt_summary

    sweeps = [(path, read_results(root, path)) for path in files]
    names = []
    for _, r in sweeps:
        names += [n for n in r["cells"] if n not in names]
    names = [n for n in ("alone", "kd") if n in names] + [n for n in names if n not in ("alone", "kd")]
    titles = {"alone": "student alone", "kd": "KD"}

    def title(name):
        if name in titles:
            return titles[name]
        m = re.fullmatch(r"ofa_eps([\d.]+)_w([\d.]+)", name)
        return f"OFA eps {m.group(1)}, w_ofa {m.group(2)}" if m else name

    def cell(r, name):  # a cell with fewer seeds than the sweep's fullest says how many it has
        summary, most = r["cells"].get(name), max(c["n"] for c in r["cells"].values())
        text = fmt_summary(with_statistics(summary))
        return text + f" ({summary['n']} seeds)" if summary and 1 < summary["n"] < most else text

    heads = [f"{r['teacher']['model']} ({r['teacher']['top1']:.2f} %) -> {r['student']}" for _, r in sweeps]
    lines = ["| cell | " + " | ".join(heads) + " |", "|" + " --- |" * (len(heads) + 1)]
    for n in names:
        lines.append(f"| {title(n)} | " + " | ".join(cell(r, n) for _, r in sweeps) + " |")
    return lines + ["", f"Final test top-1 (%) ({', '.join(f'`{p}`' for p in files)})."]


RENDERERS = {"demo": render_demo, "study": render_study, "differences": render_differences,
             "ablation": render_ablation, "sweeps": render_sweeps}


# ----------------------------------------------------------------------------- blocks

def render_block(root, kind, files):
    if kind not in RENDERERS:
        raise ValueError(f"unknown results block kind {kind!r} (known: {', '.join(RENDERERS)})")
    return "\n".join(RENDERERS[kind](root, files)) + "\n"


def update_text(text, root=ROOT):
    """``(new text, [problems])``: every block regenerated; a block whose file is missing is kept as it was."""
    problems = []

    def one(match):
        files = match.group("files").split()
        try:
            body = render_block(root, match.group("kind"), files)
        except ValueError as err:
            problems.append(str(err))
            return match.group(0)
        return match.group(1) + body + match.group(5)
    return BLOCK.sub(one, text), problems


def check(root=ROOT):
    """Problems of every page: stale blocks (a quoted number differs from its file) and missing files."""
    problems = []
    for page in pages(root):
        with open(page, encoding="utf-8") as f:
            text = f.read()
        new, errors = update_text(text, root)
        name = os.path.relpath(page, root)
        problems += [f"{name}: {e}" for e in errors]
        if new != text:
            problems.append(f"{name}: a results block differs from its file; run python -m tools.results_tables")
    return problems


# ----------------------------------------------------------------------------- figures outside the blocks

# a quoted result: a ratio (1.28x), a percentage (57.89 %) or a spread (73.16 ± 0.72, +- 0.72)
FIGURE = re.compile(r"(?<![\w.])(\d+\.\d+)\s*(x\b|%|\s*(?:\+-|±))|(?:\+-|±)\s*(\d+\.\d+)")


UNBACKED = re.compile(r"<!-- unbacked: [^>]+ -->.*?<!-- /unbacked -->", re.S)


def numbers_in_results(root=ROOT):
    """Every number in every JSON file under results/."""
    have = set()

    def walk(o):
        if isinstance(o, bool):
            return
        if isinstance(o, (int, float)):
            have.add(float(o))
        elif isinstance(o, dict):
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
    for path in glob.glob(os.path.join(root, "results", "**", "*.json"), recursive=True):
        walk(read_results(root, os.path.relpath(path, root)))
    return have


def unbacked_figures(page, have):
    """Figures quoted in ``page`` outside code and results blocks that no number in ``have`` rounds to
    (at the quoted precision, as it is or as a percentage of a fraction).

    A passage between ``<!-- unbacked: REASON -->`` and ``<!-- /unbacked -->`` is skipped: figures whose run
    left no file, which the page must say in its text (the hook before a session stops still counts them).
    """
    with open(page, encoding="utf-8") as f:
        text = UNBACKED.sub("", BLOCK.sub("", f.read()))
    out, code = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            code = not code
        if code:
            continue
        for m in FIGURE.finditer(line):
            quoted = m.group(1) or m.group(3)
            digits, value = len(quoted.split(".")[1]), float(quoted)
            if not any(abs(round(h * k, digits) - value) < 1e-9 for h in have for k in (1, 100)):
                out.append(m.group(0).strip())
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.results_tables", description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when a block is stale or a file missing")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.check:
        problems = check()
        for line in problems:
            print(line)
        return 1 if problems else 0
    from src.files import write_text_atomic

    status = 0
    for page in pages():
        with open(page, encoding="utf-8") as f:
            text = f.read()
        new, errors = update_text(text)
        for e in errors:
            print(f"{os.path.relpath(page, ROOT)}: {e}")
            status = 1
        if new != text:
            write_text_atomic(page, new)
            print(f"updated {os.path.relpath(page, ROOT)}")
    return status


if __name__ == "__main__":
    sys.exit(main())
