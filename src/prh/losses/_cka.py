"""Linear CKA and unbiased linear CKA as ``torch.nn.Module`` s: exact (CKA is smooth), so their values equal
:func:`prh.metrics.cka` / :func:`prh.metrics.unbiased_cka` and autograd gives the exact gradient."""

from __future__ import annotations

import torch
from torch import nn

from prh.losses._checks import check_batches
from prh.losses._hsic import hsic_biased, hsic_unbiased


def _cka(x: torch.Tensor, y: torch.Tensor, unbiased: bool) -> torch.Tensor:
    k, l = x @ x.T, y @ y.T  # noqa: E741
    hsic = hsic_unbiased if unbiased else hsic_biased
    kl, kk, ll = hsic(k, l), hsic(k, k), hsic(l, l)
    return kl / torch.sqrt(kk * ll)


class LinearCKA(nn.Module):
    """Linear CKA of two batches, differentiable: ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))``, K = XXᵀ, L = YYᵀ.

    Parameters
    ----------
    normalize : L2-normalise each row first (the paper's preprocessing, without the outlier clamp), default
        True. With False the inputs are used as given, as :func:`prh.metrics.cka` does.

    Shape
    -----
    ``forward(x, y)``: x (B, D_x), y (B, D_y), same B >= 2 -> 0-d tensor in [0, 1]; 1 for inputs equal up to an
    orthogonal map and isotropic scaling. Symmetric. Minimise ``1 - LinearCKA()(x, y)`` to raise alignment.
    """

    unbiased = False
    min_batch = 2

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.normalize = bool(normalize)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = check_batches(x, y, self.min_batch, self.normalize)
        return _cka(x, y, self.unbiased)

    def extra_repr(self) -> str:
        return f"normalize={self.normalize}"


class UnbiasedCKA(LinearCKA):
    """Linear CKA with the unbiased HSIC estimator (Song et al. 2012), differentiable; equals
    :func:`prh.metrics.unbiased_cka`. About 0 in expectation for independent batches, 1 for identical ones.

    Shape
    -----
    ``forward(x, y)``: x (B, D_x), y (B, D_y), same B >= 4 -> 0-d tensor in about [-1, 1].
    """

    unbiased = True
    min_batch = 4
