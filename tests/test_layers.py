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
