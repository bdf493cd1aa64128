"""The package's imports follow the data: a module never imports from a layer above its own.

Layers, lowest first: common < traces < codecs < envs < agents < scenarios < cli (DESIGN.md).
Imports inside functions count too: a function that reaches upward is still a cycle waiting to happen.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bwgym"
LAYERS = ("common", "traces", "codecs", "envs", "agents", "scenarios", "cli")
#: The package root only registers envs and sets MUJOCO_GL: it sits at the envs layer.
ROOT_LAYER = "envs"


def _layer_of_module(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] != "bwgym":
        return None
    if len(parts) == 1:
        return ROOT_LAYER
    return parts[1] if parts[1] in LAYERS else None


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    module = "bwgym." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = module.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            if name == "bwgym":  # `from bwgym import envs` imports the sub-package
                out += [(node.lineno, f"bwgym.{alias.name}") for alias in node.names]
    return out


def _violations() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        own = ROOT_LAYER if rel.parts == ("__init__.py",) else rel.parts[0].removesuffix(".py")
        if own not in LAYERS:
            continue
        for lineno, name in _imports(path):
            layer = _layer_of_module(name)
            if layer is not None and LAYERS.index(layer) > LAYERS.index(own):
                found.append(f"bwgym/{rel}:{lineno} ({own}) imports {name} ({layer} is above {own})")
    return found


def test_every_module_belongs_to_a_layer() -> None:
    stray = [p.name for p in PACKAGE.iterdir() if p.suffix == ".py" and p.stem not in (*LAYERS, "__init__")]
    stray += [
        p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name not in LAYERS and p.name != "__pycache__"
    ]
    assert not stray, f"modules outside the layers {LAYERS}: {stray}"


def test_imports_never_go_up_a_layer() -> None:
    violations = _violations()
    assert not violations, "imports against the layer order:\n" + "\n".join(violations)


@pytest.mark.parametrize(
    ("source", "message"),
    [("from bwgym.scenarios.runner import run_scenario\n", "scenarios is above traces")],
)
def test_the_walker_sees_imports_inside_functions(tmp_path: Path, source: str, message: str) -> None:
    module = PACKAGE / "traces" / "_layer_probe.py"
    module.write_text("def f():\n    " + source)
    try:
        assert any(message in v for v in _violations())
    finally:
        module.unlink()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports at run time (inside functions too, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    own = _module_name(path)
    package = own if path.name == "__init__.py" else own.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = (
                ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            )
            module = ".".join(p for p in (base, node.module or "") if p)
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != own:
                found.add(name)
    return found


def _find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of nodes that reach one another (each a sorted list), in order of their first node."""
    reach = {m: _reach(graph, m) for m in graph}
    cycles, seen = [], set()
    for start in sorted(graph):
        if start in reach[start] and start not in seen:
            cycle = sorted(m for m in reach[start] if start in reach[m])
            seen.update(cycle)
            cycles.append(cycle)
    return cycles


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    stack, reached = list(graph[start]), set()
    while stack:
        node = stack.pop()
        if node not in reached:
            reached.add(node)
            stack.extend(graph.get(node, ()))
    return reached


def _cycles_inside_layers() -> list[list[str]]:
    paths = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    modules = set(paths)

    def layer(name: str) -> str:
        return name.split(".")[1] if "." in name else ""

    def related(a: str, b: str) -> bool:  # a package and its own modules import each other by design
        return a.startswith(b + ".") or b.startswith(a + ".")

    return _find_cycles(
        {
            m: {d for d in _runtime_imports(p, modules) if layer(d) == layer(m) and not related(m, d)}
            for m, p in paths.items()
        }
    )


def test_no_import_cycle_inside_a_layer() -> None:
    cycles = _cycles_inside_layers()
    assert not cycles, (
        "modules of one layer that import each other (through others or in functions):\n"
        + "\n".join(" <-> ".join(c) for c in cycles)
    )


def test_the_cycle_check_sees_imports_inside_functions_and_indirect_cycles() -> None:
    assert _find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _find_cycles({"a": {"b"}, "b": set()}) == []
    probe = PACKAGE / "traces" / "_cycle_probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from bwgym.traces import trace\n"
        "def f():\n    from bwgym.traces import link\n"
    )
    try:
        modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
        assert _runtime_imports(probe, modules) == {"bwgym.traces", "bwgym.traces.link"}
    finally:
        probe.unlink()
