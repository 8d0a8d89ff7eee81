"""Every module says what it exports: an `__all__` of names that exist, none of them private."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "adasr"


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _states_all(tree: ast.Module) -> bool:
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            return True
    return False


@pytest.mark.slow
def test_every_module_states_all():
    missing = [name for name, path in _modules()
               if not _states_all(ast.parse(path.read_text(encoding="utf-8"), str(path)))]
    assert not missing, f"modules without __all__: {missing}"
    assert len(_modules()) > 100  # the walk found the package


def test_every_exported_name_exists_and_none_is_private():
    problems = []
    for name, _path in _modules():
        if name == "adasr.__main__":  # running it starts the CLI
            continue
        module = importlib.import_module(name)
        exported = module.__all__
        if not isinstance(exported, (list, tuple)) or not all(isinstance(n, str) for n in exported):
            problems.append(f"{name}: __all__ is not a list of strings")
            continue
        if len(set(exported)) != len(exported):
            problems.append(f"{name}: __all__ repeats a name")
        for n in exported:
            if n.startswith("_") and not (n.startswith("__") and n.endswith("__")):
                problems.append(f"{name}.{n}: private name exported")
            elif not hasattr(module, n):
                problems.append(f"{name}.{n}: exported but not defined")
    assert not problems, "\n".join(problems)
