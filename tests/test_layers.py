"""The library's packages import downward only: src/engine over src/distill over src/teacher over src/data and
src/models. Read from the source (every ``import`` and ``from`` of src/, lazy ones inside functions too)."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# lowest first; a package may import the ones before it, never one after it
LAYERS = ("models", "data", "teacher", "distill", "engine")


def imported_packages(path, package):
    """The ``src.<name>`` packages that the module at ``path`` (inside ``src/<package>``) imports."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 1:  # from .x: its own package
                continue
            names = [("src." if node.level == 2 else "") + (node.module or "")]
            if node.level == 2 and not node.module:  # from .. import x
                names = ["src." + alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if len(parts) > 1 and parts[0] == "src" and parts[1] != package:
                found.add(parts[1])
    return found


def test_packages_import_only_the_layers_below_them():
    upward = []
    for rank, package in enumerate(LAYERS):
        folder = os.path.join(ROOT, "src", package)
        for dirpath, _, files in os.walk(folder):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    above = imported_packages(path, package) & set(LAYERS[rank + 1:])
                    upward += [f"{os.path.relpath(path, ROOT)} imports src.{p}" for p in sorted(above)]
    assert not upward, upward


def test_the_reader_sees_relative_and_lazy_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("from ..teacher import x\nfrom .. import engine\n\ndef f():\n    import src.distill.losses\n")
    assert imported_packages(str(module), "data") == {"teacher", "engine", "distill"}
