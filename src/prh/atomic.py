"""Atomic file writes: a reader sees the old file or the complete new one, never a half-written file.

Every writer in prh (feature store, results, zoo cache, figures, JSON) goes through :func:`atomic_write`: the data
is written to a uniquely named temporary file in the target's folder, which ``os.replace`` then moves onto the
target (atomic on POSIX and Windows within one filesystem). The temporary file never outlives the call.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` with a fresh temporary path in ``path``'s folder, then move it onto ``path``.

    ``write`` must create the file itself (the temporary path does not exist yet). The folder must exist. If
    ``write`` raises, ``path`` is left as it was and the exception propagates. Returns ``path``.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
