"""prh.prepare: exact quantile clamp (same threshold as the reference's full sort) and row normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import prh
import reference_impl as reference
from prh._prepare import quantile_threshold
from prh.errors import InputError


@pytest.mark.parametrize("q", [0.5, 0.95, 0.999])
def test_threshold_equals_reference_sort(q):
    x = torch.randn(37, 5, 23, generator=torch.Generator().manual_seed(0)) * 3
    ours = prh.prepare(x, q=q, normalize=False)
    assert torch.equal(ours, reference.remove_outliers_sort(x, q))
    assert quantile_threshold([x], q) == float(x.abs().flatten().sort().values[int(q * x.numel())])


def test_one_threshold_over_all_layers_of_a_list():
    g = torch.Generator().manual_seed(1)
    layers = [torch.randn(10, 4, generator=g), 10 * torch.randn(10, 7, generator=g)]
    out = prh.prepare(layers, q=0.9, normalize=False)
    t = quantile_threshold(layers, 0.9)
    assert t == float(torch.cat([l.flatten() for l in layers]).abs().sort().values[int(0.9 * 110)])  # noqa: E741
    assert max(float(o.abs().max()) for o in out) == pytest.approx(t)
    assert isinstance(out, list) and [o.shape for o in out] == [(10, 4), (10, 7)]


def test_rows_are_unit_norm_and_shape_kept():
    x = np.random.default_rng(2).standard_normal((12, 3, 8)).astype(np.float32)
    out = prh.prepare(x)
    assert out.shape == (12, 3, 8) and out.dtype == torch.float32
    np.testing.assert_allclose(out.norm(dim=-1).numpy(), 1.0, atol=1e-6)


def test_q_one_disables_clamp():
    x = torch.randn(8, 4)
    x[0, 0] = 1000.0
    assert float(prh.prepare(x, q=1.0, normalize=False).max()) == 1000.0


@pytest.mark.parametrize("q", [0, -0.1, 1.5, True, "0.9"])
def test_bad_q(q):
    with pytest.raises(InputError, match="q="):
        prh.prepare(torch.randn(5, 3), q=q)


def test_nan_refused():
    x = torch.randn(5, 2, 3)
    x[1, 1, 1] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        prh.prepare(x)
