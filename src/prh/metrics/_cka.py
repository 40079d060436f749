"""Centred kernel alignment (Kornblith et al. 2019) with biased or unbiased (Song et al. 2012) HSIC.

CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)). With the linear kernel it is invariant to orthogonal maps
and isotropic scaling of either input, and to permuting samples of both alike. Biased CKA of independent inputs
is clearly above 0 at small N; unbiased CKA is ~0 in expectation.

Two exact paths give the same numbers (to float rounding; tested): ``path="gram"`` centres each layer's (N, N)
kernel once (fast for N up to a few thousand, any kernel); ``path="features"`` (linear kernel only) computes every
HSIC term from feature-space products (:mod:`prh.metrics.feature_space`): O(N D_x D_y) time per layer pair and no
(N, N) matrix, for galleries of 10^4-10^6 items. ``path="auto"`` (default) takes the features path for the linear
kernel above :data:`LARGE_N` samples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from prh._validation import check_choice, check_float
from prh.errors import InputError
from prh.memory import HEADROOM, available_bytes
from prh.metrics._common import score_pair
from prh.metrics.feature_space import FeatureMoments, hsic_terms, moments
from prh.metrics.kernels import center, gram, map_grams, require_positive, u_center
from prh.metrics.null import NullEngine, inverse_permutation, permute_square
from prh.metrics.properties import NO, YES, MetricProperties
from prh.metrics.registry import MetricSpec, register

#: Above this many samples the linear kernel takes the feature-space path by default (an (N, N) float64 kernel per
#: layer is 128 MiB at N=4096 and grows as N^2).
LARGE_N = 4096
#: The two exact computations of CKA (see the module docstring).
PATHS = ("auto", "gram", "features")

#: Largest number of float64 elements stacked at once in the sweep's inner-product grid (~1 GiB).
_STACK_ELEMENTS = 2**27
#: Largest stacked copy (bytes) of the fixed side's kernel triangles made by :class:`KernelEngine`.
STACK_BYTES = 2**30
#: Upper bound on float64 elements of the permuted kernels gathered per batch (B * L_moving * N (N + 1) / 2).
KERNEL_ELEMENTS = 2**25


@dataclass(frozen=True)
class CenteredKernel:
    """Per-layer cache: the centred (N, N) float64 kernel and its squared Frobenius norm (self-HSIC)."""

    centered: torch.Tensor
    self_hsic: float


def _check_cka_kwargs(
    n: int, kernel: str = "linear", sigma: float = 1.0, unbiased: bool = False, path: str = "auto"
) -> dict:
    kernel = {"ip": "linear"}.get(kernel, kernel)
    kernel = check_choice(kernel, "kernel", ["linear", "rbf"])
    sigma = check_float(
        sigma, "sigma", 0.0, inclusive=(False, True), hint="the RBF bandwidth, a positive number"
    )
    if unbiased and n < 4:
        raise InputError(
            f"unbiased HSIC needs at least N=4 samples, got N={n}; use unbiased=False or more data."
        )
    path = check_choice(path, "path", PATHS)
    if path == "features" and kernel != "linear":
        raise InputError(
            f"path='features' computes CKA from feature-space products, which exist for the linear kernel only; "
            f"kernel={kernel!r} needs path='gram' (or 'auto')."
        )
    if path == "auto":
        path = "features" if kernel == "linear" and n > LARGE_N else "gram"
    return {"kernel": kernel, "sigma": float(sigma), "unbiased": bool(unbiased), "path": path}


def _kernel_cache(
    x: torch.Tensor, kernel: str, sigma: float, unbiased: bool, path: str
) -> CenteredKernel | FeatureMoments:
    if path == "features":
        return moments(x)
    return _centered_kernel(gram(x, kernel, sigma), unbiased)


def _kernel_caches(
    layers: Sequence[torch.Tensor], kernel: str, sigma: float, unbiased: bool, path: str
) -> list[CenteredKernel] | list[FeatureMoments]:
    if path == "features":
        return [moments(x) for x in layers]
    return map_grams(layers, lambda _, k: _centered_kernel(k, unbiased), kernel, sigma)


def _centered_kernel(k: torch.Tensor, unbiased: bool) -> CenteredKernel:
    c = u_center(k) if unbiased else center(k)
    self_hsic = float((c * c).sum())
    scale = float(k.to(torch.float64).norm()) ** 2
    if self_hsic <= 1e-20 * max(scale, 1e-300):
        self_hsic = 0.0
    return CenteredKernel(c, self_hsic)


def _permute_kernel(
    cache: CenteredKernel | FeatureMoments, perm: torch.Tensor, inv: torch.Tensor
) -> CenteredKernel | FeatureMoments:
    """The cache of ``Y[perm]``: ``K[perm][:, perm]``, or the rows and row norms of the feature-space cache
    (centring commutes with permutations; the self-HSIC is unchanged)."""
    if isinstance(cache, FeatureMoments):
        return FeatureMoments(
            cache.x.index_select(0, perm), cache.mean, cache.row_sq.index_select(0, perm), cache.gram_norm
        )
    return CenteredKernel(permute_square(cache.centered, perm), cache.self_hsic)


def inner_grid(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> torch.Tensor:
    """(Lx, Ly) float64 grid of Frobenius inner products <xs[i], ys[j]>, in chunks that bound memory."""
    per = xs[0].numel()
    step = max(1, _STACK_ELEMENTS // per)
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    for i0 in range(0, len(xs), step):
        left = torch.stack([m.reshape(-1) for m in xs[i0 : i0 + step]])
        for j0 in range(0, len(ys), step):
            right = torch.stack([m.reshape(-1) for m in ys[j0 : j0 + step]])
            grid[i0 : i0 + left.shape[0], j0 : j0 + right.shape[0]] = (left @ right.T).cpu()
    return grid


def _cka_grid(
    xs: Sequence[CenteredKernel] | Sequence[FeatureMoments],
    ys: Sequence[CenteredKernel] | Sequence[FeatureMoments],
    unbiased: bool = False,
    path: str = "gram",
    **_: object,
) -> torch.Tensor:
    if path == "features":
        return _feature_grid(xs, ys, unbiased)
    for side, caches in (("A", xs), ("B", ys)):
        for idx, c in enumerate(caches):
            require_positive(c.self_hsic, f"HSIC({side}, {side}) of layer {idx}")
    hsic = inner_grid([c.centered for c in xs], [c.centered for c in ys])
    norm_x = torch.tensor([c.self_hsic for c in xs], dtype=torch.float64).sqrt()
    norm_y = torch.tensor([c.self_hsic for c in ys], dtype=torch.float64).sqrt()
    return hsic / (norm_x[:, None] * norm_y[None, :])


def _feature_grid(
    xs: Sequence[FeatureMoments],
    ys: Sequence[FeatureMoments],
    unbiased: bool,
    perm: torch.Tensor | None = None,
) -> torch.Tensor:
    """CKA grid from feature-space products (:func:`prh.metrics.feature_space.hsic_terms`)."""
    cross, self_x, self_y = hsic_terms(xs, ys, unbiased, perm)
    for side, caches, selfs in (("A", xs, self_x), ("B", ys, self_y)):
        for idx, (c, value) in enumerate(zip(caches, selfs.tolist())):
            # the same rounding floor as the (N, N) path: a constant layer leaves only cancellation residue
            require_positive(
                value if value > 1e-20 * max(c.gram_norm, 1e-300) else 0.0,
                f"HSIC({side}, {side}) of layer {idx}",
            )
    return cross / (self_x.sqrt()[:, None] * self_y.sqrt()[None, :])


class FeatureSpaceEngine(NullEngine):
    """Null grids of linear CKA on the feature-space path: ``Xc^T Yc[perm]`` accumulated over row blocks.

    One permutation at a time (memory stays O(D_x D_y + block D), as for the observed grid); each costs one
    feature-space sweep, O(Lx Ly N D_x D_y).
    """

    batch_size = 1

    def __init__(self, xs: Sequence[FeatureMoments], ys: Sequence[FeatureMoments], params: dict) -> None:
        self.xs, self.ys, self.unbiased = list(xs), list(ys), params["unbiased"]

    def grids(self, perms: torch.Tensor) -> torch.Tensor:
        return torch.stack([_feature_grid(self.xs, self.ys, self.unbiased, perm) for perm in perms])


def _cka_null_engine(xs: Sequence, ys: Sequence, params: dict) -> NullEngine | None:
    """The spec's ``null_engine``: the engine of the path the caches were built on; None (the generic engine) when
    :class:`KernelEngine`'s tables would not fit in the available memory."""
    if params.get("path") == "features":
        return FeatureSpaceEngine(xs, ys, params)
    if KernelEngine.table_bytes(xs, ys) > HEADROOM * (available_bytes(xs[0].centered.device) or float("inf")):
        return None
    return KernelEngine(xs, ys, params)


class KernelEngine(NullEngine):
    """Null grids of CKA on the Gram path: ``<Kx_i, P Ky_j P^T> / sqrt(HSIC_xx HSIC_yy)`` in float64.

    Both centred kernels are symmetric, so each inner product is a sum over the upper triangle ``a <= b`` of the
    fixed side (off-diagonal entries counted twice): M = N (N + 1) / 2 terms instead of N^2. The side with fewer
    layers is the moving one: its kernels are stored once as an (N*N, L_moving) table with the layers contiguous,
    and a batch of B permutations reads that table at the permuted positions ``(perm[a], perm[b])`` (one row
    gather, (M, B * L_moving)); one matrix product with the fixed side's stacked (L_fixed, M) triangles then gives
    all B grids. Permuting X by the inverse permutation is the same as permuting Y:
    ``<Kx, P Ky P^T> = <P^T Kx P, Ky>``. Per permutation: a gather of L_moving * M values and 2 Lx Ly M flops.

    The fixed side is stacked when it fits in :data:`STACK_BYTES`, otherwise each of its layers is multiplied
    separately; the gathered block holds at most :data:`KERNEL_ELEMENTS` values.
    """

    def __init__(self, xs: Sequence[CenteredKernel], ys: Sequence[CenteredKernel], params: dict) -> None:
        self.n = n = xs[0].centered.shape[0]
        self.device = xs[0].centered.device
        self.lx, self.ly = len(xs), len(ys)
        self.swap = self.lx < self.ly  # move (gather) the side with fewer layers
        fixed, moving = (ys, xs) if self.swap else (xs, ys)
        rows, cols = torch.triu_indices(n, n, device=self.device)
        self.rows, self.cols = rows, cols
        self.index_dtype = torch.int32 if n * n < 2**31 else torch.int64  # half the index traffic
        flat_positions = rows * n + cols
        # fixed side: K_ab + K_ba above the diagonal, K_aa on it; moving side: (K + K^T) / 2. A kernel that is not
        # exactly symmetric (an RBF kernel from float32 distances) then still gives <Kx, Ky> up to the product of
        # the two asymmetries, not the first one alone. Halving and doubling are exact.
        halve = torch.where(rows == cols, 0.5, 1.0).to(torch.float64)
        tri = [(c.centered + c.centered.T).reshape(-1).index_select(0, flat_positions) * halve for c in fixed]
        m = flat_positions.numel()
        self.left = torch.stack(tri) if len(tri) * m * 8 <= STACK_BYTES else tri
        table = torch.stack([(c.centered + c.centered.T) * 0.5 for c in moving], dim=-1)
        self.table = table.reshape(n * n, len(moving))
        nx = torch.tensor([c.self_hsic for c in xs], dtype=torch.float64).sqrt()
        ny = torch.tensor([c.self_hsic for c in ys], dtype=torch.float64).sqrt()
        self.norm = nx[None, :, None] * ny[None, None, :]  # (1, Lx, Ly)
        self.batch_size = max(1, KERNEL_ELEMENTS // max(1, len(moving) * m))

    @staticmethod
    def table_bytes(xs: Sequence[CenteredKernel], ys: Sequence[CenteredKernel]) -> float:
        """Memory of the engine's copies: the moving side's (N*N, L) table, the fixed side's triangles, and the
        gathered block of one batch."""
        n = xs[0].centered.shape[0]
        moving, fixed = sorted((len(xs), len(ys)))
        return 8.0 * (n * n * moving + n * (n + 1) / 2 * fixed + KERNEL_ELEMENTS)

    def _gather(self, perms: torch.Tensor) -> torch.Tensor:
        """(M, B * L_moving): the moving side's kernels at ``(perm[a], perm[b])`` for the triangle's (a, b)."""
        # (N, B): one row per sample, the batch contiguous
        columns = perms.to(self.index_dtype).T.contiguous()
        index = (columns.index_select(0, self.rows) * self.n + columns.index_select(0, self.cols)).view(-1)
        if self.table.device.type == "cpu":  # numpy's row gather is ~1.5-2x faster than index_select here
            out = np.take(self.table.numpy(), index.numpy(), axis=0)
            return torch.from_numpy(out).view(index.numel() // perms.shape[0], -1)
        return self.table.index_select(0, index.long()).view(index.numel() // perms.shape[0], -1)

    def grids(self, perms: torch.Tensor) -> torch.Tensor:
        perms = perms.to(self.device)
        if self.swap:
            perms = inverse_permutation(perms)
        b = perms.shape[0]
        right = self._gather(perms)
        if isinstance(self.left, torch.Tensor):
            hsic = self.left @ right  # (L_fixed, B * L_moving)
        else:
            hsic = torch.stack([row @ right for row in self.left])
        hsic = hsic.cpu().view(hsic.shape[0], b, -1)  # (L_fixed, B, L_moving)
        grid = hsic.permute(1, 2, 0) if self.swap else hsic.permute(1, 0, 2)  # (B, Lx, Ly)
        return grid / self.norm


def cka(
    A: object,
    B: object,
    kernel: str = "linear",
    sigma: float = 1.0,
    unbiased: bool = False,
    path: str = "auto",
) -> float:
    """Centred kernel alignment.

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) arrays, same N, used as given.
    kernel : ``"linear"`` (inner products; ``"ip"`` accepted as in the reference) or ``"rbf"``.
    sigma : RBF bandwidth (``exp(-d^2 / (2 sigma^2))``).
    unbiased : use Song et al.'s unbiased HSIC estimator (needs N >= 4).
    path : ``"gram"`` ((N, N) kernels), ``"features"`` (linear kernel: feature-space products, no (N, N) matrix;
        for large N) or ``"auto"`` (features above :data:`LARGE_N` samples). Both give the same number.

    Returns
    -------
    float; biased CKA lies in [0, 1], unbiased CKA in about [-1, 1]; 1 for identical inputs. Symmetric.
    Constant features (zero self-HSIC) raise :class:`~prh.errors.InputError`. No ``+1e-6`` in the denominator
    (the reference's gives 0.999985 for identical unbiased inputs).
    """
    return score_pair(CKA, A, B, kernel=kernel, sigma=sigma, unbiased=unbiased, path=path)


def unbiased_cka(
    A: object, B: object, kernel: str = "linear", sigma: float = 1.0, path: str = "auto"
) -> float:
    """CKA with the unbiased HSIC estimator; ~0 in expectation for independent inputs. See :func:`cka`."""
    return score_pair(UNBIASED_CKA, A, B, kernel=kernel, sigma=sigma, unbiased=True, path=path)


def _check_unbiased_kwargs(
    n: int, kernel: str = "linear", sigma: float = 1.0, unbiased: bool = True, path: str = "auto"
) -> dict:
    if unbiased is not True:
        raise InputError(
            "unbiased_cka always uses the unbiased estimator; call cka(..., unbiased=False) instead."
        )
    return _check_cka_kwargs(n, kernel=kernel, sigma=sigma, unbiased=True, path=path)


def _cache_bytes(n: int, d: int, params: dict) -> float:
    """One layer's cache: the centred (N, N) float64 kernel plus the Gram it is made from; O(N) on features."""
    if params["path"] == "features":
        return 8.0 * (2 * n + d * d)
    return 8.0 * n * n * 2


#: MetricSpec fields shared by both CKA entries (one cache, one grid, one permutation rule, one null engine).
_CKA_SPEC_FIELDS = {
    "layer_cache": _kernel_cache,
    "layer_caches": _kernel_caches,
    "grid": _cka_grid,
    "permute_cache": _permute_kernel,
    "null_engine": _cka_null_engine,
    "cache_bytes": _cache_bytes,
    "memory_hint": "use path='features' (linear kernel: no N x N matrix), or fewer samples for the RBF kernel",
    "value_range": (-1.0, 1.0),
    "symmetric": True,
    "uses_k": False,
    "scale_free": lambda params: params["kernel"] == "linear",  # the RBF bandwidth is absolute
}

CKA = register(
    MetricSpec(
        name="cka",
        display_name="CKA",
        properties=MetricProperties(
            definition="HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), biased HSIC, linear kernel (RBF optional)",
            value_range="[0, 1]",
            symmetric=True,
            identity=True,
            orthogonal=YES,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=YES,
            null="> 0, grows with D/N (biased)",
            cost="O(N² D) per layer (centred Gram), O(N²) per pair, or O(N D²) per layer and O(N Dₓ D_y) per pair with no N×N matrix (path='features', the default above N = 4096)",
            prefer="global geometry, comparability with the literature; use unbiased_cka when D is not ≪ N",
        ),
        func=cka,
        check_kwargs=_check_cka_kwargs,
        description="centred kernel alignment (linear or RBF kernel, biased or unbiased HSIC)",
        defaults={"kernel": "linear", "sigma": 1.0, "unbiased": False, "path": "auto"},
        # biased HSIC of two centred PSD kernels is tr(HKH HLH) >= 0: CKA cannot go below 0
        **{**_CKA_SPEC_FIELDS, "value_range": (0.0, 1.0)},
    )
)
UNBIASED_CKA = register(
    MetricSpec(
        name="unbiased_cka",
        display_name="unbiased CKA",
        properties=MetricProperties(
            definition="CKA with Song et al.'s unbiased HSIC (U-centred Grams)",
            value_range="≈ [-1, 1]",
            symmetric=True,
            identity=True,
            orthogonal=YES,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=YES,
            null="≈ 0",
            cost="O(N² D) per layer, O(N²) per pair, or O(N D²) per layer and O(N Dₓ D_y) per pair with no N×N matrix (path='features', the default above N = 4096)",
            prefer="the default global metric: no small-N / large-D bias; needs N ≥ 4",
        ),
        func=unbiased_cka,
        check_kwargs=_check_unbiased_kwargs,
        null_expectation=lambda n, kw: 0.0,
        description="CKA with Song et al.'s unbiased HSIC (≈0 for independent inputs)",
        defaults={"kernel": "linear", "sigma": 1.0, "path": "auto"},
        **_CKA_SPEC_FIELDS,
    )
)
