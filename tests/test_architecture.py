"""The layout's rules, checked by parsing the source (docs/architecture.md explains them).

1. Inside ``sqdf_bbo``, a module imports only from its own layer or the layers below it
   (``LAYERS``, lowest first), and the import graph has no cycle.
2. The library imports neither ``oracles`` nor ``benchmarks``; ``oracles`` does not import
   ``benchmarks`` (top level: sqdf_bbo < oracles < benchmarks).
3. Imports sit at the top of a module (``sqdf_bbo``, ``oracles`` and ``benchmarks`` alike); one
   inside a function is allowed only for a third-party package (neither first-party nor the
   standard library) and says why on its line or the line above (``optional``: an extra that
   may be missing; ``lazy``: slow to import and needed by few callers; ``POSIX``). Figures get
   matplotlib through ``benchmarks.plotting.pyplot``, the one place that imports it.
4. Nothing in ``sqdf_bbo`` imports by string (``importlib.import_module``, ``__import__``)
   except the facade ``sqdf_bbo/__init__.py``, which re-exports public names lazily.
5. No source file is longer than 500 lines unless it says why near its top (a line starting
   with ``Length:``).
6. No module imports a package it belongs to (its ``__init__``): a hidden cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sqdf_bbo"

#: The library's layers, lowest first. A module may import its own layer and those below.
LAYERS: list[tuple[str, ...]] = [
    (  # utilities
        *("deprecation", "registry", "config", "migration", "progress", "checksums"),
        *("distributed",),
        *("text", "constraints"),
    ),
    ("data", "sequences"),  # bundled data, benchmark measures, sequence designs
    ("classifier",),  # the digits classifier (reward and features of the digits tasks)
    ("diffusion",),  # the pretrained prior: networks, io, consistency model, shipped priors
    ("surrogates",),  # differentiable reward models fitted to observations
    ("finetuning",),  # trainers that tilt a sampler towards a reward (SQDF, SEIKO)
    ("study",),  # crash-safe persistence of points and state
    ("optimizers",),  # ask/tell: the base, the registry and every optimizer
    ("cli",),  # the sqdf-bbo command
]
TOP_LEVEL_ORDER = ["sqdf_bbo", "oracles", "benchmarks"]
MAX_LINES = 500
WHY_WORDS = ("optional", "lazy", "POSIX")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(folder: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(folder.rglob("*.py")):
        yield module_name(path), path


def imports(path: Path) -> Iterator[tuple[str, ast.stmt, bool]]:
    """(absolute module imported, the statement, whether it is inside a function)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[str, ast.stmt, bool]]:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child, in_function
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                for alias in child.names:  # `from pkg import submodule` is an edge to it
                    sub = f"{target}.{alias.name}"
                    is_sub = (ROOT / (sub.replace(".", "/") + ".py")).is_file() or (
                        ROOT / sub.replace(".", "/") / "__init__.py"
                    ).is_file()
                    yield (sub if is_sub else target), child, in_function
            else:
                yield from visit(child, inner)

    yield from visit(tree, False)


def layer_of(module: str) -> int:
    parts = module.split(".")
    if parts == ["sqdf_bbo"]:
        return len(LAYERS)  # the facade: lazy re-exports of everything
    for rank, names in enumerate(LAYERS):
        if parts[1] in names:
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {Path(__file__).name}")


def first_party_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for top in TOP_LEVEL_ORDER:
        for name, path in modules(ROOT / top):
            graph[name] = {m for m, _, _ in imports(path) if m.split(".")[0] in TOP_LEVEL_ORDER}
    return graph


def test_every_library_module_is_in_a_layer() -> None:
    for name, _ in modules(PACKAGE):
        layer_of(name)


def test_no_library_module_imports_a_higher_layer() -> None:
    upward = []
    for name, path in modules(PACKAGE):
        for target, stmt, _ in imports(path):
            if target.startswith("sqdf_bbo.") and layer_of(target) > layer_of(name):
                upward.append(
                    f"{path.relative_to(ROOT)}:{stmt.lineno}: {name} (layer {layer_of(name)}) "
                    f"imports {target} (layer {layer_of(target)})"
                )
    assert not upward, "\n".join(upward)


def test_top_level_packages_import_only_downward() -> None:
    upward = []
    for rank, top in enumerate(TOP_LEVEL_ORDER):
        higher = set(TOP_LEVEL_ORDER[rank + 1 :])
        for _, path in modules(ROOT / top):
            for target, stmt, _ in imports(path):
                if target.split(".")[0] in higher:
                    upward.append(f"{path.relative_to(ROOT)}:{stmt.lineno}: imports {target}")
    assert not upward, "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt == node or nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_cycle() -> None:
    graph = first_party_graph()
    # A package's __init__ gathering its own modules is not a dependency of those modules.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(t + ".")}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def own_package_imports(graph: dict[str, set[str]]) -> list[str]:
    """Modules that import a package they belong to (its ``__init__``), e.g.
    ``sqdf_bbo/optimizers/sqdf.py`` doing ``from sqdf_bbo.optimizers import SEIKO``: the
    ``__init__`` imports its modules, so the two form a cycle the cycle check above cannot
    see (it leaves out a package gathering its own modules). ``__main__`` is exempt (nothing
    imports it)."""
    return [
        f"{name} imports its own package {target}"
        for name, targets in sorted(graph.items())
        for target in sorted(targets)
        if name.startswith(target + ".") and not name.endswith(".__main__")
    ]


def test_no_module_imports_its_own_package() -> None:
    bad = own_package_imports(first_party_graph())
    assert not bad, "\n".join(bad)


def test_the_own_package_check_finds_one() -> None:
    graph = {"p": {"p.a", "p.b"}, "p.a": {"p"}, "p.b": {"p.a"}, "p.__main__": {"p"}}
    assert own_package_imports(graph) == ["p.a imports its own package p"]


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


@pytest.mark.parametrize("top", TOP_LEVEL_ORDER)
def test_imports_inside_functions_are_third_party_and_explained(top: str) -> None:
    bad = []
    for _, path in modules(ROOT / top):
        lines = path.read_text(encoding="utf-8").splitlines()
        for target, stmt, in_function in imports(path):
            if not in_function:
                continue
            here = lines[stmt.lineno - 1] + " " + lines[stmt.lineno - 2]
            if target.split(".")[0] in TOP_LEVEL_ORDER:
                bad.append(f"{path.relative_to(ROOT)}:{stmt.lineno}: first-party {target}")
            elif target.split(".")[0] in sys.stdlib_module_names:
                bad.append(f"{path.relative_to(ROOT)}:{stmt.lineno}: standard library {target}")
            elif not any(word in here for word in WHY_WORDS):
                bad.append(f"{path.relative_to(ROOT)}:{stmt.lineno}: {target} without a reason")
    assert not bad, "\n".join(bad)


def test_no_import_by_string_below_the_facade() -> None:
    found = []
    for name, path in modules(PACKAGE):
        if name == "sqdf_bbo":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if called in ("import_module", "__import__"):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {called}")
    assert not found, "\n".join(found)


@pytest.mark.parametrize("top", [*TOP_LEVEL_ORDER, "tests", "scripts", "examples"])
def test_long_files_say_why(top: str) -> None:
    long = []
    for _, path in modules(ROOT / top):
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) > MAX_LINES and not any(ln.startswith("Length:") for ln in lines[:40]):
            long.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
    assert not long, "\n".join(long)
