"""Shared plumbing for metric public functions: validate once, cache each side, read one grid cell."""

from __future__ import annotations

from prh._validation import check_pair
from prh.errors import InputError
from prh.metrics.registry import MetricSpec


def score_pair(metric: MetricSpec, a: object, b: object, **kwargs: object) -> float:
    """Validate ``a`` and ``b`` ((N, D_a), (N, D_b)), check options, and score the pair as a Python float."""
    ta, tb = check_pair(a, b)
    kw = metric.check_kwargs(ta.shape[0], **kwargs)
    caches = []
    for name, t in (("A", ta), ("B", tb)):
        metric.check_memory([t], kw, name)
        try:
            (t,) = metric.fit_scale([t], kw)
            caches.append([metric.layer_cache(t, **kw)])
        except InputError as err:  # name the argument whose layer is unusable (e.g. constant features)
            raise InputError(f"{name}: {err}") from None
    return float(metric.grid(*caches, **kw)[0, 0])
