"""The alignment engine: stored features of model sets -> best-layer alignment scores of every model pair.

- :mod:`prh.align.config` — :class:`AlignConfig`, the one frozen, validated set of every option that changes
  the numbers (metrics, k, calibration, bootstrap, alpha, seed, q, pool, shuffled control); shared by the Python
  API, `prh align` / `prh demo` and the Ray backend, and the options part of the result-cache key.
- :mod:`prh.align.engine` — :class:`ModelFeatures`, :func:`load_features`, :class:`PairGrid` (the pair grid
  over all layer pairs, with calibration, bootstrap and controls) and :class:`Results` (table, grids, provenance).
- :mod:`prh.align.pipeline` — :func:`run_alignment`, what `prh align`, `prh demo` and the Ray backend run: resolve
  models, load their stored features, run the :class:`PairGrid`, cache the results under :func:`results_key`.
- :func:`resolve_names` — model specs of registry names / sets and of models imported into a feature store
  (`prh import`).
- :mod:`prh.align.alignment` — :class:`Alignment`, scoring your own features against stored reference models.

Layering: this package uses metrics, sweep, stats and the feature store; it never imports :mod:`prh.report` or
:mod:`prh.commands` (those sit above it).
"""

from __future__ import annotations

from prh.align._imported import resolve_names
from prh.align.alignment import Alignment
from prh.align.config import AlignConfig
from prh.align.engine import (
    STATS_COLUMNS,
    TABLE_COLUMNS,
    ModelFeatures,
    PairGrid,
    Results,
    load_features,
)
from prh.align.pipeline import (
    DatasetName,
    open_dataset,
    results_key,
    run_alignment,
    shuffled_control,
)


def __getattr__(name: str):
    """Old names, kept one release with a DeprecationWarning: ``Experiment`` (now :class:`PairGrid`) and
    ``DEFAULT_METRICS`` (now ``AlignConfig().metrics``; the default single metric is
    :data:`prh.metrics.DEFAULT_METRIC`)."""
    import warnings

    if name == "Experiment":
        warnings.warn(
            "prh.align.Experiment is deprecated; use prh.align.PairGrid (same class, new name)",
            DeprecationWarning,
            stacklevel=2,
        )
        return PairGrid
    if name == "DEFAULT_METRICS":
        warnings.warn(
            "prh.align.DEFAULT_METRICS is deprecated; use AlignConfig().metrics (or prh.metrics.DEFAULT_METRIC)",
            DeprecationWarning,
            stacklevel=2,
        )
        return AlignConfig().metrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "STATS_COLUMNS",
    "TABLE_COLUMNS",
    "AlignConfig",
    "Alignment",
    "DatasetName",
    "PairGrid",
    "ModelFeatures",
    "Results",
    "load_features",
    "open_dataset",
    "resolve_names",
    "results_key",
    "run_alignment",
    "shuffled_control",
]
