"""Batched dynamic programmes over pairs of neighbour lists: longest common subsequence and edit distance.

The reference runs a Python double loop per sample; here one k x k recursion runs over whole batches of rows
(and, in a sweep, of layer pairs) at once.
"""

from __future__ import annotations

import torch


def lcs_length(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Length of the longest common subsequence of each row of ``x`` and ``y``.

    Parameters
    ----------
    x, y : (B, k) integer tensors (e.g. ordered neighbour lists)

    Returns
    -------
    (B,) int64 tensor with values in ``[0, k]``.
    """
    batch, kx = x.shape
    ky = y.shape[1]
    equal = x[:, :, None] == y[:, None, :]
    prev = torch.zeros((batch, ky + 1), dtype=torch.long, device=x.device)
    for i in range(kx):
        cur = torch.zeros_like(prev)
        for j in range(ky):
            diag = prev[:, j] + 1
            best = torch.maximum(prev[:, j + 1], cur[:, j])
            cur[:, j + 1] = torch.where(equal[:, i, j], diag, best)
        prev = cur
    return prev[:, ky]


def edit_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Levenshtein distance (unit-cost insert, delete, substitute) between each row of ``x`` and ``y``.

    Parameters
    ----------
    x, y : (B, k) integer tensors

    Returns
    -------
    (B,) int64 tensor with values in ``[0, max(kx, ky)]``.
    """
    batch, kx = x.shape
    ky = y.shape[1]
    equal = x[:, :, None] == y[:, None, :]
    prev = torch.arange(ky + 1, device=x.device).expand(batch, ky + 1).clone()
    for i in range(kx):
        cur = torch.empty_like(prev)
        cur[:, 0] = i + 1
        for j in range(ky):
            substitute = prev[:, j] + (~equal[:, i, j]).long()
            cur[:, j + 1] = torch.minimum(torch.minimum(prev[:, j + 1], cur[:, j]) + 1, substitute)
        prev = cur
    return prev[:, ky]
