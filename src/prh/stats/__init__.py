"""Statistics for alignment scores: permutation-null calibration, bootstrap intervals, competence correlation.

* :func:`calibrate` / :func:`calibrate_sweep` — permutation null of a score or of a layer-sweep aggregate:
  τ, p-value, calibrated score (:class:`CalibrationResult`). Reuses per-layer caches, re-indexed per permutation.
* :func:`bootstrap_ci` — interval for a score or a sweep aggregate (subsampling without replacement by default).
* :func:`noise_ceiling` — split-half reliability of a repeated measurement's kernel, Spearman–Brown corrected.
* :func:`correlation` — Pearson/Spearman across models with a bootstrap interval and a permutation p-value.

See docs/statistics.md for the definitions and the choices made.
"""

from __future__ import annotations

from prh.stats._calibrate import (
    AGGREGATES,
    CalibrationResult,
    aggregate_grids,
    calibrate,
    calibrate_sweep,
    calibrated_score,
    min_permutations,
    permutation_p_value,
    permutation_threshold,
)
from prh.stats._correlation import CorrelationResult, correlation
from prh.stats._noise_ceiling import NoiseCeiling, noise_ceiling, spearman_brown
from prh.stats.bootstrap import BootstrapResult, bootstrap_ci

__all__ = [
    "AGGREGATES",
    "BootstrapResult",
    "CorrelationResult",
    "CalibrationResult",
    "NoiseCeiling",
    "aggregate_grids",
    "calibrate",
    "calibrate_sweep",
    "bootstrap_ci",
    "calibrated_score",
    "correlation",
    "min_permutations",
    "noise_ceiling",
    "permutation_p_value",
    "permutation_threshold",
    "spearman_brown",
]
