"""Held-out layer selection: choose the best layer pair on half the items, score it on the other half."""

from __future__ import annotations

import numpy as np
import pytest

import prh
from prh.align import AlignConfig
from prh.errors import InputError
from prh.metrics import spec

N, HALF = 80, 40


def independent(seed: int, layers: int = 4, d: int = 16) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    return (
        [rng.standard_normal((N, d)) for _ in range(layers)],
        [rng.standard_normal((N, d)) for _ in range(layers)],
    )


@pytest.mark.parametrize(
    ("metric", "kw", "tol"), [("mutual_knn", {"k": 5}, 0.02), ("unbiased_cka", {}, 0.02)]
)
def test_held_out_centres_on_null_while_same_items_max_does_not(metric, kw, tol):
    """On independent data the held-out score sits on the metric's null expectation (at N/2 items); the maximum
    over the 4 x 4 layer pairs on the items that chose it sits well above it."""
    s = spec(metric)
    null = s.null_expectation(HALF, s.check_kwargs(HALF, **kw))
    held, same = [], []
    for seed in range(3):
        x, y = independent(seed)
        result = prh.sweep(x, y, metric, select="held-out", splits=20, select_seed=seed, **kw)
        held.append(result.held_out.mean)
        same.append(result.held_out.same_items.mean())
        assert result.held_out.chosen.sum() == 20
    assert abs(float(np.mean(held)) - null) < tol
    assert float(np.mean(same)) > null + 2 * tol


def test_linear_predictivity_held_out_is_at_most_zero_on_independent_data():
    x, y = independent(0, layers=3, d=8)
    held = prh.sweep(x, y, "linear_predictivity", select="held-out", splits=10).held_out
    assert held.mean < 0.0
    assert held.interval[1] < 0.02


def test_held_out_finds_the_planted_pair():
    rng = np.random.default_rng(1)
    x, y = independent(1)
    y[2] = x[1] @ np.linalg.qr(rng.standard_normal((16, 16)))[0] + 0.3 * rng.standard_normal((N, 16))
    result = prh.sweep(x, y, "unbiased_cka", select="held-out", splits=10)
    assert result.held_out.top_pair == ((1, 2), 1.0)
    assert result.held_out.mean > 0.8
    d = result.to_dict()["held_out"]
    assert d["top_pair"] == [1, 2] and len(d["scores"]) == 10


def test_default_is_same_items_and_bad_select_raises():
    x, y = independent(2, layers=2)
    assert prh.sweep(x, y, "mutual_knn", k=5).held_out is None
    with pytest.raises(InputError, match="select"):
        prh.sweep(x, y, "mutual_knn", select="heldout")
    with pytest.raises(InputError, match="select"):
        AlignConfig(select="best")
    with pytest.raises(InputError, match="select_splits"):
        AlignConfig(select="held-out", select_splits=0)
    assert AlignConfig(select="held-out").to_dict()["select"] == "held-out"
