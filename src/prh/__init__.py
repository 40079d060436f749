"""prh: measure how alike neural networks see the world (the Platonic Representation Hypothesis toolkit).

Main entry points: :mod:`prh.metrics` (alignment metrics), :func:`prh.prepare` (the paper's preprocessing),
:func:`prh.sweep` (best layer pair of two models), and the ``prh`` command line.

Importing ``prh`` is cheap and has no side effects: every entry point below is imported on first use (so that
``prh --help`` does not load torch).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from prh._provenance import VERSION as __version__

if TYPE_CHECKING:  # the names below, for type checkers and IDEs
    from prh import metrics, stats
    from prh._prepare import prepare
    from prh._sweep import Sweep, sweep
    from prh.align.alignment import Alignment
    from prh.align.engine import PairGrid

#: public name -> (module, attribute in it; None: the module itself)
_LAZY = {
    "metrics": ("prh.metrics", None),
    "stats": ("prh.stats", None),
    "prepare": ("prh._prepare", "prepare"),
    "sweep": ("prh._sweep", "sweep"),
    "Sweep": ("prh._sweep", "Sweep"),
    "Alignment": ("prh.align.alignment", "Alignment"),
    "PairGrid": ("prh.align.engine", "PairGrid"),
}


def __getattr__(name: str):
    """Import an entry point of :data:`_LAZY` on first access and keep it as a module attribute."""
    if name == "Experiment":  # deprecated alias: warn on every access, so it is never cached
        import warnings

        from prh.align.engine import PairGrid

        warnings.warn(
            "prh.Experiment is deprecated; use prh.PairGrid (same class, new name)",
            DeprecationWarning,
            stacklevel=2,
        )
        return PairGrid
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'prh' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["Alignment", "PairGrid", "Sweep", "__version__", "metrics", "prepare", "stats", "sweep"]
