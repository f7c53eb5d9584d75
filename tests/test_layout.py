"""The package's layout: the algorithm at the top of ``packnet/``, the book's apparatus in sub-packages above.

* **core** — the modules directly in ``packnet/`` (the algorithm): they import only each other, never a
  sub-package, so the algorithm can be read, tested and reused without the benchmarks, the book or the course;
* ``packnet.bench`` builds on the core; ``packnet.book`` and ``packnet.course`` on the core and ``bench``;
* no sub-package uses a private (``_name``) of the core: what they need is public, so the core can change its
  insides without breaking them;
* the two command-line hand-offs in the core (``python -m packnet``, ``python -m packnet.coursework``) are the
  only top-level modules allowed to name a sub-package, and they do nothing else.

Imports are read with :mod:`ast` (every ``import`` anywhere in a module, including inside functions), so the
test needs nothing installed beyond the sources.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "packnet"
SUBPACKAGES = ("bench", "book", "course")
HANDOFFS = {"__main__": "packnet.bench.cli", "coursework": "packnet.course.coursework"}
"""Top-level modules that only hand the command line over to a sub-package's ``main``."""
MAY_IMPORT = {"bench": set(), "book": {"bench"}, "course": {"bench"}}
"""Which other sub-packages each sub-package may import (all may import the core)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def core_modules() -> list[Path]:
    return sorted(p for p in PACKAGE.glob("*.py") if p.stem not in HANDOFFS)


def subpackage_modules(sub: str) -> list[Path]:
    return sorted((PACKAGE / sub).rglob("*.py"))


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """``(absolute module, names imported from it, line)`` for every import statement in ``path``."""
    name = module_name(path)
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, [], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names], node.lineno))
    return found


def subpackage_of(module: str) -> str | None:
    """``"bench"`` for ``packnet.bench.data`` (and for ``from packnet import bench``), else ``None``."""
    parts = module.split(".")
    if parts[0] == "packnet" and len(parts) > 1 and parts[1] in SUBPACKAGES:
        return parts[1]
    return None


def test_the_layout_has_the_algorithm_on_top_and_three_subpackages():
    core = {p.stem for p in core_modules()}
    assert {"packnet", "lifecycle", "roles", "masks", "pruning", "freezing", "heads", "capacity", "training",
            "distributed", "checkpoint"} <= core
    for sub in SUBPACKAGES:
        assert (PACKAGE / sub / "__init__.py").is_file(), f"packnet/{sub}/ is not a package"


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_the_core_never_imports_a_subpackage(path):
    wrong = [f"line {line}: {module}" + (f" ({', '.join(names)})" if names else "")
             for module, names, line in imports(path)
             if subpackage_of(module) or (module == "packnet" and set(names) & set(SUBPACKAGES))]
    assert not wrong, (f"{path.name} is part of the algorithm and must not depend on the book's apparatus "
                       f"(packnet.bench / .book / .course): {wrong}")


@pytest.mark.parametrize("stem", sorted(HANDOFFS))
def test_the_command_line_hand_offs_only_hand_off(stem):
    path = PACKAGE / f"{stem}.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported = {module for module, _, _ in imports(path)}
    assert imported <= {"sys", HANDOFFS[stem]}, f"{path.name} imports {sorted(imported)}"
    for node in tree.body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        main_guard = isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
        assert docstring or main_guard or isinstance(node, (ast.Import, ast.ImportFrom)), (
            f"{path.name} should only hand off to {HANDOFFS[stem]}.main, but has: {ast.unparse(node)[:80]}")


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_subpackages_import_only_the_core_and_the_layers_below(sub):
    wrong = []
    for path in subpackage_modules(sub):
        for module, _, line in imports(path):
            other = subpackage_of(module)
            if other is not None and other != sub and other not in MAY_IMPORT[sub]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} imports {module}")
    allowed = sorted(MAY_IMPORT[sub]) or "nothing else"
    assert not wrong, f"packnet.{sub} may import the core and {allowed}: {wrong}"


def core_aliases(tree: ast.AST, core: set[str]) -> set[str]:
    """Local names bound to a core module (``import packnet.masks as m``, ``from packnet import masks``)."""
    aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            aliases |= {a.asname for a in node.names if a.asname and a.name in core}
        elif isinstance(node, ast.ImportFrom) and node.module == "packnet" and not node.level:
            aliases |= {a.asname or a.name for a in node.names if f"packnet.{a.name}" in core}
    return aliases


@pytest.mark.parametrize("sub", SUBPACKAGES)
def test_subpackages_use_no_private_name_of_the_core(sub):
    core = {f"packnet.{p.stem}" for p in core_modules()} | {"packnet"}
    wrong = []
    for path in subpackage_modules(sub):
        where = path.relative_to(PACKAGE)
        for module, names, line in imports(path):
            if module in core:
                wrong += [f"{where}:{line} imports {module}.{n}" for n in names
                          if n.startswith("_") and n != "__version__"]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = core_aliases(tree, core)
        wrong += [f"{where}:{node.lineno} uses {node.value.id}.{node.attr}" for node in ast.walk(tree)
                  if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                  and node.value.id in aliases and node.attr.startswith("_")]
    assert not wrong, f"make these public in the core (or keep them in the sub-package): {wrong}"


def test_the_import_reader_resolves_relative_imports():
    """A check of the test itself: relative imports inside packnet/course/exercises/ resolve to full names."""
    path = PACKAGE / "course" / "exercises" / "checking.py"
    assert module_name(path) == "packnet.course.exercises.checking"
    init = PACKAGE / "course" / "exercises" / "__init__.py"
    found = {(module, tuple(names)) for module, names, _ in imports(init)}
    assert ("packnet.course.exercises", ("checking",)) in found  # from . import checking
    assert ("packnet.course.exercises.checking", ("EXERCISES",)) in found  # from .checking import EXERCISES
