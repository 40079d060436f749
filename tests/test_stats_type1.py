"""Validity and power of the permutation calibration.

Type-I error: on independent data the rejection rate at alpha = 0.05 over 200 seeds must lie inside the 99%
binomial interval of Binomial(200, 0.05) — for one pair of layers and for the max over a layer grid. Power: planted
shared structure gives p < 0.01.
"""

from __future__ import annotations

import pytest
import torch
from scipy.stats import binom

import prh
from prh.stats import calibrate, calibrate_sweep

SEEDS = 200
ALPHA = 0.05
LOW, HIGH = binom.interval(0.99, SEEDS, ALPHA)  # (4, 18) rejections


pytestmark = pytest.mark.usefixtures("one_thread")


def _independent(seed, n=40, lx=1, ly=1, d=8):
    g = torch.Generator().manual_seed(seed)
    x = prh.prepare(torch.randn(n, lx, d, generator=g))
    y = prh.prepare(torch.randn(n, ly, d, generator=g))
    return x, y


@pytest.mark.parametrize(("metric", "kw"), [("mutual_knn", {"k": 5}), ("unbiased_cka", {})])
def test_type_one_error_single_pair(metric, kw):
    rejections = 0
    for seed in range(SEEDS):
        x, y = _independent(seed)
        r = calibrate(x[:, 0], y[:, 0], metric, K=99, alpha=ALPHA, seed=seed, **kw)
        rejections += r.p_value <= ALPHA
        assert (r.calibrated > 0) == (r.p_value <= ALPHA)
    assert LOW <= rejections <= HIGH, (
        f"{rejections} rejections out of {SEEDS}, expected within [{LOW}, {HIGH}]"
    )


def test_type_one_error_max_over_layer_grid():
    rejections = naive = 0
    for seed in range(SEEDS):
        x, y = _independent(seed, lx=3, ly=3)
        r = calibrate_sweep(x, y, "mutual_knn", K=99, alpha=ALPHA, seed=seed, aggregate="max", k=5)
        rejections += r.p_value <= ALPHA
        # the naive per-pair threshold applied to the best pair rejects far too often (the max is inflated)
        single = calibrate(x[:, r.best_layers[0]], y[:, r.best_layers[1]], "mutual_knn", K=99, seed=seed, k=5)
        naive += single.p_value <= ALPHA
    assert LOW <= rejections <= HIGH, (
        f"{rejections} rejections out of {SEEDS}, expected within [{LOW}, {HIGH}]"
    )
    assert naive > HIGH


@pytest.mark.parametrize(
    ("metric", "kw"), [("mutual_knn", {"k": 5}), ("cka", {}), ("cknna", {"k": 5}), ("svcca", {"dim": 3})]
)
def test_power_planted_structure(metric, kw):
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(60, 4, generator=g)
    x = prh.prepare(
        torch.stack(
            [
                shared @ torch.randn(4, 16, generator=g) + 0.3 * torch.randn(60, 16, generator=g)
                for _ in range(2)
            ],
            1,
        )
    )
    y = prh.prepare(
        torch.stack(
            [
                shared @ torch.randn(4, 12, generator=g) + 0.3 * torch.randn(60, 12, generator=g)
                for _ in range(2)
            ],
            1,
        )
    )
    r = calibrate_sweep(x, y, metric, K=199, seed=0, **kw)
    assert r.p_value < 0.01
    assert r.p_value == pytest.approx(1 / 200)
    assert r.calibrated > 0 and r.significant
    assert r.score > r.tau
