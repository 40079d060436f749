"""Dependencies point one way: no module of ``src/prh`` imports a module of a higher layer.

The layers (docs: shared design notes, README "Design rules"), lowest first. Imports inside functions count too:
a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "prh"

#: top-level module or package of prh -> layer number (imports may only go to the same or a lower number)
LAYERS = {
    # cross-cutting, lowest
    "errors": 0,
    "_validation": 0,
    "atomic": 0,
    "arrays": 0,
    "memory": 0,
    # where the offline zoo's packages are (data and models read from it)
    "zoo": 1,
    "data": 2,
    "models": 3,
    "features": 4,
    "metrics": 5,
    "_prepare": 5,
    "_sweep": 5,
    "stats": 6,
    "align": 7,
    # measured competence (transfer probes, downstream scores): uses align's loading and results; report draws it
    "competence": 7,
    "report": 8,
    "world": 9,
    "experiments": 9,
    "distributed": 10,
    "commands": 11,
    "cli": 11,
    "__main__": 11,
}
#: the package facade ``prh/__init__.py`` may re-export library layers, never the CLI
FACADE_LAYER = 10


def _module_of(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = rel.parts
    return "__init__" if parts == ("__init__",) else parts[0]


def _imported_prh_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(SRC.parent).with_suffix("").parts[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "prh" and len(parts) > 1:
                    out.add(parts[1])
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                base = list(package[: len(package) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
            else:
                parts = (node.module or "").split(".")
            if parts[0] != "prh":
                continue
            if len(parts) > 1:
                out.add(parts[1])
            else:  # from prh import x, y
                out.update(alias.name for alias in node.names)
    return out


def _files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_module_has_a_layer():
    unknown = {_module_of(p) for p in _files()} - set(LAYERS) - {"__init__"}
    assert not unknown, f"add these modules of src/prh to LAYERS in {__file__}: {sorted(unknown)}"


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_upward_import(path: Path):
    here = _module_of(path)
    level = FACADE_LAYER if here == "__init__" else LAYERS[here]
    upward = sorted(
        f"{target} (layer {LAYERS[target]})"
        for target in _imported_prh_modules(path)
        if target in LAYERS and LAYERS[target] > level
    )
    assert not upward, f"{path.relative_to(SRC)} (layer {here}={level}) imports a higher layer: {upward}"


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    pkg = SRC / "metrics"
    probe = pkg / "_layering_probe.py"
    try:
        probe.write_text("def f():\n    from prh.commands import x\n    from ..report import y\n")
        assert _imported_prh_modules(probe) == {"commands", "report"}
    finally:
        probe.unlink()
