"""Kernel-alignment metrics: pure functions of two (N, D) feature matrices -> float.

Every metric returns a Python float, higher = more similar, 1.0 for identical inputs (the one documented
exception: ``debiased_cka`` with its default ``columns="independent"``). Inputs are used as given (apply
:func:`prh.prepare` for the paper's preprocessing). ``names()`` lists the metrics (the paper's eight reference
metrics first), ``get(name)`` returns the function, ``spec(name)`` its :class:`MetricSpec` (range, symmetry,
whether it uses k, null expectation). :data:`PROPERTIES` holds each metric's documented invariances
(mirrored by docs/metrics.md and checked by property tests).
"""

from __future__ import annotations

# Registration order is the order of names(): the eight reference metrics first, then the extra measures.
from prh.metrics.knn import cycle_knn, edit_distance_knn, lcs_knn, mutual_knn  # isort: skip
from prh.metrics._cka import cka, unbiased_cka  # isort: skip
from prh.metrics._cknna import cknna  # isort: skip
from prh.metrics._svcca import svcca  # isort: skip
from prh.metrics._debiased_cka import debiased_cka  # isort: skip
from prh.metrics.knn_sets import (  # isort: skip
    cycle_knn_ba,
    cycle_knn_both,
    cycle_knn_directions,
    jaccard_knn,
)
from prh.metrics._procrustes import procrustes  # isort: skip
from prh.metrics._pwcca import pwcca  # isort: skip
from prh.metrics._rsa import rsa  # isort: skip
from prh.metrics._rv import rv  # isort: skip
from prh.metrics._linear_predictivity import linear_predictivity, linear_predictivity_sym  # isort: skip
from prh.metrics.properties import PROPERTIES, MetricProperties  # isort: skip
from prh.metrics.registry import DEFAULT_METRIC, MetricSpec, get, names, register, spec, specs  # isort: skip

__all__ = [
    "DEFAULT_METRIC",
    "PROPERTIES",
    "MetricProperties",
    "MetricSpec",
    "cka",
    "cknna",
    "cycle_knn",
    "cycle_knn_ba",
    "cycle_knn_both",
    "cycle_knn_directions",
    "debiased_cka",
    "edit_distance_knn",
    "get",
    "jaccard_knn",
    "lcs_knn",
    "linear_predictivity",
    "linear_predictivity_sym",
    "mutual_knn",
    "names",
    "procrustes",
    "pwcca",
    "register",
    "rsa",
    "rv",
    "spec",
    "specs",
    "svcca",
    "unbiased_cka",
]


def _import_every_module() -> None:
    """Import every module of this package once, so that a metric defined in its own file (``_<name>.py`` with its
    ``register(MetricSpec(...))``) is registered without an import line here; the explicit imports above fix the
    order of :func:`names` for the built-in metrics, the rest follow in file-name order."""
    import importlib
    import pkgutil

    for found in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{found.name}")


_import_every_module()
