"""Representational similarity analysis (Kriegeskorte et al. 2008).

Each representation is summarised by its representational dissimilarity matrix (RDM) over the N samples; the
score is the Spearman or Pearson correlation of the two RDMs' upper triangles (i < j, diagonal excluded).

The per-layer cache is the standardised (mean 0, unit norm) vector of the upper triangle (or of its ranks, with
ties given their average rank, for Spearman), so every pair of layers is one inner product and a whole sweep is
one matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prh._validation import check_choice
from prh.errors import InputError
from prh.metrics._common import score_pair
from prh.metrics.properties import NO, YES, MetricProperties
from prh.metrics.registry import MetricSpec, any_scale, register

#: Largest number of float64 elements stacked at once in the grid product (~1 GiB).
_STACK_ELEMENTS = 2**27


@dataclass(frozen=True)
class RdmCache:
    """Per-layer cache: (N (N-1) / 2,) float64 centred unit-norm upper triangle of the RDM (or of its ranks)."""

    vector: torch.Tensor


def _check_rsa_kwargs(n: int, rdm: str = "correlation", compare: str = "spearman") -> dict:
    rdm = check_choice(rdm, "rdm", ["correlation", "euclidean"])
    compare = check_choice(compare, "compare", ["spearman", "pearson"])
    if n < 3:
        raise InputError(f"RSA needs at least N=3 samples (an RDM with 3 or more distinct pairs), got N={n}.")
    return {"rdm": rdm, "compare": compare}


def rdm_upper(x: torch.Tensor, rdm: str = "correlation") -> torch.Tensor:
    """Upper triangle (i < j, row-major) of the (N, N) RDM of ``x`` ((N, D)), float64, length N (N-1) / 2.

    ``correlation``: 1 - Pearson correlation of rows i and j across features (needs D >= 2 and no constant row).
    ``euclidean``: ||x_i - x_j||_2.
    """
    x = x.to(torch.float64)
    n = x.shape[0]
    if rdm == "correlation":
        if x.shape[1] < 2:
            raise InputError("rdm='correlation' needs at least 2 features per sample; use rdm='euclidean'.")
        xc = x - x.mean(dim=1, keepdim=True)
        norms = xc.norm(dim=1, keepdim=True)
        scale = x.abs().amax(dim=1, keepdim=True).clamp_min(1e-300)
        bad = (norms <= 1e-12 * scale * x.shape[1] ** 0.5).flatten()
        if bool(bad.any()):
            raise InputError(
                f"rdm='correlation' is undefined for samples whose features are all equal "
                f"(rows {torch.nonzero(bad).flatten()[:5].tolist()}); use rdm='euclidean'."
            )
        xn = xc / norms
        d = 1.0 - xn @ xn.T
    else:
        sq = (x * x).sum(dim=1)
        d = (sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)).clamp_min(0.0).sqrt()
    iu = torch.triu_indices(n, n, offset=1, device=x.device)
    return d[iu[0], iu[1]]


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..M of the 1-D tensor ``v`` (float64), ties given their average rank (as scipy's rankdata)."""
    values, order = torch.sort(v)
    _, inverse, counts = torch.unique_consecutive(values, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)
    group_rank = ends - (counts.to(torch.float64) - 1.0) / 2.0
    ranks = torch.empty_like(v, dtype=torch.float64)
    ranks[order] = group_rank[inverse]
    return ranks


def _rsa_cache(x: torch.Tensor, rdm: str, compare: str) -> RdmCache:
    v = rdm_upper(x, rdm)
    if compare == "spearman":
        v = average_ranks(v)
    v = v - v.mean()
    norm = v.norm()
    if not float(norm) > 1e-12 * float(v.abs().max() + 1e-300) * v.numel() ** 0.5:
        raise InputError(
            "the RDM is constant (every pair of samples equally dissimilar), so its correlation with another "
            "RDM is undefined (0/0). Check for constant or duplicated features."
        )
    return RdmCache(v / norm)


def _rsa_grid(xs: Sequence[RdmCache], ys: Sequence[RdmCache], **_: object) -> torch.Tensor:
    per = xs[0].vector.numel()
    step = max(1, _STACK_ELEMENTS // per)
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    for i0 in range(0, len(xs), step):
        left = torch.stack([c.vector for c in xs[i0 : i0 + step]])
        for j0 in range(0, len(ys), step):
            right = torch.stack([c.vector for c in ys[j0 : j0 + step]])
            grid[i0 : i0 + left.shape[0], j0 : j0 + right.shape[0]] = (left @ right.T).clamp(-1.0, 1.0).cpu()
    return grid


def rsa(A: object, B: object, rdm: str = "correlation", compare: str = "spearman") -> float:
    """Representational similarity analysis: correlation of the two representational dissimilarity matrices.

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) torch tensors or numpy arrays, same N >= 3, used as given.
    rdm : ``"correlation"`` (1 - Pearson correlation between samples, across features; the rsatoolbox default)
        or ``"euclidean"`` (Euclidean distance between samples).
    compare : ``"spearman"`` (rank correlation, ties averaged) or ``"pearson"`` of the RDM upper triangles.

    Returns
    -------
    float in [-1, 1]; 1 for identical inputs and, with Spearman, for any strictly increasing transform of the
    dissimilarities. About 0 for independent inputs. Symmetric. Euclidean RDMs are invariant to orthogonal maps,
    translations and isotropic scaling; correlation RDMs to isotropic scaling and per-sample shifts/scales but not
    to rotations of the features. A constant RDM raises :class:`~prh.errors.InputError`.
    """
    return score_pair(RSA, A, B, rdm=rdm, compare=compare)


RSA = register(
    MetricSpec(
        name="rsa",
        display_name="RSA",
        properties=MetricProperties(
            definition="Spearman correlation of the upper triangles of the correlation-distance RDMs (options: euclidean, pearson)",
            value_range="[-1, 1]",
            symmetric=True,
            identity=True,
            orthogonal=NO,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=NO,
            null="≈ 0",
            cost="O(N² D + N² log N) per layer (RDM, ranks), O(N²) per pair",
            prefer="comparison with neuroscience RSA; Spearman ignores monotone distortions of distances",
        ),
        func=rsa,
        layer_cache=_rsa_cache,
        grid=_rsa_grid,
        check_kwargs=_check_rsa_kwargs,
        value_range=(-1.0, 1.0),
        symmetric=True,
        uses_k=False,
        scale_free=any_scale,
        null_expectation=lambda n, kw: 0.0,
        description="correlation (Spearman/Pearson) of the representational dissimilarity matrices",
        defaults={"rdm": "correlation", "compare": "spearman"},
        cache_bytes=lambda n, d, params: 8.0 * n * n * 3,
        memory_hint="RSA compares all N (N - 1) / 2 sample pairs; use fewer samples, or a kNN metric / linear CKA",
    )
)
