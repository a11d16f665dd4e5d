"""The shape of ``fred_jax``: its import graph has no cycle, lower layers never import upper
ones, configs load without JAX, and no module outgrows a reviewable size.

The graph is read from the source with ``ast`` (nothing is imported): an edge ``a -> b`` for
every ``import fred_jax.b`` / ``from fred_jax import b`` / ``from fred_jax.b import x`` /
``importlib.import_module("fred_jax.b")`` in ``a``, at module level or inside a function (a
deferred import is still a dependency). A module's ``if __name__ == "__main__":`` block is left
out: it runs only when the file is the program, never when the module is imported.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "fred_jax")

MAX_LINES = 550
"""Largest module, in lines: beyond it a module tends to mix concerns."""

LEAVES = ("checks", "conv", "datasets", "transforms")
"""Modules that import no other ``fred_jax`` module (those that exist)."""

ENTRY_POINTS = ("main", "cli", "train", "sweep", "experts", "evaluate", "visualize",
                "configuration")
"""Modules above the objectives (runs, protocols, front ends, the configuration): objectives
import none of them."""


def modules(package: str = PACKAGE) -> dict[str, str]:
    """``{dotted name relative to fred_jax: path}`` of every module (``__init__`` = package)."""
    out = {}
    for folder, _, files in os.walk(package):
        for name in files:
            if not name.endswith(".py"):
                continue
            parts = os.path.relpath(os.path.join(folder, name), package)[:-3].split(os.sep)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts) or "__init__"] = os.path.join(folder, name)
    return out


def _package(name: str, path: str) -> list[str]:
    """The package (relative name parts) that a relative import in module ``name`` starts at."""
    parts = name.split(".") if name != "__init__" else []
    return parts if path.endswith("__init__.py") else parts[:-1]


def _is_main_block(node: ast.AST) -> bool:
    """``if __name__ == "__main__":``."""
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and test.left.id == "__name__" and len(test.comparators) == 1
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


def _nodes(tree: ast.AST):
    """Every node of ``tree`` outside ``if __name__ == "__main__":`` blocks."""
    for child in ast.iter_child_nodes(tree):
        if not _is_main_block(child):
            yield child
            yield from _nodes(child)


def _targets(node: ast.AST, name: str, path: str, known: set[str]) -> set[str]:
    """The fred_jax modules (relative names) that an import statement in ``name`` loads."""
    if isinstance(node, ast.Import):
        full = [alias.name for alias in node.names]
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
          and node.func.attr == "import_module" and node.args
          and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
        full = [node.args[0].value]
    elif isinstance(node, ast.ImportFrom):
        if node.level:  # relative: resolve against the importing module's package
            base = _package(name, path)[: len(_package(name, path)) - node.level + 1]
            source = ".".join(["fred_jax", *base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        # `from a import b`: the submodule a.b if there is one, else the module a
        full = [f"{source}.{alias.name}" if _relative(f"{source}.{alias.name}") in known
                else source for alias in node.names]
    else:
        return set()
    return {_relative(f) for f in full} & known


def _relative(name: str) -> str | None:
    """``fred_jax.a.b`` -> ``a.b``; None outside fred_jax."""
    return name[len("fred_jax."):] if name.startswith("fred_jax.") else None


def import_graph(package: str = PACKAGE) -> dict[str, set[str]]:
    """``{module: modules it imports}`` over ``fred_jax`` (relative names, self-edges dropped)."""
    paths = modules(package)
    known = set(paths)
    graph = {}
    for name, path in paths.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        graph[name] = {t for node in _nodes(tree) for t in _targets(node, name, path, known)
                       if t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_find_cycle_reports_the_path():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_deferred_and_dynamic_imports_but_not_script_blocks(tmp_path):
    package = tmp_path / "fred_jax"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__", "a", "b", "c", "d", "sub/__init__", "sub/e"):
        (package / f"{name}.py").write_text("")
    (package / "a.py").write_text(
        "import importlib\nfrom fred_jax import b\n"
        "def f():\n    from fred_jax.sub import e\n    importlib.import_module('fred_jax.c')\n"
        "if __name__ == '__main__':\n    from fred_jax import d\n")
    (package / "sub" / "e.py").write_text("from . import x\nfrom ..b import y\n")
    graph = import_graph(str(package))
    assert graph["a"] == {"b", "sub.e", "c"} and graph["sub.e"] == {"b", "sub"}


def test_layers():
    """Leaves import no fred_jax module; objectives import no entry point (no upward edge)."""
    graph = import_graph()
    for leaf in LEAVES:
        assert not graph.get(leaf), f"{leaf} must import no fred_jax module: {graph[leaf]}"
    upward = {(a, b) for a, targets in graph.items() if a.startswith("objectives")
              for b in targets if b in ENTRY_POINTS}
    assert not upward, f"objectives import modules above them: {sorted(upward)}"
    upward = {a for a, targets in graph.items() if "train" in targets and a not in
              ("main", "sweep")}
    assert not upward, f"only main and sweep drive train: {sorted(upward)}"


def test_module_sizes():
    sizes = {}
    for name, path in modules().items():
        with open(path) as f:
            sizes[name] = sum(1 for _ in f)
    largest = max(sizes, key=sizes.get)
    assert sizes[largest] <= MAX_LINES, (
        f"{largest} has {sizes[largest]} lines (> {MAX_LINES}); sizes: "
        + ", ".join(f"{n} {s}" for n, s in sorted(sizes.items(), key=lambda x: -x[1])))


def test_configs_load_without_jax():
    """Reading a config (DM and TM) imports no JAX: launchers and sweeps stay light."""
    code = ("import sys; from fred_jax import configuration; "
            "[configuration.from_file(p) for p in sys.argv[1:]]; "
            "print(sorted(m for m in ('jax', 'flax', 'optax') if m in sys.modules))")
    paths = [os.path.join(ROOT, "configs", name) for name in ("cifar10_ipc1.py",
                                                               "cifar10_dm_ipc2.py")]
    proc = subprocess.run([sys.executable, "-c", code, *paths], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
