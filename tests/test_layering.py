"""Dependencies point one way: no module of ``src/prh`` imports a module of a higher layer, the front door
``prh`` itself, or another package's private parts.

The layers (docs: shared design notes, README "Design rules"), lowest first. Imports inside functions count too:
a lazy import is still a dependency. Only source text is read (never written), so the checks run on a read-only
checkout.

- No module but ``prh/__init__.py`` imports the package front door (``import prh``, ``from prh import __version__``):
  it re-exports the library, so importing it from inside the library is a cycle. Import the module that defines
  the name (``prh._provenance.VERSION``, ``prh._sweep.sweep``, ``prh.metrics``).
- A private module or name (``_x``) of a package is used inside that package only: ``prh.features._extract`` from
  ``prh.features.*``, never from ``prh.distributed``. The top-level private modules (``prh._validation``,
  ``prh._provenance``, ...) are prh's own and open to all of it; their private names are not.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "prh"

#: top-level module or package of prh -> layer number (imports may only go to the same or a lower number)
LAYERS = {
    # cross-cutting, lowest
    "errors": 0,
    "_provenance": 0,
    "_figure": 0,
    "_validation": 0,
    "_optional": 0,
    "_torchload": 0,
    "atomic": 0,
    "arrays": 0,
    "memory": 0,
    # where the offline zoo's packages are (data and models read from it)
    "zoo": 1,
    "data": 2,
    "models": 3,
    "features": 4,
    "metrics": 5,
    # differentiable versions of the metrics (training objectives)
    "losses": 5,
    "_prepare": 5,
    "_sweep": 5,
    "stats": 6,
    "align": 7,
    # measured competence (transfer probes, downstream scores): uses align's loading and results; report draws it
    "competence": 7,
    "report": 8,
    "world": 9,
    "experiments": 9,
    # model stitching: runs models (adapters), writes a report section like an experiment
    "stitch": 9,
    "distributed": 10,
    # trainer callbacks: run the public align entry points while a model trains
    "integrations": 10,
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


def _dotted(path: Path) -> tuple[str, ...]:
    """``src/prh/features/_extract.py`` -> ``("prh", "features", "_extract")`` (a package's ``__init__`` is the
    package)."""
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return parts[:-1] if parts[-1] == "__init__" else parts


@dataclass(frozen=True)
class Imported:
    """One name a module imports from prh: ``target`` is the dotted module, ``name`` the name taken from it (None
    for ``import prh.x.y``)."""

    target: tuple[str, ...]
    name: str | None


def _imports(source: str, module: tuple[str, ...], is_package: bool = False) -> list[Imported]:
    """Every import of a prh module in ``source``, the text of the module ``module`` (dotted parts, e.g.
    ``("prh", "metrics", "knn")``; ``is_package``: it is that package's ``__init__``), relative ones resolved."""
    package = module if is_package else module[:-1]
    out: list[Imported] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = tuple(alias.name.split("."))
                if parts[0] == "prh":
                    out.append(Imported(parts, None))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against the file's package
                base = package[: len(package) - node.level + 1]
                parts = tuple(base) + (tuple(node.module.split(".")) if node.module else ())
            else:
                parts = tuple((node.module or "").split("."))
            if parts[0] == "prh":
                out.extend(Imported(parts, alias.name) for alias in node.names)
    return out


def _layer_targets(imports: list[Imported]) -> set[str]:
    """The top-level prh modules the imports reach (``from prh import metrics`` reaches ``metrics``)."""
    out = set()
    for imp in imports:
        if len(imp.target) > 1:
            out.add(imp.target[1])
        elif imp.name is not None:
            out.add(imp.name)
    return out


def _front_door(imports: list[Imported]) -> list[str]:
    """Imports of the package ``prh`` itself: ``import prh`` or ``from prh import <a name that is not a module>``."""
    out = []
    for imp in imports:
        if imp.target == ("prh",) and (imp.name is None or imp.name not in LAYERS):
            out.append("import prh" if imp.name is None else f"from prh import {imp.name}")
    return out


def _is_package(parts: tuple[str, ...]) -> bool:
    return (SRC.parent.joinpath(*parts) / "__init__.py").is_file()


def _private_crossings(imports: list[Imported], module: tuple[str, ...]) -> list[str]:
    """Imports of a private module or name (``_x``) of a package from outside that package.

    The owner of ``_x`` is the package that holds it: for ``prh.features._extract`` the package ``prh.features``;
    for a private name taken from a module (``from prh.features.store import _jsonable``) that module's package.
    The top-level private modules (``prh._validation``) are held by ``prh`` and so open to all of it.
    """
    out = []
    for imp in imports:
        path = imp.target + ((imp.name,) if imp.name is not None else ())
        for i, part in enumerate(path):
            if not part.startswith("_") or part.startswith("__"):
                continue
            owner = path[:i] if _is_package(path[:i]) else path[: i - 1]
            if module[: len(owner)] != owner:
                out.append(".".join(path))
                break
    return out


def _files() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _file_imports(path: Path) -> list[Imported]:
    return _imports(path.read_text(encoding="utf-8"), _dotted(path), path.name == "__init__.py")


def test_every_module_has_a_layer():
    unknown = {_module_of(p) for p in _files()} - set(LAYERS) - {"__init__"}
    assert not unknown, f"add these modules of src/prh to LAYERS in {__file__}: {sorted(unknown)}"


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_upward_import(path: Path):
    here = _module_of(path)
    level = FACADE_LAYER if here == "__init__" else LAYERS[here]
    upward = sorted(
        f"{target} (layer {LAYERS[target]})"
        for target in _layer_targets(_file_imports(path))
        if target in LAYERS and LAYERS[target] > level
    )
    assert not upward, f"{path.relative_to(SRC)} (layer {here}={level}) imports a higher layer: {upward}"


@pytest.mark.parametrize(
    "path", [p for p in _files() if p != SRC / "__init__.py"], ids=lambda p: str(p.relative_to(SRC))
)
def test_no_module_imports_the_front_door(path: Path):
    found = _front_door(_file_imports(path))
    assert not found, (
        f"{path.relative_to(SRC)} imports the package front door ({found}); import the module that defines the "
        "name instead (prh._provenance.VERSION for the version)"
    )


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(SRC)))
def test_no_private_import_across_packages(path: Path):
    found = _private_crossings(_file_imports(path), _dotted(path))
    assert not found, (
        f"{path.relative_to(SRC)} imports private parts of another package: {found}; make them public in their "
        "package (its __init__) or move them"
    )


def test_the_checker_sees_lazy_and_relative_imports():
    source = "def f():\n    from prh.commands import x\n    from ..report import y\n"
    imports = _imports(source, ("prh", "metrics", "_layering_probe"))
    assert _layer_targets(imports) == {"commands", "report"}
    assert _imports("from . import knn\n", ("prh", "metrics"), is_package=True) == [
        Imported(("prh", "metrics"), "knn")
    ]


@pytest.mark.parametrize(
    "source",
    [
        "import prh\n",
        "def f():\n    import prh\n",
        "from prh import __version__\n",
        "from prh import sweep\n",
    ],
)
def test_the_checker_catches_the_front_door(source: str):
    assert _front_door(_imports(source, ("prh", "features", "store")))


@pytest.mark.parametrize(
    "source", ["import prh.metrics\n", "from prh import metrics\n", "from prh.metrics import cka\n"]
)
def test_the_checker_lets_submodules_through(source: str):
    assert not _front_door(_imports(source, ("prh", "features", "store")))


@pytest.mark.parametrize(
    ("source", "module", "crossing"),
    [
        ("from prh.features._extract import are_specs\n", ("prh", "distributed", "ray_extract"), True),
        ("from prh.features.store import _jsonable\n", ("prh", "distributed", "ray_extract"), True),
        ("from prh.features import _extract\n", ("prh", "distributed", "ray_extract"), True),
        ("import prh.features._extract\n", ("prh", "align", "engine"), True),
        ("from ..features._extract import x\n", ("prh", "align", "engine"), True),
        ("from prh.metrics.knn import _chunks\n", ("prh", "stats", "null_grid"), True),
        ("from prh.metrics.knn import _chunks\n", ("prh", "metrics", "knn_sets"), False),
        ("from prh.features._extract import are_specs\n", ("prh", "features", "store"), False),
        ("from prh.features.store import _jsonable\n", ("prh", "features", "reference"), False),
        ("from ._common import score_pair\n", ("prh", "metrics", "_cka"), False),
        ("from prh._validation import check_int\n", ("prh", "align", "config"), False),
        ("from prh import _validation\n", ("prh", "align", "config"), False),
        ("from prh.features import are_specs\n", ("prh", "distributed", "ray_extract"), False),
    ],
)
def test_the_checker_sees_private_imports_across_packages(
    source: str, module: tuple[str, ...], crossing: bool
):
    assert bool(_private_crossings(_imports(source, module), module)) is crossing


BENCHMARKS = SRC.parents[1] / "benchmarks"


@pytest.mark.parametrize("path", sorted(BENCHMARKS.glob("*.py")), ids=lambda p: p.name)
def test_benchmarks_do_not_import_the_tests(path: Path):
    """Benchmarks share oracles with the tests through ``oracles/``, never by importing ``tests/``."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    modules = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    modules += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [m for m in modules if m.split(".")[0] in ("tests", "conftest")]
    literals = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert "tests" not in literals, f"{path.name} puts tests/ on the path; import the oracle from oracles/"


#: Process notes that belong in the tracker, not in the code or docs (spelled in pieces so this file passes itself).
PROCESS_NOTES = re.compile(
    r"\b" + "iss" + r"ue\s*#?\d+|" + "iss" + r"ue's target|" + "never " + "grow", re.IGNORECASE
)


def test_no_issue_numbers_or_process_notes():
    root = SRC.parents[1]
    files = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    for folder in ("src", "tests", "benchmarks", "scripts", "oracles"):
        files += sorted((root / folder).rglob("*.py"))
    found = [
        f"{path.relative_to(root)}:{i}"
        for path in files
        if path.is_file()
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if PROCESS_NOTES.search(line)
    ]
    assert not found, f"issue numbers or process notes in: {found}"
