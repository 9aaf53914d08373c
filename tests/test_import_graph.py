"""The package import graph: delf_core has no cycles, and arrows point down (DESIGN.md rule 1)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# DESIGN.md rule 1: what each package must never import, at any depth of a function.
FORBIDDEN = {
    "delf_core": ("prefect", "apache_beam", "beam_jobs", "flows", "delf_cli"),
    "beam_jobs": ("prefect", "flows", "delf_cli"),
    "flows": ("delf_cli",),
}


def _module_files(package: str, root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of `package` (a package is its __init__)."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(module, line) for every import in the file, function-level and TYPE_CHECKING ones too.

    `from a.b import c` yields both `a.b` and `a.b.c`: c may be a submodule.
    """
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _graph(package: str, root: Path = ROOT) -> dict[str, dict[str, int]]:
    """Module -> {imported module of the same package: line}.

    Importing a.b.c runs a/b/__init__ first, so an import also reaches the packages above
    its target, except those above the importer (already being imported when it runs).
    """
    modules = _module_files(package, root)
    graph: dict[str, dict[str, int]] = {name: {} for name in modules}
    for name, path in modules.items():
        own = set(_ancestors(name)) | {name}
        for target, line in _imports(name, path):
            for reached in [target, *_ancestors(target)]:
                if reached in modules and reached not in own:
                    graph[name].setdefault(reached, line)
    return graph


def _find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle of the graph as [m0, m1, ..., m0], or None (iterative DFS)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path = [start]
        stack = [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return (
        " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:], strict=False))
        + f" -> {cycle[-1]}"
    )


def test_the_cycle_finder_finds_a_cycle_and_names_its_lines() -> None:
    graph = {"a": {"b": 3}, "b": {"c": 7}, "c": {"a": 1}, "d": {"a": 2}}
    cycle = _find_cycle(graph)
    assert cycle == ["a", "b", "c", "a"]
    assert _describe(cycle, graph) == "a (line 3) -> b (line 7) -> c (line 1) -> a"
    assert _find_cycle({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 2}}) is None


def test_a_function_level_import_is_an_edge(tmp_path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.low import f\n")
    (pkg / "sub" / "low.py").write_text("def f():\n    from pkg import high\n")
    (pkg / "high.py").write_text("from .sub import low\n")
    graph = _graph("pkg", tmp_path)
    assert graph["pkg.sub.low"] == {"pkg.high": 2}
    assert graph["pkg.high"] == {"pkg.sub": 1, "pkg.sub.low": 1}
    assert _find_cycle(graph) == ["pkg.high", "pkg.sub", "pkg.sub.low", "pkg.high"]


def _layers(graph: dict[str, dict[str, int]]) -> tuple[dict, dict]:
    """The graph of the package's direct children (delf_core.features, delf_core.storage, ...).

    Returns the graph (child -> {child: line}) and, per arrow, the import behind it.
    """

    def layer(module: str) -> str:
        return ".".join(module.split(".")[:2])

    layers: dict[str, dict[str, int]] = {layer(name): {} for name in graph}
    witness: dict[tuple[str, str], str] = {}
    for name, targets in graph.items():
        for target, line in targets.items():
            a, b = layer(name), layer(target)
            if a != b and b not in layers[a]:
                layers[a][b] = line
                witness[(a, b)] = f"{name}:{line} imports {target}"
    return layers, witness


def test_delf_core_has_no_import_cycle() -> None:
    graph = _graph("delf_core")
    assert len(graph) > 50  # the walk found the package
    cycle = _find_cycle(graph)
    assert cycle is None, "import cycle in delf_core: " + _describe(cycle, graph)


def test_delf_core_subpackages_import_each_other_one_way() -> None:
    """A cycle between two subpackages (features <-> retrieval) is a cycle in waiting."""
    layers, witness = _layers(_graph("delf_core"))
    cycle = _find_cycle(layers)
    assert cycle is None, "import cycle between delf_core's subpackages:\n" + "\n".join(
        witness[(a, b)] for a, b in zip(cycle, cycle[1:], strict=False)
    )


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_arrows_point_down(package: str) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for name, path in _module_files(package).items()
        for target, line in _imports(name, path)
        if target.split(".")[0] in FORBIDDEN[package]
    ]
    assert not bad, f"{package} must not import {', '.join(FORBIDDEN[package])}:\n" + "\n".join(
        sorted(set(bad))
    )


# A cached rerun imports every step's flow and asks whether its outputs stand: with
# TensorFlow and Beam loaded only in task bodies, it takes seconds instead of half a minute.
STEP_FLOWS = (
    "flows.gldv2",
    "flows.download",
    "flows.build_image_dataset",
    "flows.train",
    "flows.check_model",
    "flows.export",
    "flows.extract_features",
    "flows.extract_dataset",
    "flows.match_images",
    "flows.perform_retrieval",
    "flows.retrieval_submission",
)


def test_step_flows_load_tensorflow_and_beam_only_when_a_task_runs() -> None:
    probe = (
        "import importlib, json, sys\n"
        f"for name in {STEP_FLOWS!r}: importlib.import_module(name)\n"
        "print(json.dumps([m for m in ('tensorflow', 'keras', 'apache_beam') if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
