"""The study package's layout (issue 18, item 4): its layers import only downward, no two of its
modules import each other (even lazily), and Ray and Optuna are imported only inside it.

Imports are read with ``ast`` from the source of every module, those inside functions included, so
a lazy import that would close a circle or reach upward is caught as well as a top-level one.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mmc_sweep.study import LAYERS

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mmc_sweep"
STUDY = "mmc_sweep.study"
FRAMEWORKS = ("ray", "optuna")
# The only imports of the study package from outside it: (importer, or a package prefix ending in
# ".", imported module, must the import sit inside a function). The CLI registers the study's
# subcommands; the analysis asks Optuna for parameter importances only when asked for them, so
# reading results never loads Optuna.
INTO_STUDY = (
    ("mmc_sweep.cli", "mmc_sweep.study.cli", True),
    ("mmc_sweep.analysis.", "mmc_sweep.study.search.importance", True),
)
# Layers that the Ray-free commands and checks load (preflight, compact, status's reads): Ray and
# Optuna only inside a function there (results.versions names their versions when a trial is written)
RAY_FREE = ("faults", "storage", "definition")


def _name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import statement of ``path``."""
    module = _name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from the package, `level - 1` packages up
                    anchor = package.split(".")[:len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:  # `from pkg import module` imports pkg.module
                    sub = f"{base}.{alias.name}"
                    found.append((sub if _is_module(sub) else base, child.lineno, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
STUDY_MODULES = {n: p for n, p in MODULES.items() if n.startswith(STUDY + ".")}
IMPORTS = {name: _imports(path) for name, path in MODULES.items()}


def _layer(module: str) -> str | None:
    """The layer of a study module: its folder below ``study/``, or its own name (``cli``, ``faults``)."""
    return module.removeprefix(STUDY + ".").split(".")[0] if module.startswith(STUDY + ".") else None


def _is(module: str, top: str) -> bool:
    return module == top or module.startswith(top + ".")


def test_the_layers_are_declared_once_and_hold_every_study_module():
    assert len(set(LAYERS)) == len(LAYERS)
    undeclared = sorted(n for n in STUDY_MODULES if _layer(n) not in LAYERS)
    assert not undeclared, f"modules outside the layers of mmc_sweep.study.LAYERS {LAYERS}: {undeclared}"
    assert set(LAYERS) == {_layer(n) for n in STUDY_MODULES}, "a declared layer holds no module"


def test_study_modules_import_only_their_own_or_lower_layers():
    upward = [f"{MODULES[src].relative_to(REPO)}:{line}: {_layer(src)} imports {dst} ({_layer(dst)})"
              for src in STUDY_MODULES for dst, line, _ in IMPORTS[src]
              if _is(dst, STUDY) and (_layer(dst) not in LAYERS or LAYERS.index(_layer(dst)) > LAYERS.index(_layer(src)))]
    assert not upward, f"layers, bottom first: {LAYERS}\n" + "\n".join(upward)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order, the first repeated last), or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_no_import_cycle_among_study_modules_even_through_lazy_imports():
    graph = {src: {dst for dst, _, _ in IMPORTS[src] if dst in STUDY_MODULES and dst != src} for src in STUDY_MODULES}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():  # the assertion above is only as good as this
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_ray_and_optuna_are_imported_only_inside_the_study_package():
    outside = [f"{MODULES[src].relative_to(REPO)}:{line}: {dst}" for src in MODULES if not _is(src, STUDY)
               for dst, line, _ in IMPORTS[src] if any(_is(dst, f) for f in FRAMEWORKS)]
    assert not outside, "\n".join(outside)


def test_only_the_cli_and_the_analysis_importances_reach_into_the_study_package():
    def allowed(src: str, dst: str, lazy: bool) -> bool:
        return any((src == who or (who.endswith(".") and src.startswith(who))) and dst == what and (lazy or not must_be_lazy)
                   for who, what, must_be_lazy in INTO_STUDY)

    found = [(src, dst, line, lazy) for src in MODULES if not _is(src, STUDY)
             for dst, line, lazy in IMPORTS[src] if _is(dst, STUDY)]
    wrong = [f"{MODULES[src].relative_to(REPO)}:{line}: {dst}{'' if lazy else ' (at module level)'}"
             for src, dst, line, lazy in found if not allowed(src, dst, lazy)]
    assert not wrong, "\n".join(wrong)
    assert {dst for _, dst, _, _ in found} == {what for _, what, _ in INTO_STUDY}, "an allowed import is gone: update INTO_STUDY"


@pytest.mark.parametrize("layer", RAY_FREE)
def test_ray_free_layers_load_ray_and_optuna_only_inside_functions(layer):
    eager = [f"{MODULES[src].relative_to(REPO)}:{line}: {dst}" for src in STUDY_MODULES if _layer(src) == layer
             for dst, line, lazy in IMPORTS[src] if not lazy and any(_is(dst, f) for f in FRAMEWORKS)]
    assert not eager, "\n".join(eager)
