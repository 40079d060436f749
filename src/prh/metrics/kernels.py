"""Gram matrices and their centring, the building blocks of CKA and CKNNA.

Centring is done in float64: the unbiased HSIC estimator subtracts large, nearly equal terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

from prh.errors import InputError

T = TypeVar("T")


def inner_products(x: torch.Tensor) -> torch.Tensor:
    """(N, N) matrix ``x @ x.T`` of the rows of ``x`` ((N, D)), in ``x``'s dtype and device; exactly symmetric.

    On the CPU (float32/float64) the product goes through numpy's BLAS, which recognises the ``A @ A.T`` pattern and
    calls the symmetric rank-k update (syrk): half the multiply-adds of a general product, ~1.6x faster at
    N=1024, D=4096. Elsewhere (GPU, other dtypes, tensors that need gradients) it is ``torch.mm``.
    """
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and not x.requires_grad:
        a = x.numpy()
        return torch.from_numpy(a @ a.T)
    return x @ x.T


def gram(x: torch.Tensor, kernel: str = "linear", sigma: float = 1.0) -> torch.Tensor:
    """(N, N) kernel matrix of the rows of ``x`` ((N, D)), in ``x``'s dtype and device.

    ``linear``: inner products ``x @ x.T``. ``rbf``: ``exp(-||x_i - x_j||^2 / (2 sigma^2))`` (Euclidean
    distances from :func:`torch.cdist`, as the reference).
    """
    if kernel == "linear":
        return inner_products(x)
    return torch.exp(-(torch.cdist(x, x) ** 2) / (2.0 * sigma**2))


#: Memory for the Gram matrices that :func:`map_grams` computes ahead of finishing them.
GRAM_CHUNK_BYTES = 512 * 2**20


def map_grams(
    layers: Sequence[torch.Tensor],
    finish: Callable[[torch.Tensor, torch.Tensor], T],
    kernel: str = "linear",
    sigma: float = 1.0,
) -> list[T]:
    """``[finish(x, gram(x)) for x in layers]``, computing the Gram matrices of a chunk of layers before finishing any.

    Same results as the plain loop. On the CPU, BLAS (numpy's threads, for the syrk) and torch's OpenMP pool
    (centring, top-k) each spin-wait for a moment after their work; alternating them layer after layer makes them
    fight over the cores (~25% of a 38-layer sweep on 2 cores). Chunks hold at most GRAM_CHUNK_BYTES of Grams.
    """
    out: list[T] = []
    if not layers:
        return out
    n = layers[0].shape[0]
    step = max(1, GRAM_CHUNK_BYTES // max(1, n * n * layers[0].element_size()))
    for start in range(0, len(layers), step):
        chunk = layers[start : start + step]
        grams = [gram(x, kernel, sigma) for x in chunk]
        for x in chunk:
            out.append(finish(x, grams.pop(0)))
    return out


#: :func:`fit_scale` leaves a layer alone while N * D * max|x|^2 stays 2^HEADROOM below the largest value of its dtype
#: and max|x|^2 stays 2^HEADROOM above the smallest normal one (so inner products and their sums neither overflow
#: nor lose digits to subnormals); ordinary features are many orders of magnitude inside these bounds.
HEADROOM = 24


def fit_scale(x: torch.Tensor, scale_free: bool, what: str = "the features") -> torch.Tensor:
    """``x`` ((N, D)) itself, or ``x`` times a power of two when its inner products would overflow or underflow.

    Gram matrices, centring sums and row norms of features around 1e30 (float32) or 1e200 (float64) overflow to
    inf, and those of features around 1e-30 / 1e-200 underflow to 0; a metric would then see NaN or zero kernels and
    blame "constant features". Multiplying by 2^e changes no digit of any entry, so a metric whose score does not
    depend on the scale of its input (``scale_free``) gets exactly the score of the rescaled features. Only float32
    and float64 layers are checked; a layer inside the bounds is returned as is (the same object, so results on
    ordinary features are bit for bit unchanged).

    Raises
    ------
    InputError
        When the layer is out of bounds and the metric (with its options) depends on the scale: the message names
        the overflow (or underflow) and the fix.
    """
    if x.dtype not in (torch.float32, torch.float64) or x.numel() == 0:
        return x
    info = torch.finfo(x.dtype)
    big = float(x.abs().max())
    if big == 0.0 or not math.isfinite(big):
        return x  # zero or non-finite features are refused by the metric's own checks, with their own message
    reach = big * big * x.shape[0] * x.shape[-1]  # Python floats: inf or 0.0 here mean far out of bounds
    if reach <= info.max * 2.0**-HEADROOM and big * big >= info.tiny * 2.0**HEADROOM:
        return x
    if not scale_free:
        kind = "overflow" if big > 1.0 else "underflow"
        raise InputError(
            f"{what} reach |x| = {big:.3g}: their inner products {kind} {str(x.dtype).removeprefix('torch.')} "
            f"(N * D * max|x|^2 = {reach:.3g}; the type spans {info.tiny:.3g} .. {info.max:.3g}), and with these "
            "options the score depends on the scale of the features, so it cannot be rescaled for you. Divide "
            "the features by a constant first (e.g. by their largest absolute value, or use prh.prepare) and "
            "choose scale-dependent options (such as sigma) for the new scale."
        )
    exponent = -math.frexp(big)[1]  # big * 2^exponent lies in [0.5, 1)
    half = exponent // 2  # two exact steps: 2^exponent itself may not be representable in the dtype
    return x * 2.0**half * 2.0 ** (exponent - half)


def center(k: torch.Tensor) -> torch.Tensor:
    """Doubly centred kernel ``H K H`` with ``H = I - 11^T / N``, in float64.

    ``<center(K), center(L)>`` is the biased HSIC ``tr(K H L H)`` (no 1/(N-1)^2 factor, it cancels in CKA).
    """
    k = k.to(torch.float64)
    row = k.mean(dim=1, keepdim=True)
    col = k.mean(dim=0, keepdim=True)
    return k - row - col + k.mean()


def u_center(k: torch.Tensor) -> torch.Tensor:
    """U-centred kernel (Székely & Rizzo 2014), float64, zero diagonal.

    For ``K~`` = K with its diagonal set to 0, off-diagonal entries are
    ``K~_ij - r_i/(N-2) - c_j/(N-2) + S/((N-1)(N-2))`` (row sums r, column sums c, total S).
    ``<u_center(K), u_center(L)> / (N (N-3))`` equals Song et al.'s unbiased HSIC estimator (Eq. 5 of
    JMLR 13, 2012), so each unbiased HSIC of a layer sweep is one inner product. Needs N >= 4.
    """
    n = k.shape[0]
    kt = k.to(torch.float64).clone()
    kt.fill_diagonal_(0.0)
    row = kt.sum(dim=1, keepdim=True) / (n - 2)
    col = kt.sum(dim=0, keepdim=True) / (n - 2)
    out = kt - row - col + kt.sum() / ((n - 1) * (n - 2))
    out.fill_diagonal_(0.0)
    return out


#: Rows count as one point when they are this close, relative to the first row's norm (float rounding).
SPREAD_RTOL = 1e-6


def require_spread(x: torch.Tensor, gram: torch.Tensor | None = None, what: str = "the features") -> None:
    """Raise :class:`InputError` when every row of ``x`` ((N, D)) is the same point (zero variance across samples).

    Neighbours among identical points are arbitrary ties, so neighbour-based scores of such a layer are undefined
    (they would come out as 1.0 for two constant inputs). With the layer's linear Gram matrix the common case costs
    O(N): all rows equal implies ``G[0, j] == G[0, 0] == G[j, j]`` for every j, and only when that holds (to a loose
    tolerance) are the rows themselves compared, O(N D). Rows within ``SPREAD_RTOL`` of the first row's norm
    count as equal.
    """
    if gram is not None:
        ref = gram[0, 0]
        tol = 1e-4 * ref.abs() + torch.finfo(gram.dtype).tiny
        if bool((gram[0] - ref).abs().max() > tol) or bool((gram.diagonal() - ref).abs().max() > tol):
            return
    spread = float((x - x[0]).norm(dim=1).max())
    if spread <= SPREAD_RTOL * float(x[0].norm()):
        raise InputError(
            f"{what} are constant: all {x.shape[0]} samples are the same point, so their nearest neighbours are "
            "arbitrary ties and the score is undefined. Remove constant layers (e.g. a position-only input "
            "embedding) or check that the inputs differ."
        )


def require_positive(value: float, what: str) -> None:
    """Raise :class:`InputError` when a CKA-type normaliser ``value`` is not positive (constant features)."""
    if not value > 0.0:
        raise InputError(
            f"{what} is {value:.3g}: the features are constant (zero variance) or degenerate, so the "
            f"normalised score is undefined (0/0). Remove constant layers or check the inputs."
        )
