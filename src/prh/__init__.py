"""prh: measure how alike neural networks see the world (the Platonic Representation Hypothesis toolkit).

Main entry points: :mod:`prh.metrics` (alignment metrics), :func:`prh.prepare` (the paper's preprocessing),
:func:`prh.sweep` (best layer pair of two models), and the ``prh`` command line.
"""

from __future__ import annotations

from prh import metrics, stats
from prh._prepare import prepare
from prh._sweep import Sweep, sweep


def __getattr__(name: str):
    """Lazy access to the heavier entry points (they import transformers / pandas only when used)."""
    if name == "Alignment":
        from prh.align.alignment import Alignment

        return Alignment
    if name == "PairGrid":
        from prh.align.engine import PairGrid

        return PairGrid
    if name == "Experiment":
        import warnings

        from prh.align.engine import PairGrid

        warnings.warn(
            "prh.Experiment is deprecated; use prh.PairGrid (same class, new name)",
            DeprecationWarning,
            stacklevel=2,
        )
        return PairGrid
    raise AttributeError(f"module 'prh' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = ["Alignment", "PairGrid", "Sweep", "__version__", "metrics", "prepare", "stats", "sweep"]
