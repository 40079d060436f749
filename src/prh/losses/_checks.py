"""Argument checks shared by the losses: two (B, D) floating batches on one device, same B."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prh.errors import InputError


def check_batches(x: object, y: object, min_batch: int, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``x``, ``y`` as (B, D) floating tensors (L2-normalised rows when ``normalize``).

    Raises :class:`~prh.errors.InputError` naming the argument for anything else (a numpy array, a wrong rank,
    a different B, integer dtype, fewer than ``min_batch`` rows, non-finite values, different devices).
    """
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{name} must be a torch tensor of shape (B, D), got {type(t).__name__}.")
        if t.dim() != 2:
            raise InputError(
                f"{name} must have shape (B, D), got {tuple(t.shape)}; flatten or pool it first."
            )
        if not t.is_floating_point():
            raise InputError(f"{name} must be a floating tensor, got {t.dtype}.")
    if x.shape[0] != y.shape[0]:
        raise InputError(
            f"x and y must have the same batch size B (row i of both = item i), got {x.shape[0]} and {y.shape[0]}."
        )
    if x.shape[0] < min_batch:
        raise InputError(f"this loss needs a batch of at least {min_batch} items, got B={x.shape[0]}.")
    if x.device != y.device:
        raise InputError(f"x and y are on different devices ({x.device}, {y.device}); move one.")
    if not (torch.isfinite(x.detach()).all() and torch.isfinite(y.detach()).all()):
        raise InputError("x or y holds NaN or Inf values; check the model's outputs before the loss.")
    if normalize:
        x, y = F.normalize(x, dim=1), F.normalize(y, dim=1)
    return x, y
