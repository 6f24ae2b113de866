"""Docs cannot go stale silently: every repository path they name exists, and the key table is the code's.

Checked: local Markdown links (and their #anchors) and backticked or code-block repository paths in README.md,
docs/*.md and benchmarks/README.md; paths in the comments of configs/**/*.yaml; paths in the docstrings and
--help strings of train.py, eval.py, export.py, tools/*.py, benchmarks/*.py and in scripts/*.sh. A path is a
word starting with one of the repository's top-level folders (``configs/``, ``docs/``, ``src/`` ...) or naming
one of its top-level files; ``path::name`` also needs ``def name`` (or ``class name``) in that file, and
``python -m tools.x`` needs ``tools/x.py``. Placeholders are skipped: ``...``, ``<...>``, globs, braces and
all-capital components (``CONFIG``, ``OUTPUT_DIR``).
"""
import ast
import glob
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TOP_DIRS = ("configs", "docs", "src", "tools", "scripts", "tests", "benchmarks", "results", ".ci")
TOP_FILES = ("train.py", "eval.py", "export.py", "README.md", "pyproject.toml", "pytest.ini",
             "requirements.txt", "requirements-test.txt", "requirements-convert.txt")
# A path word: not glued to a preceding word, slash, dot or $ (so URLs and $ROOT/x are not read as paths).
PATH_RE = re.compile(r"(?<![\w./$@-])((?:%s)/[\w./*{}<>,-]*|(?:%s)(?![\w-]))(::\w+)?" % (
    "|".join(re.escape(d) for d in TOP_DIRS), "|".join(re.escape(f) for f in TOP_FILES)))
MODULE_RE = re.compile(r"python3? -m ((?:tools|benchmarks|src)(?:\.\w+)+)")
LINK_RE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE_RE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
INLINE_CODE_RE = re.compile(r"`([^`\n]+)`")
PLACEHOLDER_RE = re.compile(r"\.\.\.|[<>*{}]|(^|/)[A-Z][A-Z0-9_]+(\.\w+)?(/|$)")

# Files of the OFA-KD authors' repository that our docs and recipe comments name (they are not ours).
FOREIGN_PATHS = {"configs/cifar/cnn.yaml", "configs/cifar/vit_mlp.yaml", "configs/imagenet/cnn.yaml",
                 "configs/imagenet/stronger.yaml",
                 "configs/imagenet/vit_mlp.yaml"}


def slug(heading):
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(md_text):
    text = FENCE_RE.sub("", md_text)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M)}


def path_words(text):
    """(path, name-or-None) for every repository path word in ``text``, placeholders left out."""
    found = []
    for m in PATH_RE.finditer(text):
        if PLACEHOLDER_RE.search(m.group(1)):
            continue
        path = m.group(1).rstrip(".,:;")
        if path in FOREIGN_PATHS:
            continue
        found.append((path, m.group(2)[2:] if m.group(2) else None))
    for m in MODULE_RE.finditer(text):
        found.append((m.group(1).replace(".", "/") + ".py", None))
    return found


def _check_path(root, path, name):
    full = os.path.join(root, path)
    if path.endswith(".py") and not os.path.exists(full) and os.path.isdir(full[:-3]):
        full = os.path.join(full[:-3], "__init__.py")  # python -m package
    if not os.path.exists(full):
        return f"{path} does not exist"
    if name is not None:
        with open(full, encoding="utf-8") as f:
            if not re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b", f.read(), re.M):
                return f"{path} has no '{name}'"
    return None


def markdown_references(root, rel):
    """Problems with the links and path words of one Markdown file: a list of 'file: what' strings."""
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        text = f.read()
    problems = []
    for m in LINK_RE.finditer(FENCE_RE.sub("", text)):
        target = m.group(1)
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        target_path, _, anchor = target.partition("#")
        full = os.path.normpath(os.path.join(root, os.path.dirname(rel), target_path)) if target_path else \
            os.path.join(root, rel)
        if not os.path.exists(full):
            problems.append(f"{rel}: link ({target}) points to a missing file")
        elif anchor and full.endswith(".md"):
            with open(full, encoding="utf-8") as f:
                if anchor not in anchors(f.read()):
                    problems.append(f"{rel}: link ({target}): no heading with anchor #{anchor}")
    code = [m.group(0) for m in FENCE_RE.finditer(text)]
    code += INLINE_CODE_RE.findall(FENCE_RE.sub("", text))
    for span in code:
        for path, name in path_words(span):
            why = _check_path(root, path, name)
            if why:
                problems.append(f"{rel}: `{path}{'::' + name if name else ''}`: {why}")
    return problems


def yaml_comment_references(root, rel):
    problems = []
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            m = re.search(r"(^|\s)#(.*)$", line)
            for path, name in path_words(m.group(2) if m else ""):
                why = _check_path(root, path, name)
                if why:
                    problems.append(f"{rel}:{number}: {why}")
    return problems


def python_string_references(root, rel):
    """Path words in the string constants of a Python file (docstrings, --help texts, defaults)."""
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        tree = ast.parse(f.read(), rel)
    in_fstring = {id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values}
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in in_fstring:
            for path, name in path_words(node.value):
                why = _check_path(root, path, name)
                if why:
                    problems.append(f"{rel}:{node.lineno}: {why}")
    return problems


def text_references(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        return [f"{rel}: {why}" for path, name in path_words(f.read()) if (why := _check_path(root, path, name))]


def dangling_references(root):
    """Every dangling reference in the repository at ``root``, as 'file: what' strings."""
    def rels(*patterns):
        return sorted({os.path.relpath(p, root) for pattern in patterns
                       for p in glob.glob(os.path.join(root, pattern), recursive=True)})

    problems = []
    for rel in rels("README.md", "docs/*.md", "benchmarks/README.md"):
        problems += markdown_references(root, rel)
    for rel in rels("configs/**/*.yaml"):
        problems += yaml_comment_references(root, rel)
    for rel in rels("train.py", "eval.py", "export.py", "tools/*.py", "benchmarks/*.py", "src/**/*.py"):
        problems += python_string_references(root, rel)
    for rel in rels("scripts/*.sh"):
        problems += text_references(root, rel)
    return problems


def test_every_reference_in_docs_configs_and_help_texts_exists():
    problems = dangling_references(ROOT)
    assert not problems, "dangling references:\n" + "\n".join(problems)


def _write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def test_checker_finds_fabricated_dangling_references(tmp_path):
    root = str(tmp_path)
    _write(root, "tools/real.py", '"""Run: python tools/real.py --config configs/a/ok.yaml"""\ndef main():\n    pass\n')
    _write(root, "configs/a/ok.yaml", "# see docs/guide.md and src/gone.py\nlr: 1\n")
    _write(root, "docs/guide.md", "# Guide\n\n## Two words\n\nok\n")
    _write(root, "scripts/run.sh", 'USAGE="e.g. bash scripts/run.sh configs/a/ok.yaml; $ROOT/configs/x.yaml"\n'
                                   'exec python train.py "$@"\n')
    _write(root, "README.md", "\n".join([
        "[guide](docs/guide.md) [anchor](docs/guide.md#two-words) [web](https://example.com/docs/x.md)",
        "[bad anchor](docs/guide.md#three-words) [missing](docs/missing.md) [self](#readme)",
        "# Readme",
        "`tools/real.py` `tools/real.py::main` `tools/real.py::nothing` `configs/a/gone.yaml`",
        "`configs/imagenet/...` `OUTPUT_DIR/config.yaml` `configs/X/CONFIG.yaml` `tests/test_*.py` `outputs/run`",
        "```bash", "python -m tools.real && python -m tools.absent", "```",
    ]) + "\n")
    problems = dangling_references(root)
    expected = [
        "README.md: link (docs/guide.md#three-words): no heading with anchor #three-words",
        "README.md: link (docs/missing.md) points to a missing file",
        "README.md: `tools/real.py::nothing`: tools/real.py has no 'nothing'",
        "README.md: `configs/a/gone.yaml`: configs/a/gone.yaml does not exist",
        "README.md: `tools/absent.py`: tools/absent.py does not exist",
        "configs/a/ok.yaml:1: src/gone.py does not exist",
        "scripts/run.sh: train.py does not exist",
    ]
    assert sorted(problems) == sorted(expected)
    _write(root, "train.py", "")
    os.remove(os.path.join(root, "docs/guide.md"))
    problems = dangling_references(root)
    assert "scripts/run.sh: train.py does not exist" not in problems
    assert "configs/a/ok.yaml:1: docs/guide.md does not exist" in problems
    assert "README.md: link (docs/guide.md) points to a missing file" in problems


def test_python_help_string_with_a_dangling_example_is_found(tmp_path):
    root = str(tmp_path)
    _write(root, "tools/t.py", 'import argparse\np = argparse.ArgumentParser()\n'
                               'p.add_argument("--config", help="e.g. configs/missing.yaml")\n'
                               'x = f"{root}/configs/ignored.yaml"\n')
    assert dangling_references(root) == ["tools/t.py:3: configs/missing.yaml does not exist"]


def test_slug_follows_github():
    assert slug("Where we differ from the authors' code, and why") == "where-we-differ-from-the-authors-code-and-why"
    assert slug("Which stages: the models' stage features") == "which-stages-the-models-stage-features"
    assert slug("`resume` and `overwrite`") == "resume-and-overwrite"


def test_config_key_table_is_current():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "keys_table.py"), "--check",
                             os.path.join(ROOT, "docs", "configs.md")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_key_table_lists_every_key_and_write_replaces_only_the_block(tmp_path):
    sys.path.insert(0, ROOT)
    from src.config import KEYS
    from tools.keys_table import BEGIN, END, main, markdown_table

    table = markdown_table()
    assert [line.split("`")[1] for line in table.splitlines()[2:]] == list(KEYS)
    assert "| `eps` | float list | `[1.0]` |" in table
    page = tmp_path / "configs.md"
    page.write_text(f"# Keys\n\nbefore\n\n{BEGIN}\n| stale | table |\n{END}\n\nafter\n", encoding="utf-8")
    assert main(["--check", str(page)]) == 1
    assert main(["--write", str(page)]) == 0
    assert page.read_text(encoding="utf-8") == f"# Keys\n\nbefore\n\n{BEGIN}\n{table}{END}\n\nafter\n"
    assert main(["--check", str(page)]) == 0
    page.write_text("no markers\n", encoding="utf-8")
    assert main(["--write", str(page)]) == 2
    assert page.read_text(encoding="utf-8") == "no markers\n"


@pytest.mark.parametrize("word", ["SPEC" + ".md", "STYLE" + ".md"])
def test_no_file_cites_documents_outside_the_repository(word):
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:
        pytest.skip("not a git checkout: cannot list the tracked files")
    hits = []
    for rel in tracked.stdout.split():
        if rel.endswith((".py", ".md", ".yaml", ".sh", ".txt", ".toml", ".ini")) or rel == ".ci/run":
            with open(os.path.join(ROOT, rel), encoding="utf-8", errors="replace") as f:
                if word in f.read():
                    hits.append(rel)
    assert not hits, f"{word} is cited by {hits}; cite the paper or docs/ instead"
