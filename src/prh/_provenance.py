"""What every saved result records about the run that made it: prh's version, the library versions, the Python,
the time it was made and how long it took.

This is the one place that knows prh's version (``prh.__version__`` re-exports :data:`VERSION`), so that library
modules never import the package front door ``prh`` for it. Feature sidecars, alignment results, competence tables
and experiment runs all build their provenance from :func:`run_stamp`.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import os
import platform

#: prh's version (the distribution's version in pyproject.toml).
VERSION = "0.1.0"


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second (``"2026-01-31T12:00:00+00:00"``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_stamp(
    libraries: tuple[str, ...] = ("torch",), *, created: bool = True, wall_time_s: float | None = None
) -> dict:
    """The provenance entries every saved result shares, in this order.

    Parameters
    ----------
    libraries : importable packages whose ``__version__`` is recorded as ``"<name>_version"`` after prh's
        (``("torch", "sklearn")``); they are imported here, so name only those the caller has already loaded.
    created : record ``"created"``, the current UTC time (:func:`utc_now`).
    wall_time_s : seconds the run took so far, rounded to milliseconds; None leaves the entry out.

    Returns
    -------
    dict : ``prh_version``, one ``<library>_version`` per library, ``python``, then ``created`` and
        ``wall_time_s`` when asked for.
    """
    out: dict = {"prh_version": VERSION}
    for name in libraries:
        out[f"{name}_version"] = str(importlib.import_module(name).__version__)
    out["python"] = platform.python_version()
    if created:
        out["created"] = utc_now()
    if wall_time_s is not None:
        out["wall_time_s"] = round(float(wall_time_s), 3)
    return out


def describe_machine() -> str:
    """This machine in words, e.g. ``"2-core AMD EPYC 7B13 machine"`` (where a run's times were measured)."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        cpu = platform.processor()
    return " ".join(filter(None, [f"{os.cpu_count() or '?'}-core", cpu or platform.machine(), "machine"]))


__all__ = ["VERSION", "describe_machine", "run_stamp", "utc_now"]
