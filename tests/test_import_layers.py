"""The packages form floors and imports only point down (``from`` a file's own floor or a
lower one), with no import cycle between modules, counting imports inside functions too:

    core < datamodules < scoring < methods < benchmark < reports < the CLI

(the entry points, ``benchmark/cli.py``, ``benchmark/__main__.py`` and ``benchmark/golden.py``, sit above
the reports). Checked on the source with ``ast``, so a moved import fails here, not at a
user's first command."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLOORS = ["core", "datamodules", "scoring", "methods", "benchmark", "reports", "cli"]
TOP = {"benchmark.cli", "benchmark.__main__", "benchmark.golden"}  # entry points


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def floor(module: str) -> int:
    if module in TOP:
        return FLOORS.index("cli")
    return FLOORS.index(module.split(".")[0])


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in FLOORS[:-1] for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules imported anywhere in the file (``from pkg import name`` counts as
    ``pkg.name`` when that is a module, else as ``pkg``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_no_module_imports_from_a_higher_floor():
    upward = sorted(f"{a} ({FLOORS[floor(a)]}) imports {b} ({FLOORS[floor(b)]})"
                    for a, targets in import_graph().items() for b in targets if floor(b) > floor(a))
    assert not upward, "imports that climb:\n" + "\n".join(upward)


def test_no_import_cycle_between_modules():
    graph = import_graph()
    # a package's __init__ importing its own submodules is not a cycle with them
    edges = {a: {b for b in targets if not (b.startswith(a + ".") and (ROOT / a.replace(".", "/")).is_dir())}
             for a, targets in graph.items()}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" → ".join(stack[stack.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_the_check_sees_a_climbing_import(tmp_path):
    """The AST check itself finds an upward import (guards the guard)."""
    fake = tmp_path / "datamodules" / "x.py"
    fake.parent.mkdir()
    fake.write_text("def f():\n    from benchmark.config import resolve\n")
    found = imports_of(fake, {"benchmark.config": Path(), "datamodules.x": fake})
    assert found == {"benchmark.config"} and floor("benchmark.config") > floor("datamodules.x")
