"""Atomic file writes: a reader sees the old file or the complete new one, never a half-written file.

Every writer in prh (feature store, results, zoo cache, figures, JSON) goes through :func:`atomic_write`: the data
is written to a uniquely named temporary file in the target's folder, which ``os.replace`` then moves onto the
target (atomic on POSIX and Windows within one filesystem). The temporary file never outlives the call -- except
when the process is killed (``kill -9``, power loss) in the middle of it: such a stale temporary of a target is
removed by the next write of the same target (see :func:`clean_stale_temporaries`).

Temporary files are named ``.<target name>.p<pid>-<host>.<random hex>.tmp``: the writer's process id and host say
whether the writer is gone (a dead process on this host), so that a concurrent writer's file is never removed.
"""

from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from prh.errors import InputError

#: A temporary file of another host (or of an older prh, without a process id) counts as stale after this long.
STALE_AFTER_S = 3600.0

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
_TMP_TAIL = re.compile(r"(?:p(?P<pid>\d+)-(?P<host>[A-Za-z0-9-]*)\.)?[0-9a-f]{32}\.tmp")


def temporary_path(path: str | os.PathLike) -> Path:
    """A fresh temporary path next to ``path`` (same folder, so that ``os.replace`` is atomic)."""
    path = Path(path)
    return path.parent / f".{path.name}.p{os.getpid()}-{_HOST}.{uuid.uuid4().hex}.tmp"


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill would terminate the process there: go by age only
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def clean_stale_temporaries(path: str | os.PathLike, now: float | None = None) -> list[Path]:
    """Remove temporaries of ``path`` left by a killed writer; return the removed paths.

    A temporary ``.<name>.p<pid>-<host>.<hex>.tmp`` is stale when it was written on this host by a process that no
    longer runs, or (another host, or an older name without the process id) when it is older than
    :data:`STALE_AFTER_S`. A live writer's temporary is never touched. Errors (a file removed meanwhile, no
    permission) are ignored: cleaning is best effort and never fails a write.
    """
    path = Path(path)
    prefix = f".{path.name}."
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        names = [
            e.name for e in os.scandir(path.parent) if e.name.startswith(prefix) and e.name.endswith(".tmp")
        ]
    except OSError:
        return removed
    for name in names:
        match = _TMP_TAIL.fullmatch(name[len(prefix) :])
        if match is None:
            continue
        candidate = path.parent / name
        try:
            if match["pid"] is not None and match["host"] == _HOST:
                stale = int(match["pid"]) != os.getpid() and not _pid_alive(int(match["pid"]))
            else:
                stale = now - candidate.stat().st_mtime > STALE_AFTER_S
            if stale:
                candidate.unlink()
                removed.append(candidate)
        except OSError:
            continue
    return removed


def _umask() -> int:
    """The process's umask, read without changing it where the system says it (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _honour_umask(path: Path) -> None:
    """Give a written file the mode a plain ``open`` would (``0o666 & ~umask``): some writers (safetensors, a
    ``mkstemp``) create theirs 0600, which would make feature files private while their sidecars are not."""
    if os.name == "nt":
        return
    try:
        path.chmod(0o666 & ~_umask())
    except OSError:
        pass


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp)`` with a fresh temporary path in ``path``'s folder, then move it onto ``path``.

    ``write`` must create the file itself (the temporary path does not exist yet). The folder must exist. If
    ``write`` raises, ``path`` is left as it was and the exception propagates. Stale temporaries of ``path`` from
    killed writers are removed first. Returns ``path``.
    """
    return atomic_write_group({path: write})[0]


def atomic_write_group(writes: Mapping[str | os.PathLike, Callable[[str], object]]) -> list[Path]:
    """Write several files so that either all of them are replaced or none is.

    Every ``write(tmp)`` runs first, each into its own temporary file; only when all succeeded are the temporaries
    moved onto their targets (renames in the same folder, which need no space). If one write fails (a full disk,
    an error in a writer) every temporary is removed, every target is left as it was and the error propagates.

    Parameters
    ----------
    writes : mapping of path -> callable
        Target path -> a function that creates the file at the temporary path it is given.

    Returns
    -------
    list of Path
        The targets, in the order given.
    """
    targets = [Path(p) for p in writes]
    temps: list[Path] = []
    try:
        for target, write in zip(targets, writes.values()):
            clean_stale_temporaries(target)
            tmp = temporary_path(target)
            temps.append(tmp)
            write(str(tmp))
            _honour_umask(tmp)
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return targets


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def check_writable(folder: str | os.PathLike, name: str = "--out", probe_bytes: int = 1 << 16) -> Path:
    """Make sure results can be written into ``folder`` before anything is computed.

    Creates the folder if needed and writes (and fsyncs, so that a full disk shows) then removes a small probe
    file. A folder created only for the probe is removed again, so nothing is left behind either way.

    Parameters
    ----------
    folder : path
        The output folder.
    name : str
        How the user gave it (``"--out"``), for the message.
    probe_bytes : int
        Size of the probe file.

    Raises
    ------
    InputError
        The folder cannot be created or written (read-only, no permission, a file in the way, a full disk).
    """
    folder = Path(folder).expanduser()
    missing: list[Path] = []
    probe = folder / f".prh-write-probe.p{os.getpid()}-{_HOST}.{uuid.uuid4().hex}.tmp"
    try:
        ancestor = folder
        while not ancestor.exists():
            missing.append(ancestor)
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise InputError(
                f"{name} {folder}: {ancestor} is a file, not a folder; give a folder for the results."
            )
        for new in reversed(missing):
            new.mkdir()
        with open(probe, "wb") as fh:
            fh.write(b"\0" * probe_bytes)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as err:
        reason = err.strerror or str(err)
        raise InputError(
            f"{name} {folder} cannot be written ({reason}); give a folder you can write to, with free space "
            f"(nothing was computed)."
        ) from None
    finally:
        try:
            probe.unlink(missing_ok=True)
        except OSError:
            pass
        for new in missing:  # deepest first
            try:
                new.rmdir()
            except OSError:
                pass
    return folder
