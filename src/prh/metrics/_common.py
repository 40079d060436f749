"""Shared plumbing for metric public functions: validate once, cache each side, read one grid cell."""

from __future__ import annotations

from prh._validation import check_pair
from prh.metrics.registry import MetricSpec


def score_pair(metric: MetricSpec, a: object, b: object, **kwargs: object) -> float:
    """Validate ``a`` and ``b`` ((N, D_a), (N, D_b)), check options, and score the pair as a Python float."""
    ta, tb = check_pair(a, b)
    kw = metric.check_kwargs(ta.shape[0], **kwargs)
    grid = metric.grid([metric.layer_cache(ta, **kw)], [metric.layer_cache(tb, **kw)], **kw)
    return float(grid[0, 0])
