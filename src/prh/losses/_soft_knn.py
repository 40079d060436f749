"""Soft (temperature-smoothed) neighbourhoods: differentiable mutual kNN and CKNNA.

The hard metrics select each row's k nearest neighbours (largest inner products, self excluded). Here the
selection becomes a weight ``w_ij ∝ sigmoid((s_ij - t_i) / τ)`` (each row rescaled to sum to k), where ``t_i`` is
the midpoint between row i's k-th and (k+1)-th largest similarity. Every weight is smooth in the inputs (the threshold too: top-k values are
differentiable away from ties) and, as ``τ -> 0``, ``w_ij`` tends to the indicator ``j ∈ kNN(i)`` for every row
without a tie at its k-th neighbour — so the soft scores tend to :func:`prh.metrics.mutual_knn` and
:func:`prh.metrics.cknna` (docs/training.md tabulates the convergence).
"""

from __future__ import annotations

import torch
from torch import nn

from prh._validation import check_float, check_int
from prh.errors import InputError
from prh.losses._checks import check_batches
from prh.losses._hsic import hsic_biased, hsic_unbiased


def soft_neighbors(x: torch.Tensor, k: int, temperature: float, exclude_self: bool = True) -> torch.Tensor:
    """Soft k-nearest-neighbour membership of every pair, from inner products.

    Parameters
    ----------
    x : (B, D) float tensor.
    k : neighbours per row, ``1 <= k <= B - 2`` (self excluded) — the threshold needs a (k+1)-th neighbour.
    temperature : τ > 0, in units of the inner product (for L2-normalised rows, of the cosine).
    exclude_self : the item is never its own neighbour (its weight is 0), as in the hard metrics.

    Returns
    -------
    (B, B) tensor of non-negative weights, zero on the diagonal when ``exclude_self``; every row sums to k
    exactly (the sigmoids are rescaled to), so a large τ spreads the k neighbours evenly over all items (the
    score then sits at chance) and τ -> 0 gives the 0/1 indicator of the k nearest (no ties).
    """
    b = x.shape[0]
    sims = x @ x.T
    if exclude_self:
        eye = torch.eye(b, dtype=torch.bool, device=x.device)
        ranked = sims.masked_fill(eye, float("-inf"))
    else:
        ranked = sims
    top = torch.topk(ranked, k + 1, dim=1).values
    threshold = 0.5 * (top[:, k - 1] + top[:, k])
    weights = torch.sigmoid((sims - threshold[:, None]) / temperature)
    if exclude_self:
        weights = weights.masked_fill(eye, 0.0)
    return k * weights / weights.sum(dim=1, keepdim=True)


class _SoftNeighborhoods(nn.Module):
    def __init__(self, k: int = 10, temperature: float = 0.01, normalize: bool = True) -> None:
        super().__init__()
        self.k = check_int(k, "k", minimum=1, hint="neighbours per item")
        self.temperature = check_float(
            temperature, "temperature", low=0.0, inclusive=(False, True), hint="the soft selection's τ > 0"
        )
        self.normalize = bool(normalize)

    def _inputs(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = check_batches(x, y, 4, self.normalize)
        if self.k > x.shape[0] - 2:
            raise InputError(
                f"k={self.k} needs a batch of at least k + 2 = {self.k + 2} items (a (k+1)-th neighbour sets "
                f"the soft threshold), got B={x.shape[0]}; use a larger batch or a smaller k."
            )
        return x, y

    def extra_repr(self) -> str:
        return f"k={self.k}, temperature={self.temperature}, normalize={self.normalize}"


class SoftMutualKNN(_SoftNeighborhoods):
    """Soft mutual k-nearest-neighbour alignment: ``mean_i Σ_j w^x_ij w^y_ij / k`` with the soft memberships of
    :func:`soft_neighbors`; tends to :func:`prh.metrics.mutual_knn` as ``temperature -> 0``.

    Parameters
    ----------
    k : neighbours per item (``1 <= k <= B - 2``).
    temperature : τ of the soft selection, in cosine units when ``normalize`` (default 0.01). Small τ: close to
        the hard metric, sparse gradients; large τ: smooth, biased.
    normalize : L2-normalise rows first (default True), as :func:`prh.prepare` does before the hard metric.

    Shape
    -----
    ``forward(x, y)``: (B, D_x), (B, D_y) -> 0-d tensor >= 0 (at most 1 in the limit τ -> 0). Symmetric.
    Chance (independent batches) is about k/(B-1), as for the hard metric, and a very large τ gives exactly
    k/(B-1) whatever the inputs.
    """

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = self._inputs(x, y)
        wx = soft_neighbors(x, self.k, self.temperature)
        wy = soft_neighbors(y, self.k, self.temperature)
        return (wx * wy).sum(dim=1).mean() / self.k


class SoftCKNNA(_SoftNeighborhoods):
    """Soft CKNNA: CKA of the kernels masked to soft mutual neighbourhoods, tends to :func:`prh.metrics.cknna`
    (same k, ``unbiased``) as ``temperature -> 0``.

    ``HSIC(M∘K, M∘L) / sqrt(HSIC(W_x∘K, W_x∘K) HSIC(W_y∘L, W_y∘L))`` with K = XXᵀ, L = YYᵀ, the soft memberships
    W_x, W_y of :func:`soft_neighbors` and M = W_x∘W_y (in the hard metric, the indicator of mutual neighbours).

    Parameters
    ----------
    k : neighbours per item (``2 <= k <= B - 2``).
    temperature : τ of the soft selection (default 0.01, cosine units when ``normalize``).
    unbiased : the unbiased HSIC estimator and self excluded from the neighbourhoods (default True, as
        :func:`prh.metrics.cknna`); False: the biased ``tr(KHLH)``, self included.
    normalize : L2-normalise rows first (default True).

    Shape
    -----
    ``forward(x, y)``: (B, D_x), (B, D_y) -> 0-d tensor in about [-1, 1]. Symmetric.
    """

    def __init__(self, k: int = 10, temperature: float = 0.01, unbiased: bool = True, normalize: bool = True):
        super().__init__(k, temperature, normalize)
        if self.k < 2:
            raise InputError(f"k={k}: SoftCKNNA needs k >= 2 neighbours, as cknna does.")
        self.unbiased = bool(unbiased)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x, y = self._inputs(x, y)
        wx = soft_neighbors(x, self.k, self.temperature, exclude_self=self.unbiased)
        wy = soft_neighbors(y, self.k, self.temperature, exclude_self=self.unbiased)
        k, l = x @ x.T, y @ y.T  # noqa: E741
        mask = wx * wy
        hsic = hsic_unbiased if self.unbiased else hsic_biased
        cross = hsic(mask * k, mask * l)
        return cross / torch.sqrt(hsic(wx * k, wx * k) * hsic(wy * l, wy * l))
