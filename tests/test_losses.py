"""prh.losses: exact CKA equals the metrics, soft neighbourhoods converge to mutual kNN / CKNNA, gradients are
right (gradcheck in float64), independent batches sit at chance, bad input is one clear error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import prh
from prh.errors import InputError
from prh.losses import LinearCKA, SoftCKNNA, SoftMutualKNN, UnbiasedCKA, soft_neighbors


def _related(b: int = 64, seed: int = 0, noise: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, 8, generator=g, dtype=torch.float64)
    x = z @ torch.randn(8, 20, generator=g, dtype=torch.float64) + noise * torch.randn(
        b, 20, generator=g, dtype=torch.float64
    )
    y = z @ torch.randn(8, 12, generator=g, dtype=torch.float64) + noise * torch.randn(
        b, 12, generator=g, dtype=torch.float64
    )
    return x, y


def test_exact_cka_losses_equal_the_metrics_on_normalised_rows():
    x, y = _related()
    xn, yn = F.normalize(x, dim=1), F.normalize(y, dim=1)
    assert float(LinearCKA()(x, y)) == pytest.approx(prh.metrics.cka(xn, yn), abs=1e-12)
    assert float(UnbiasedCKA()(x, y)) == pytest.approx(prh.metrics.unbiased_cka(xn, yn), abs=1e-12)
    # normalize=False: the inputs as given, like the metrics
    assert float(LinearCKA(normalize=False)(x, y)) == pytest.approx(prh.metrics.cka(x, y), abs=1e-12)
    assert float(UnbiasedCKA(normalize=False)(x, y)) == pytest.approx(
        prh.metrics.unbiased_cka(x, y), abs=1e-12
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_soft_scores_converge_to_the_hard_metrics_at_low_temperature(seed):
    x, y = _related(seed=seed)
    xn, yn = F.normalize(x, dim=1), F.normalize(y, dim=1)
    hard_knn = prh.metrics.mutual_knn(xn, yn, k=5)
    hard_cknna = prh.metrics.cknna(xn, yn, k=5)
    errors = [abs(float(SoftMutualKNN(k=5, temperature=t)(x, y)) - hard_knn) for t in (0.1, 1e-5)]
    assert errors[1] < 2e-3 and errors[1] < errors[0]
    assert float(SoftCKNNA(k=5, temperature=1e-5)(x, y)) == pytest.approx(hard_cknna, abs=5e-3)
    biased = prh.metrics.cknna(xn, yn, k=5, unbiased=False)
    assert float(SoftCKNNA(k=5, temperature=1e-5, unbiased=False)(x, y)) == pytest.approx(biased, abs=5e-3)


def test_soft_neighbors_tend_to_the_knn_indicator():
    x, _ = _related()
    xn = F.normalize(x, dim=1)
    w = soft_neighbors(xn, 5, 1e-6)
    hard = torch.zeros_like(w).scatter_(1, prh.metrics.neighbors.knn_indices(xn, 5), 1.0)
    assert torch.allclose(w, hard, atol=1e-3)
    assert torch.all(w.diagonal() == 0)
    for t in (1e-6, 0.1, 10.0):  # every row holds k neighbours' worth of weight at any temperature
        assert torch.allclose(soft_neighbors(xn, 5, t).sum(dim=1), torch.full((64,), 5.0, dtype=w.dtype))
    x2, y2 = _related(seed=1)
    assert float(SoftMutualKNN(k=5, temperature=1e6)(x2, y2)) == pytest.approx(5 / 63, rel=1e-6)  # chance


@pytest.mark.parametrize(
    "module",
    [LinearCKA(), UnbiasedCKA(), SoftMutualKNN(k=3, temperature=0.1), SoftCKNNA(k=3, temperature=0.1)],
)
def test_gradients_pass_gradcheck_in_float64(module):
    x, y = _related(b=12)
    x, y = x.clone().requires_grad_(), y.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: module(a, b), (x, y))


def test_independent_batches_sit_at_chance_and_identical_ones_at_one():
    g = torch.Generator().manual_seed(3)
    b, k = 200, 10
    x, y = torch.randn(b, 32, generator=g), torch.randn(b, 32, generator=g)
    chance = k / (b - 1)
    assert abs(float(SoftMutualKNN(k=k, temperature=0.01)(x, y)) - chance) < 0.03
    assert abs(float(UnbiasedCKA()(x, y))) < 0.05
    x64 = x.double()
    assert float(SoftMutualKNN(k=k, temperature=1e-7)(x64, x64)) == pytest.approx(1.0, abs=1e-3)
    assert float(LinearCKA()(x, x)) == pytest.approx(1.0, abs=1e-6)


def test_shuffled_pairing_falls_to_chance_while_the_real_one_does_not():
    x, y = _related(b=200, noise=0.3)
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(0))
    loss = SoftMutualKNN(k=10, temperature=0.01)
    real, shuffled = float(loss(x, y)), float(loss(x, y[perm]))
    assert real > 5 * 10 / 199 and abs(shuffled - 10 / 199) < 0.03


def test_bad_inputs_are_one_clear_error():
    x, y = _related(b=8)
    with pytest.raises(InputError, match="same batch size"):
        LinearCKA()(x, y[:6])
    with pytest.raises(InputError, match="shape \\(B, D\\)"):
        LinearCKA()(x[None], y[None])
    with pytest.raises(InputError, match="torch tensor"):
        LinearCKA()(x.numpy(), y)
    with pytest.raises(InputError, match="k \\+ 2"):
        SoftMutualKNN(k=7)(x, y)
    with pytest.raises(InputError, match="temperature"):
        SoftMutualKNN(temperature=0.0)
    with pytest.raises(InputError, match="k >= 2"):
        SoftCKNNA(k=1)
    with pytest.raises(InputError, match="NaN"):
        LinearCKA()(x.masked_fill(x > 0.5, float("nan")), y)
    with pytest.raises(InputError, match="at least 4"):
        UnbiasedCKA()(x[:3], y[:3])
