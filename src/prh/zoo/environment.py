"""What this machine holds for the zoo: the installed Python distributions and the prh cache folder."""

from __future__ import annotations

import importlib.metadata as md
import os
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    """The prh cache folder (``$PRH_CACHE`` or ``~/.cache/prh``) joined with ``parts``; not created here."""
    root = os.environ.get("PRH_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "prh"
    return base.joinpath(*parts)


def distribution(dist: str) -> md.Distribution | None:
    """The installed distribution ``dist`` (pip's name), or None when it is not installed."""
    try:
        return md.distribution(dist)
    except md.PackageNotFoundError:
        return None


def is_installed(dist: str) -> bool:
    """Whether the distribution ``dist`` is installed in this Python environment."""
    return distribution(dist) is not None


def dist_size_mb(dist: md.Distribution) -> float | None:
    """Installed size of a distribution in MB (from its RECORD), or None when its files list no sizes."""
    files = dist.files or []
    total = 0
    for f in files:
        if f.size is not None:
            total += int(f.size)
    return round(total / 1e6, 1) if total else None
