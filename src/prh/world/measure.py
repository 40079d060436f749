"""World-specific measurements: agreement of a kernel with the PMI kernel, exact factorisations, lossy ceilings.

The PMI kernel is only defined up to an additive constant ``c`` and a learner's kernel up to its temperature, so
agreement is the Pearson correlation of the off-diagonal entries (diagonals are excluded: ``||f(x)||^2`` is not
pinned down by co-occurrence of *distinct* events). Pearson is invariant to ``K -> s K + c`` for ``s > 0``.
"""

from __future__ import annotations

import torch

from prh.errors import InputError


def offdiagonal(kernel: torch.Tensor) -> torch.Tensor:
    """The M(M-1) off-diagonal entries of an (M, M) matrix, row-major, as float64."""
    k = torch.as_tensor(kernel, dtype=torch.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] < 3:
        raise InputError(f"kernel must be a square (M, M) matrix with M >= 3, got shape {tuple(k.shape)}.")
    mask = ~torch.eye(k.shape[0], dtype=torch.bool)
    return k[mask]


def kernel_agreement(kernel: torch.Tensor, reference: torch.Tensor) -> float:
    """Pearson correlation of the off-diagonal entries of two (M, M) kernels, in [-1, 1].

    Invariant to ``kernel -> s * kernel + c`` (s > 0), i.e. to the temperature and to the constant ``c`` of
    ``K_PMI + c``. Raises :class:`InputError` if either kernel is constant off the diagonal.
    """
    a, b = offdiagonal(kernel), offdiagonal(reference)
    if a.shape != b.shape:
        raise InputError(
            f"kernel and reference must have the same shape, got {a.numel()} vs {b.numel()} entries."
        )
    if not bool(torch.isfinite(a).all()) or not bool(torch.isfinite(b).all()):
        raise InputError("kernel and reference must be finite.")
    a = a - a.mean()
    b = b - b.mean()
    den = float(torch.sqrt((a * a).sum() * (b * b).sum()))
    if den == 0.0:
        raise InputError("a kernel is constant off the diagonal, so its correlation is undefined.")
    return float((a * b).sum() / den)


def learned_kernel(embeddings: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """The learner's kernel ``<f(x_a), f(x_b)> / temperature``: (M, d) -> (M, M) float64."""
    e = torch.as_tensor(embeddings, dtype=torch.float64)
    return e @ e.T / temperature


def pmi_factorisation(pmi: torch.Tensor) -> torch.Tensor:
    """Embeddings whose Gram matrix equals the PMI kernel off the diagonal exactly.

    ``K_PMI + s I`` with ``s = max(0, -lambda_min)`` is positive semi-definite and differs from ``K_PMI`` only on
    the diagonal; its eigendecomposition ``V diag(lambda + s) V^T`` gives ``F = V sqrt(lambda + s)``.

    Parameters
    ----------
    pmi : torch.Tensor
        (M, M) symmetric kernel.

    Returns
    -------
    torch.Tensor
        (M, M) float64 with ``F @ F.T == pmi`` off the diagonal (to float error).
    """
    k = torch.as_tensor(pmi, dtype=torch.float64)
    k = (k + k.T) / 2
    evals, evecs = torch.linalg.eigh(k)
    shift = max(0.0, -float(evals.min()))
    return evecs * torch.sqrt((evals + shift).clamp_min(0.0))


def lossy_target(p_coor: torch.Tensor, merge: torch.Tensor) -> torch.Tensor:
    """The best kernel a learner of a lossy modality can converge to, lifted back to states.

    The lossy learner sees observation classes ``merge[z]``, so its optimum is the PMI kernel of the class
    co-occurrence law ``P(c, c') = sum_{merge[a]=c, merge[b]=c'} P_coor(a, b)``; as a kernel over states it is
    ``K(a, b) = PMI_class(merge[a], merge[b])``. Its :func:`kernel_agreement` with the state PMI kernel is the
    lossy case's ceiling (1.0 when ``merge`` is a bijection).

    Returns (M, M) float64.
    """
    from prh.world.world import pmi_kernel

    p = torch.as_tensor(p_coor, dtype=torch.float64)
    m = p.shape[0]
    classes, inverse = torch.unique(torch.as_tensor(merge), return_inverse=True)
    n = classes.numel()
    onehot = torch.zeros(m, n, dtype=torch.float64)
    onehot[torch.arange(m), inverse] = 1.0
    pc = onehot.T @ p @ onehot
    return pmi_kernel(pc)[inverse][:, inverse]
