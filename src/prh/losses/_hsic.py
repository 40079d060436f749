"""Differentiable HSIC estimators of (B, B) kernels: the building block of every loss in :mod:`prh.losses`.

Both take kernels as given (they need not be symmetric: the masked kernels of the soft CKNNA are not) and return a
0-d tensor that autograd differentiates. They equal :mod:`prh.metrics`' float64 formulas term by term.
"""

from __future__ import annotations

import torch


def hsic_biased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """``tr(K H L H)`` without forming H = I - 11ᵀ/n: ``tr(KL) - (1ᵀKL1 + 1ᵀLK1)/n + (1ᵀK1)(1ᵀL1)/n²``.

    Parameters
    ----------
    k, l : (n, n) float tensors (any n >= 2).

    Returns
    -------
    0-d tensor (unnormalised; CKA divides it out).
    """
    n = k.shape[0]
    trace = (k * l.T).sum()
    row_k, col_k = k.sum(dim=1), k.sum(dim=0)
    row_l, col_l = l.sum(dim=1), l.sum(dim=0)
    return trace - (col_k @ row_l + col_l @ row_k) / n + k.sum() * l.sum() / n**2


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """Song et al.'s unbiased HSIC (JMLR 13, 2012, Eq. 5) of kernels whose diagonal is ignored (set to zero).

    ``[tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n-1)(n-2)) - 2/(n-2) 1ᵀK̃L̃1] / (n(n-3))``, with K̃, L̃ the kernels with a zero
    diagonal. Needs n >= 4.

    Parameters
    ----------
    k, l : (n, n) float tensors.

    Returns
    -------
    0-d tensor; its expectation is 0 for independent representations.
    """
    n = k.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=k.device)
    kt = k.masked_fill(eye, 0.0)
    lt = l.masked_fill(eye, 0.0)
    trace = (kt * lt.T).sum()
    cross = kt.sum(dim=0) @ lt.sum(dim=1)
    return (trace + kt.sum() * lt.sum() / ((n - 1) * (n - 2)) - 2.0 * cross / (n - 2)) / (n * (n - 3))
