"""Blind matching: recover the pairing of two sets of n items from their two kernels alone.

Given two (n, n) kernels ``a`` (items of one model) and ``b`` (the same items, in an unknown order, of another), find
the permutation ``perm`` (item ``i`` of ``a`` -> row ``perm[i]`` of ``b``) that best aligns them. Methods
(:data:`METHODS`):

* ``qap`` — quadratic assignment, maximise ``sum_ij a[i, j] * b[perm[i], perm[j]]`` with scipy's FAQ
  (:func:`scipy.optimize.quadratic_assignment`): one run from the barycentre plus ``restarts - 1`` from random
  doubly-stochastic starts, the best objective kept. With ``seeds`` (known pairs, scipy's ``partial_match``) it is
  seeded graph matching; a seed is never reassigned.
* ``gw`` — exact Gromov–Wasserstein (POT, ``ot.gromov.gromov_wasserstein``, square loss, conditional gradient with
  exact OT steps) from the product coupling, rounded to a permutation by the Hungarian algorithm on the coupling.
* ``gw-entropic`` — entropic Gromov–Wasserstein (``ot.gromov.entropic_gromov_wasserstein``, projected gradient with
  Sinkhorn steps, ``epsilon`` relative to the standardised kernels), rounded the same way.
* ``signature`` — no optimisation over permutations: each item's signature is its kernel row sorted (the
  distribution of its similarities to all other items: degree and spread), and the Hungarian algorithm matches
  signatures by Euclidean distance. Invariant to the hidden order by construction.

Kernels are standardised first (:func:`kernel`): linear kernel of the features, shifted to zero off-diagonal mean,
diagonal zeroed, divided by the standard deviation of its off-diagonal entries — so both sides are on one scale and ``epsilon``
means the same for every model. Square-loss GW on such kernels and QAP minimise the same objective up to constants
(``sum (a_ij - b_kl)^2`` = const - 2 ``sum a_ij b_kl`` over permutations); they differ in the solver (and the
relaxation).

Every method also returns a score matrix ``scores[i, c]`` (higher = item ``i`` more likely row ``c``) for top-k
accuracy: the assigned row ``perm[i]`` first, then the others by the method's own ranking — the coupling for GW, the
negative signature distance for ``signature``, and for QAP the correlation of item ``i``'s kernel row with row ``c``
of ``b`` read through the solution (how well ``c`` fits ``i`` given everyone else's assignment). So top-1 accuracy is
the accuracy and top-k never falls below it.

With torch tensors on a CUDA device, POT runs on the GPU (its torch backend): :func:`match` moves the two kernels to
``device`` for the GW methods. QAP and the signature baseline run in scipy on the CPU.

Cost: QAP (FAQ) and GW are O(n^3) per iteration (a linear assignment or an exact OT problem per step); the
signature baseline is O(n^2 log n) + one O(n^3) assignment.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment, quadratic_assignment

from prh._validation import check_choice, check_float, check_int
from prh.errors import InputError

#: The matching methods, in report order.
METHODS = ("qap", "gw", "gw-entropic", "signature")
#: Outer iterations of exact GW (POT's conditional gradient) and of entropic GW (projected gradient; on pairs with
#: no common structure it does not converge, and each step is a Sinkhorn run, so it is capped lower).
GW_MAX_ITER = 50
ENTROPIC_MAX_ITER = 30
#: Stopping tolerance of both GW solvers (coupling change / loss change) and of the Sinkhorn steps.
GW_TOL = 1e-7
#: Sinkhorn iterations per step of entropic GW.
SINKHORN_MAX_ITER = 100


@dataclass(frozen=True)
class Matching:
    """A solved matching.

    Attributes
    ----------
    perm : int64 array (n,)
        ``perm[i]``: the row of ``b`` item ``i`` of ``a`` is matched to (a permutation of 0..n-1).
    scores : float64 array (n, n)
        ``scores[i, c]``: how well row ``c`` of ``b`` fits item ``i`` (higher is better), for top-k accuracy.
    objective : float
        ``sum_ij a[i, j] * b[perm[i], perm[j]]`` of the returned permutation (higher = better aligned kernels).
    """

    perm: np.ndarray
    scores: np.ndarray
    objective: float


def kernel(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Standardised linear kernel of features ``x`` (n, D): ``K = x x^T`` minus the mean of its off-diagonal
    entries, diagonal zeroed, divided by their standard deviation. Float64 (n, n), symmetric; invariant to
    rotations and to the scale of ``x``.

    Not double-centred on purpose: after double centring every row sums to zero, so the gradient of the QAP/GW
    objective at the uninformative start (the barycentre, the product coupling) vanishes and FAQ / conditional
    gradient stay there; the rows' sums (each item's typicality) are what breaks the tie.

    Raises
    ------
    InputError
        Fewer than 3 rows, or a constant kernel (all items alike: nothing to match).
    """
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if t.ndim != 2 or t.shape[0] < 3:
        raise InputError(f"features must be (n, D) with n >= 3 items to match, got shape {tuple(t.shape)}.")
    k = (t @ t.T).numpy()
    n = k.shape[0]
    off = ~np.eye(n, dtype=bool)
    k = k - k[off].mean()
    np.fill_diagonal(k, 0.0)
    sd = float(k[off].std())
    if not np.isfinite(sd) or sd <= 1e-12:
        raise InputError("the features give a constant kernel (all items alike); there is nothing to match.")
    return k / sd


def objective(a: np.ndarray, b: np.ndarray, perm: np.ndarray) -> float:
    """``sum_ij a[i, j] * b[perm[i], perm[j]]``: the QAP objective of ``perm`` (higher = better aligned)."""
    return float((a * b[np.ix_(perm, perm)]).sum())


def _check_seeds(seeds: object, n: int) -> np.ndarray:
    """Known pairs as an int (s, 2) array ``[item of a, row of b]``, each side distinct and in range, s < n."""
    if seeds is None:
        return np.zeros((0, 2), dtype=np.int64)
    arr = np.asarray(seeds)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(
            f"seeds must be an integer array of shape (s, 2) (item of a, row of b), got {arr.dtype} {arr.shape}."
        )
    if arr.shape[0] >= n:
        raise InputError(
            f"seeds: {arr.shape[0]} known pairs of n={n} items leave nothing to match; give fewer than n."
        )
    if arr.min() < 0 or arr.max() >= n:
        raise InputError(f"seeds must index items 0..{n - 1}; got values {arr.min()}..{arr.max()}.")
    for side in (0, 1):
        if np.unique(arr[:, side]).size != arr.shape[0]:
            raise InputError(f"seeds: column {side} repeats an item; each item can be paired once.")
    return arr.astype(np.int64)


def _qap(
    a: np.ndarray, b: np.ndarray, seeds: np.ndarray, restarts: int, rng: np.random.Generator
) -> np.ndarray:
    best, best_obj = None, -np.inf
    for r in range(restarts):
        options = {"maximize": True, "partial_match": seeds if len(seeds) else None}
        if r > 0:
            options["P0"] = "randomized"
            options["rng"] = np.random.default_rng(rng.integers(2**63))
        res = quadratic_assignment(a, b, method="faq", options=options)
        perm = np.asarray(res.col_ind, dtype=np.int64)
        obj = objective(a, b, perm)
        if obj > best_obj:
            best, best_obj = perm, obj
    assert best is not None
    return best


def _gw(a: np.ndarray, b: np.ndarray, entropic: bool, epsilon: float, device: str | None) -> np.ndarray:
    from prh.experiments.base import require

    ot = require("ot", "pot")
    if device is not None:  # POT's torch backend (on the GPU for a CUDA device)
        ta = torch.as_tensor(a, device=device)
        tb = torch.as_tensor(b, device=device)
    else:
        ta, tb = a, b
    with (
        warnings.catch_warnings()
    ):  # POT warns when Sinkhorn stops at its iteration cap; the coupling is rounded
        warnings.simplefilter("ignore", UserWarning)
        if entropic:
            coupling = ot.gromov.entropic_gromov_wasserstein(
                ta, tb, loss_fun="square_loss", epsilon=epsilon, symmetric=True, max_iter=ENTROPIC_MAX_ITER,
                numItermax=SINKHORN_MAX_ITER, tol=GW_TOL, stopThr=GW_TOL,
            )  # fmt: skip
        else:
            coupling = ot.gromov.gromov_wasserstein(
                ta,
                tb,
                loss_fun="square_loss",
                symmetric=True,
                max_iter=GW_MAX_ITER,
                tol_rel=GW_TOL,
                tol_abs=GW_TOL,
            )
    if isinstance(coupling, torch.Tensor):
        coupling = coupling.detach().cpu().numpy()
    coupling = np.asarray(coupling, dtype=np.float64)
    if not np.isfinite(coupling).all():
        raise InputError(
            f"entropic GW diverged (non-finite coupling) at epsilon={epsilon}; raise epsilon (e.g. 0.05)."
        )
    return coupling


def _row_fit(a: np.ndarray, b: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """How well row ``c`` of ``b`` fits item ``i`` given the assignment of everyone else: the correlation of item
    ``i``'s kernel row with row ``c`` of ``b`` read in ``a``'s item order (``b[c, perm[j]]`` against ``a[i, j]``)."""
    u = a - a.mean(1, keepdims=True)
    v = b[:, perm]
    v = v - v.mean(1, keepdims=True)
    u = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return u @ v.T


def _signature(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Negative Euclidean distance between sorted kernel rows (the diagonal left out)."""
    n = a.shape[0]
    off = ~np.eye(n, dtype=bool)
    sa = np.sort(a[off].reshape(n, n - 1), axis=1)
    sb = np.sort(b[off].reshape(n, n - 1), axis=1)
    d2 = (sa**2).sum(1)[:, None] + (sb**2).sum(1)[None, :] - 2 * sa @ sb.T
    return -np.sqrt(np.maximum(d2, 0.0))


def match(
    a: np.ndarray,
    b: np.ndarray,
    method: str = "qap",
    seeds: object = None,
    restarts: int = 3,
    epsilon: float = 0.05,
    seed: int = 0,
    device: str | None = None,
) -> Matching:
    """Find the permutation that best aligns kernel ``b`` to kernel ``a`` (see the module docstring).

    Parameters
    ----------
    a, b : float arrays (n, n), symmetric
        Kernels of the same n items, ``b``'s rows in an unknown order (e.g. from :func:`kernel`).
    method : str
        One of :data:`METHODS`.
    seeds : int array (s, 2), optional
        Known pairs ``[item of a, row of b]`` (``qap`` only), s < n; they are kept fixed.
    restarts : int
        QAP runs (>= 1): the first from the barycentre, the others from random starts; the best is kept.
    epsilon : float
        Entropic regularisation of ``gw-entropic`` (> 0), relative to the standardised kernels.
    seed : int
        Seed of the random restarts.
    device : str, optional
        Torch device for the GW methods: POT then runs on its torch backend (``"cuda"``: on the GPU); None: numpy.

    Returns
    -------
    :class:`Matching` (perm, scores, objective). Equivariant: permuting ``b``'s rows and columns by ``q`` permutes
    ``perm`` accordingly (up to ties and the solvers' randomness).

    Raises
    ------
    InputError
        Kernels of different or non-square shapes, fewer than 3 items, an unknown method, seeds for a method that
        does not take them, seeds >= n or out of range, restarts < 1, epsilon <= 0.
    """
    method = check_choice(method, "method", METHODS)
    restarts = check_int(restarts, "restarts", minimum=1, hint="QAP runs from different starts")
    epsilon = check_float(
        epsilon, "epsilon", 0.0, None, inclusive=(False, True), hint="entropic regularisation"
    )
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape != b.shape:
        raise InputError(f"a and b must be square kernels of one shape (n, n), got {a.shape} and {b.shape}.")
    n = a.shape[0]
    if n < 3:
        raise InputError(f"blind matching needs n >= 3 items, got n={n}.")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise InputError("a and b must be finite (a kernel holds NaN or Inf).")
    pairs = _check_seeds(seeds, n)
    if len(pairs) and method != "qap":
        raise InputError(f"seeds (known pairs) are used by method 'qap' only, not {method!r}.")
    rng = np.random.default_rng(seed)
    if method == "qap":
        perm = _qap(a, b, pairs, restarts, rng)
        scores = _row_fit(a, b, perm)
    elif method == "signature":
        scores = _signature(a, b)
        perm = linear_sum_assignment(scores, maximize=True)[1].astype(np.int64)
    else:
        scores = _gw(a, b, method == "gw-entropic", epsilon, device)
        perm = linear_sum_assignment(scores, maximize=True)[1].astype(np.int64)
    scores = np.array(scores, dtype=np.float64)
    scores[np.arange(n), perm] = scores.max() + 1.0  # the assignment ranks first: top-1 accuracy == accuracy
    return Matching(perm=perm, scores=scores, objective=objective(a, b, perm))


def accuracy(perm: np.ndarray, truth: np.ndarray, exclude: np.ndarray | None = None) -> float:
    """Fraction of items ``i`` with ``perm[i] == truth[i]``, over the items not in ``exclude`` (e.g. the seeds).
    Chance (a uniformly random permutation): 1 / (number of items counted)."""
    keep = np.ones(len(truth), dtype=bool)
    if exclude is not None and len(exclude):
        keep[np.asarray(exclude)] = False
    return float((np.asarray(perm)[keep] == np.asarray(truth)[keep]).mean())


def top_k(scores: np.ndarray, truth: np.ndarray, k: int = 5, exclude: np.ndarray | None = None) -> float:
    """Fraction of items whose true row is among their ``k`` highest ``scores`` (ties count against the item:
    the rank is the number of rows scoring strictly higher, plus the number of tied rows). Chance: k / n."""
    s = np.asarray(scores)
    n = s.shape[0]
    keep = np.ones(n, dtype=bool)
    if exclude is not None and len(exclude):
        keep[np.asarray(exclude)] = False
    true_score = s[np.arange(n), truth][:, None]
    rank = (s >= true_score).sum(1)  # includes the true row itself: rank 1 = best, ties pushed down
    return float((rank[keep] <= k).mean())
