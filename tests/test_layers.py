"""Layers only point down: a static read of adasr's import statements, and fresh interpreters.

A *unit* is a subpackage of adasr (`adasr.nn`, `adasr.runtime`, ...) or a top-level module
(`adasr.space`, `adasr.package`, ...). Every import of one unit by another, at module level or
inside a function (a lazy import is still a dependency), must point to a unit in the same or a
lower layer of LAYERS, and the units must not import each other in a cycle. Inside a unit the
same holds module by module: no two modules import each other, lazily or not (an import inside a
function only hides a cycle until the function runs). The README's "Architecture" section lists
the same layers.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "adasr"

# Bottom to top; a unit may import units of its own layer (without a cycle) and of lower ones.
LAYERS = [
    # leaf helpers, no torch
    ("errors", "safepath", "_atomic", "_jsonfile", "_options", "paths", "cpuload", "threads", "_digest"),
    ("spec",),  # architecture spec: block grammar, op shapes, analytic cost (no torch)
    ("space",),  # SubnetConfig, SearchSpace (no torch)
    ("family",),  # Level, Family, Pareto: the data model search, package and runtime share (no torch)
    # I/O, tensors, timing, datasets, resumable video chunks
    ("images", "video", "frames", "measures", "timing", "data", "metrics", "evaluation", "resume"),
    ("nn", "modelfile", "upscale"),  # networks, the model registry, model files, tiled SR
    ("train",),
    ("search",),
    ("package",),
    ("runtime",),
    ("stream", "estimate", "build", "export"),  # build: search -> package -> profile; export: ONNX levels
    ("serve",),  # live AMS: HTTP server and client, per-channel trainers, scheduler
    ("reuse",),  # RECL model reuse: expert zoo, gating network, safety checker, retraining scheduler
    ("mimo",),  # massive-MIMO detection: a second task, on the leaf helpers only
    ("upscale_run",),  # the upscale policy: what `adasr upscale` and `adasr.upscale_video` run
    ("bench",),  # benches (bench estimate times upscale_run's announced estimate)
    ("api", "_cli", "__main__"),  # the public entry points and the CLI
]

# Upward imports still to be removed, each with why it exists; the goal is that this list stays
# empty (a listed edge that no longer exists fails the test, so it must be deleted here).
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "adasr" and len(parts) > 1 else None


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(node: ast.AST):
    """Import statements anywhere in `node`, except under `if TYPE_CHECKING:` (annotations only)."""
    if isinstance(node, ast.If) and _type_checking(node.test):
        for child in node.orelse:
            yield from _imports(child)
        return
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    for child in ast.iter_child_nodes(node):
        yield from _imports(child)


def _module_imports():
    """(module, imported name) for every import of every module of adasr (lazy ones included)."""
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the package, `level - 1` steps up
                    parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parent + ([node.module] if node.module else []))
                targets = [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                yield module, target


def import_edges() -> dict[tuple[str, str], list[str]]:
    """(unit, imported unit) -> the imports that make the edge ("module -> target")."""
    edges: dict[tuple[str, str], list[str]] = {}
    for module, target in _module_imports():
        a, b = _unit(module), _unit(target)
        if a is not None and b is not None and a != b:
            edges.setdefault((a, b), []).append(f"{module} -> {target}")
    return edges


def module_edges() -> set[tuple[str, str]]:
    """(module, imported module) of adasr; `from adasr.x import name` points at adasr.x (or at
    adasr.x.name where that is a module)."""
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    edges = set()
    for module, target in _module_imports():
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != module:
            edges.add((module, target))
    return edges


def _units() -> set[str]:
    return {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")} - {None}


def _layer() -> dict[str, int]:
    return {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def _cycle(edges) -> list[str] | None:
    """One cycle of the directed graph `edges` (as a list of units), or None."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(graph.get(v, ())):
            if state.get(w) == 1:
                return path[path.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = 2
        path.pop()
        return None

    for v in sorted(graph):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_every_unit_has_a_layer():
    placed = [u for layer in LAYERS for u in layer]
    assert len(placed) == len(set(placed))
    assert _units() == set(placed), "place a new subpackage or module in LAYERS (and the README)"


def test_imports_point_down():
    layer = _layer()
    upward = {e: why for e, why in import_edges().items() if layer[e[0]] < layer[e[1]]}
    new = {f"{a} -> {b}": why[:3] for (a, b), why in upward.items() if (a, b) not in ALLOWED_UPWARD}
    assert not new, f"imports that point up a layer: {new}"
    stale = sorted(set(ALLOWED_UPWARD) - set(upward))
    assert not stale, f"these edges are gone: delete them from ALLOWED_UPWARD: {stale}"


def test_no_cycle_among_units_but_the_allowed_edges():
    edges = [e for e in import_edges() if e not in ALLOWED_UPWARD]
    cycle = _cycle(edges)
    assert cycle is None, f"import cycle among adasr's units: {' -> '.join(cycle)}"


def test_no_cycle_among_modules_lazy_imports_included():
    cycle = _cycle(module_edges())
    assert cycle is None, f"import cycle among adasr's modules: {' -> '.join(cycle)}"


def test_cycle_finder_finds_a_cycle():
    assert _cycle([("a", "b"), ("b", "c"), ("c", "a")]) == ["a", "b", "c", "a"]
    assert _cycle([("a", "b"), ("b", "c"), ("a", "c")]) is None


def _fresh(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


@pytest.mark.integration
def test_every_module_imports_in_a_fresh_interpreter():
    modules = sorted(_module_name(p) for p in PACKAGE.rglob("*.py") if p.name != "__main__.py")
    code = f"import importlib\nfor m in {modules!r}:\n    importlib.import_module(m)\n"
    done = _fresh(code)
    assert done.returncode == 0, done.stderr[-2000:]


def test_space_and_the_package_root_do_not_load_torch():
    done = _fresh("import sys, adasr, adasr.space, adasr.spec, adasr.family\n"
                  "s = adasr.space.SearchSpace.named('base-x2')\n"
                  "print(s.smallest().id, s.largest().id, adasr.spec.subnet_cost(s.largest())[1])\n"
                  "assert 'torch' not in sys.modules, 'torch was imported'\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "x2-d1-w8-e1-k1-s1-b:m.c1-up:tc x2-d6-w32-e2-k3-s1-b:c,c,c,c,c,c-up:bic" in done.stdout
