"""prh.stats.bootstrap_ci and prh.stats.correlation: coverage in a closed-form case, hand-made examples, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import prh
from prh.errors import InputError
from prh.stats import bootstrap_ci, correlation

pytestmark = pytest.mark.usefixtures("one_thread")


def _gaussian_pair(n, rho, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 1, generator=g, dtype=torch.float64)
    b = rho * a + (1 - rho**2) ** 0.5 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return a, b


def test_linear_cka_of_one_feature_is_squared_correlation():
    a, b = _gaussian_pair(100, 0.6, 0)
    r = np.corrcoef(a[:, 0].numpy(), b[:, 0].numpy())[0, 1]
    assert bootstrap_ci(a, b, "cka", B=5).score == pytest.approx(r**2)


@pytest.mark.parametrize("method", ["subsample", "bootstrap"])
def test_interval_covers_true_value_closed_form(method):
    """Linear CKA of two 1-d Gaussian features with correlation rho is rho^2: the 90% interval must cover it."""
    rho, hits, trials = 0.6, 0, 40
    for seed in range(trials):
        a, b = _gaussian_pair(120, rho, seed)
        res = bootstrap_ci(a, b, "cka", B=100, level=0.9, seed=seed, method=method)
        assert res.ci_low <= res.score <= res.ci_high
        hits += res.ci_low <= rho**2 <= res.ci_high
    # nominal 0.9; 40 trials: P(Binomial(40, 0.9) <= 30) < 0.01
    assert hits >= 31, f"coverage {hits}/{trials}"


def test_subsample_interval_formula_and_sweep():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(80, 6, generator=g)
    x = prh.prepare(
        torch.stack(
            [base @ torch.randn(6, 10, generator=g) + torch.randn(80, 10, generator=g) for _ in range(2)], 1
        )
    )
    y = prh.prepare(
        torch.stack(
            [base @ torch.randn(6, 8, generator=g) + torch.randn(80, 8, generator=g) for _ in range(2)], 1
        )
    )
    res = bootstrap_ci(x, y, "mutual_knn", B=50, level=0.8, seed=3, fraction=0.25, k=5)
    assert res.score == pytest.approx(prh.sweep(x, y, "mutual_knn", k=5).best)
    assert res.m == 20 and res.n == 80 and res.replicates.shape == (50,)
    c = (20 / 60) ** 0.5
    dev = res.replicates - res.replicates.mean()
    assert res.ci_low == pytest.approx(res.score + c * np.quantile(dev, 0.1))
    assert res.ci_high == pytest.approx(res.score + c * np.quantile(dev, 0.9))
    again = bootstrap_ci(x, y, "mutual_knn", B=50, level=0.8, seed=3, fraction=0.25, k=5)
    np.testing.assert_array_equal(res.replicates, again.replicates)
    # the generic path (recomputed caches) agrees with the kNN Gram fast path
    one = bootstrap_ci(x[:, 0], y[:, 0], "mutual_knn", B=10, seed=0, k=5)
    cyc = bootstrap_ci(x[:, 0], y[:, 0], "lcs_knn", B=10, seed=0, k=5)
    assert one.replicates.shape == cyc.replicates.shape == (10,)
    assert set(one.to_dict()) >= {"score", "ci_low", "ci_high", "method", "m"}


def test_bootstrap_errors():
    a, b = _gaussian_pair(40, 0.5, 0)
    with pytest.raises(InputError, match="subsample"):
        bootstrap_ci(a, b, "mutual_knn", B=10, method="bootstrap", k=3)
    with pytest.raises(InputError, match="subsample"):
        bootstrap_ci(a, b, "unbiased_cka", B=10, method="bootstrap")
    with pytest.raises(InputError, match="fraction"):
        bootstrap_ci(a, b, "cka", B=10, fraction=1.0)
    with pytest.raises(InputError, match="m=20"):
        bootstrap_ci(a, b, "mutual_knn", B=10, k=25)
    with pytest.raises(InputError, match="B="):
        bootstrap_ci(a, b, "cka", B=1)
    with pytest.raises(InputError, match="level"):
        bootstrap_ci(a, b, "cka", B=10, level=95)
    with pytest.raises(InputError, match="same samples"):
        bootstrap_ci(a, b[:30], "cka", B=10)


# ------------------------------------------------------------------------------------------- correlation


def test_perfect_monotone_spearman():
    x = np.arange(10.0)
    res = correlation(x, np.exp(x), method="spearman", B=500, K=999, seed=0)
    assert res.r == pytest.approx(1.0)
    assert res.ci_low == pytest.approx(1.0) and res.ci_high == pytest.approx(1.0)
    assert res.p_value < 0.01 and res.p_value >= 1 / 1000
    assert res.n == 10
    anti = correlation(x, -(x**3), method="spearman", K=999)
    assert anti.r == pytest.approx(-1.0) and anti.p_value < 0.01
    # pearson is below 1 for a non-linear monotone relation
    assert correlation(x, np.exp(x), method="pearson").r < 0.9


def test_pearson_by_hand_and_permutation_p():
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    res = correlation(x, y, method="pearson", B=2000, K=4000, seed=1)
    assert res.r == pytest.approx(0.8)  # cov 2.0 / var 2.5
    # exact two-sided permutation p: orderings of y with |r| >= 0.8 among the 120 permutations
    from itertools import permutations

    xs = np.array(x, float)
    exact = np.mean([abs(np.corrcoef(xs, p)[0, 1]) >= 0.8 - 1e-12 for p in permutations(y)])
    assert res.p_value == pytest.approx(exact, abs=0.02)
    assert res.ci_low < 0.8 <= res.ci_high
    assert res.to_dict()["method"] == "pearson"


def test_spearman_ties_use_average_ranks():
    from scipy.stats import spearmanr

    x, y = [1, 2, 2, 3, 5, 4], [1, 3, 2, 2, 6, 5]
    assert correlation(x, y, K=10, B=10).r == pytest.approx(spearmanr(x, y).statistic)


def test_correlation_errors():
    with pytest.raises(InputError, match="at least 3"):
        correlation([1, 2], [3, 4])
    with pytest.raises(InputError, match="constant"):
        correlation([1, 2, 3], [1, 1, 1])
    with pytest.raises(InputError, match="len"):
        correlation([1, 2, 3], [1, 2, 3, 4])
    with pytest.raises(InputError, match="spearman"):
        correlation([1, 2, 3], [1, 2, 4], method="spaerman")
    with pytest.raises(InputError, match="NaN"):
        correlation([1, 2, np.nan], [1, 2, 3])


def test_knn_subsample_interval_matches_monte_carlo_spread():
    """The rescaled half-sample interval of mutual kNN has the width of the score's true sampling spread."""

    # one population (fixed maps), fresh samples per data set
    g = torch.Generator().manual_seed(123)
    wa, wb = torch.randn(4, 16, generator=g), torch.randn(4, 12, generator=g)

    def sample(seed, n=200):
        gs = torch.Generator().manual_seed(seed)
        z = torch.randn(n, 4, generator=gs)
        a = z @ wa + torch.randn(n, 16, generator=gs)
        b = z @ wb + torch.randn(n, 12, generator=gs)
        return prh.prepare(a), prh.prepare(b)

    scores = [prh.metrics.mutual_knn(*sample(1000 + s), k=10) for s in range(80)]
    true_width = 2 * 1.6449 * np.std(scores, ddof=1)  # 90% normal interval
    widths = []
    for s in range(4):
        res = bootstrap_ci(*sample(s), "mutual_knn", B=200, level=0.9, seed=s, k=10)
        widths.append(res.ci_high - res.ci_low)
        # the raw half-sample percentiles are shifted (different N): the centring removes that shift
        assert res.subsample_low > res.ci_low
    ratio = float(np.mean(widths) / true_width)
    assert 0.6 < ratio < 1.6, ratio
