"""The package's layering, enforced: every module sits in one layer, imports (module-level and lazy, inside
functions, alike) point only at its own layer or the layers below, and no two modules import each other in a
cycle. The layers, bottom to top, are the data's direction (README.md, "Code map")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "arenapref"

# bottom to top: a module may import its own layer and the layers before it
LAYERS = [
    ("core", ["arenapref._version", "arenapref.errors", "arenapref.files", "arenapref.progress", "arenapref.metrics",
              "arenapref.config"]),
    ("data", ["arenapref.data"]),
    ("text", ["arenapref.text"]),
    ("infer", ["arenapref.infer"]),
    ("train", ["arenapref.train"]),
    ("models", ["arenapref.models"]),
    ("calibrate and ensemble", ["arenapref.calibrate", "arenapref.ensemble", "arenapref.predictions", "arenapref.adapt"]),
    ("evaluation and outputs", ["arenapref.cv", "arenapref.tune", "arenapref.submission", "arenapref.rank",
                                "arenapref.estimate", "arenapref.report", "arenapref.distill", "arenapref.leaderboard"]),
    ("workflows", ["arenapref.workflows"]),
    ("interfaces", ["arenapref.cli", "arenapref.serve"]),
    ("package facade", ["arenapref"]),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def imports_of(path: Path, name: str) -> set[str]:
    """Every arenapref module `path` imports, anywhere in the file (lazy imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "arenapref"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "arenapref":
                continue
            known = modules()
            for alias in node.names:  # `from arenapref.models import hf` imports the submodule
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    return found


def layer_of(name: str) -> int:
    best = None
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if name == prefix or name.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (rank, len(prefix))
    if best is None:
        raise AssertionError(f"{name} is in no layer: add it to LAYERS in tests/test_layering.py and README.md's code map")
    return best[0]


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in imports_of(path, name) if m in mods and m != name} for name, path in mods.items()}


def test_every_module_sits_in_a_layer():
    for name in modules():
        layer_of(name)


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for name, deps in graph().items():
        for dep in deps:
            if layer_of(dep) > layer_of(name):
                upward.append(f"{name} ({LAYERS[layer_of(name)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})")
    assert not upward, "imports against the data's direction:\n" + "\n".join(sorted(upward))


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(g.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(g):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycles():
    # a package's __init__ re-exporting its modules is not a cycle with them: drop package -> own submodule edges
    g = {name: {d for d in deps if not d.startswith(name + ".")} for name, deps in graph().items()}
    cycle = find_cycle(g)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_sees_a_lazy_upward_import_and_a_cycle(tmp_path):
    """The checks above must be able to fail: a lazy import inside a function counts, and a two-module cycle is found."""
    source = "def f():\n    from arenapref.workflows import run_cv\n"
    path = SRC / "data" / "record.py"
    tree_imports = {n.module for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom)}
    assert tree_imports == {"arenapref.workflows"} and layer_of("arenapref.workflows") > layer_of(module_name(path))
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("module", ["arenapref.cli.modeling", "arenapref.cli.evaluation", "arenapref.cli.data"])
def test_cli_modules_hold_no_workflow_logic(module):
    """The CLI parses, calls the library and prints: its modules stay small and import the workflows."""
    path = modules()[module]
    assert len(path.read_text(encoding="utf-8").splitlines()) < 400
