"""The layers, kept by a test: features < pipeline < train < mer (the application).

Every ``import`` in every module is read (lazy imports inside functions too, since a lazy
upward import is still an upward dependency). A lower layer importing a higher one fails, and
so do modules importing each other in a circle at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: layer -> folder in the repository (installed as mer.<layer>; the application is mer/ itself)
LAYERS = {"features": "features", "pipeline": "pipeline", "train": "train", "mer": "mer"}
RANK = {"features": 0, "pipeline": 1, "train": 2, "mer": 3}


def module_name(root: Path, layer: str, path: Path) -> str:
    rel = path.relative_to(root / LAYERS[layer]).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["mer"] + ([] if layer == "mer" else [layer]) + parts)


def layer_of(module: str) -> str | None:
    """The layer of a ``mer...`` module name (None: not ours, or the shipped configs)."""
    parts = module.split(".")
    if parts[0] != "mer":
        return None
    if len(parts) > 1 and parts[1] in ("features", "pipeline", "train"):
        return parts[1]
    if len(parts) > 1 and parts[1] == "configs":
        return None
    return "mer"


def imports(path: Path, module: str) -> list[tuple[int, str, bool]]:
    """(line, imported module, at module level?) for every import of a ``mer`` module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    top_level = {id(n) for n in tree.body}
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "mer" and all(a.name == "__version__" for a in node.names):
                continue  # the version string lives in the package root, which every module imports
            # `from mer.train import data` imports the module mer.train.data
            names = [f"{target}.{a.name}" for a in node.names] if target.count(".") < 2 else [target]
        else:
            continue
        for name in names:
            if name.startswith("mer"):
                found.append((node.lineno, name, id(node) in top_level))
    return found


def module_imports(root: Path) -> dict[str, list[tuple[str, int, str, bool]]]:
    """module -> [(its layer, line, imported module, module level?)] over the whole tree."""
    out = {}
    for layer, folder in LAYERS.items():
        for path in sorted((root / folder).rglob("*.py")):
            module = module_name(root, layer, path)
            out[module] = [(layer, line, name, top) for line, name, top in imports(path, module)]
    return out


def upward_imports(root: Path) -> list[str]:
    bad = []
    for module, found in module_imports(root).items():
        for layer, line, name, _ in found:
            target = layer_of(name)
            if target is not None and RANK[target] > RANK[layer]:
                bad.append(f"{module}:{line} ({layer}) imports {name} ({target})")
    return bad


def import_cycles(root: Path) -> list[list[str]]:
    """Circles among module-level imports (what Python runs while importing a module)."""
    graph = module_imports(root)
    known = set(graph)

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rsplit(".", 1)[0] if "." in name else ""
        return name or None

    edges = {m: sorted({t for _, _, n, top in found if top and (t := resolve(n)) and t != m})
             for m, found in graph.items()}
    cycles, state, stack = [], {}, []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in edges.get(m, []):
            if state.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    return cycles


def test_no_module_imports_a_higher_layer():
    assert upward_imports(ROOT) == []


def test_no_modules_import_each_other_in_a_circle():
    assert import_cycles(ROOT) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for folder in LAYERS.values():
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "__init__.py").write_text("", encoding="utf-8")
    for rel, text in files.items():
        (tmp_path / rel).write_text(text, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("rel,text", [
    ("features/enc.py", "from mer.pipeline.manifest import Manifest\n"),
    ("pipeline/cache.py", "def f():\n    from mer.train.run import train_one  # lazy, still upward\n"),
    ("train/run.py", "import mer.cli\n"),
    ("train/run.py", "from mer import experiment\n"),
    ("pipeline/x.py", "from mer.config import load_config\n"),
])
def test_a_deliberate_upward_import_is_caught(tmp_path, rel, text):
    root = _tree(tmp_path, {rel: text})
    bad = upward_imports(root)
    assert len(bad) == 1 and rel.split("/")[0] in bad[0]


def test_downward_imports_and_the_version_pass(tmp_path):
    root = _tree(tmp_path, {"train/run.py": "from mer import __version__\nfrom mer.pipeline.cache import CacheError\n",
                            "mer/cli.py": "from mer.train.run import x\nfrom mer.features import base\n",
                            "pipeline/y.py": "from mer.features.base import Encoder\n"})
    assert upward_imports(root) == []


def test_a_deliberate_circle_is_caught(tmp_path):
    root = _tree(tmp_path, {"train/a.py": "from mer.train.b import g\n", "train/b.py": "from mer.train import a\n"})
    assert import_cycles(root) == [["mer.train.a", "mer.train.b", "mer.train.a"]]
    lazy = _tree(tmp_path / "lazy", {"train/a.py": "from mer.train.b import g\n",
                                     "train/b.py": "def f():\n    from mer.train import a\n"})
    assert import_cycles(lazy) == []
