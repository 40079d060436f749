"""Kernel-alignment metrics: pure functions of two (N, D) feature matrices -> float.

Every metric returns a Python float, higher = more similar, 1.0 for identical inputs. Inputs are used as given
(apply :func:`prh.prepare` for the paper's preprocessing). ``names()`` lists the metrics, ``get(name)`` returns
the function, ``spec(name)`` its :class:`MetricSpec` (range, symmetry, whether it uses k, null expectation).
"""

from __future__ import annotations

from prh.metrics.cka import cka, unbiased_cka
from prh.metrics.cknna import cknna
from prh.metrics.knn import cycle_knn, edit_distance_knn, lcs_knn, mutual_knn
from prh.metrics.registry import MetricSpec, get, names, register, spec
from prh.metrics.svcca import svcca

__all__ = [
    "MetricSpec",
    "cka",
    "cknna",
    "cycle_knn",
    "edit_distance_knn",
    "get",
    "lcs_knn",
    "mutual_knn",
    "names",
    "register",
    "spec",
    "svcca",
    "unbiased_cka",
]
