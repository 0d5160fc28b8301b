"""The package's layering, checked from the source: no import cycle between subpackages (every
``import`` counts, also those inside functions, which only hide a cycle), ``pluto`` never
imports ``alime``, ``alime`` never imports ``research``; and ``import alime.cli`` loads no
TensorFlow, faiss or numba (``python -X importtime`` in a fresh interpreter)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("alime", "pluto", "research")


def unit_of(module: str) -> str:
    """The layer a module belongs to: ``alime.X`` (a subpackage or a top-level module of
    alime), ``research`` or ``pluto``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "alime" and len(parts) > 1 else parts[0]


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every absolute import of the project's packages in a file: (line, module)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from alime import config`` imports alime.config; ``from alime.x import f`` alime.x.
            subs = [f"{node.module}.{a.name}" for a in node.names]
            found += [(node.lineno, node.module)]
            found += [(node.lineno, s) for s in subs if _is_module(s)]
    return [(line, m) for line, m in found if m.split(".")[0] in PACKAGES]


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, dict[str, list[str]]]:
    """unit -> imported unit -> where ("file:line"), between different units."""
    graph: dict[str, dict[str, list[str]]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            source = unit_of(module.removesuffix(".__init__"))
            for line, name in imports_of(path):
                target = unit_of(name)
                if target != source and target != "alime":
                    where = f"{path.relative_to(ROOT)}:{line}"
                    graph.setdefault(source, {}).setdefault(target, []).append(where)
    return graph


def cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """The strongly connected components with more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_subpackages():
    graph = import_graph()
    found = cycles(graph)
    detail = [
        f"{a} -> {b}: {graph[a][b][:2]}"
        for c in found
        for a in c
        for b in c
        if b in graph.get(a, {})
    ]
    assert not found, detail
    # The check finds a cycle when there is one, also through a function-level import.
    assert cycles({"a": {"b": ["x"]}, "b": {"c": ["y"]}, "c": {"a": ["z"]}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b": ["x"]}, "b": {}}) == []
    assert "alime.cli" in graph and "alime.commands" in graph["alime.cli"]  # static registration


def test_layers_point_one_way():
    graph = import_graph()
    assert not [t for t in graph.get("pluto", {}) if t.startswith("alime")], graph.get("pluto")
    leaks = {s: w["research"] for s, w in graph.items() if s != "research" and "research" in w}
    assert not leaks, leaks


def test_importing_the_cli_loads_no_tensorflow_faiss_or_numba():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import alime.cli"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    # Lines: "import time: self [us] | cumulative | imported package", one per module.
    modules = [
        line.rsplit("|", 1)[1].strip()
        for line in out.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    ]
    assert "alime.cli" in modules and "alime.commands.evaluate" in modules  # the parse works
    heavy = sorted(
        {m for m in modules if m.split(".")[0] in ("tensorflow", "keras", "faiss", "numba")}
    )
    assert not heavy, heavy
