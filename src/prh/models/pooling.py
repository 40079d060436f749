"""Pooling of token / spatial activations into one vector per sample (pure tensor functions).

All functions take a batch and return (B, D); they never look at other samples, so a sample's pooled vector does
not depend on what else is in its batch or how much padding the batch has.
"""

from __future__ import annotations

import torch

from prh.errors import InputError


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real (mask = 1) tokens of each sequence.

    Parameters
    ----------
    hidden : torch.Tensor
        (B, T, D) token activations.
    mask : torch.Tensor
        (B, T) attention mask, 1 for real tokens and 0 for padding; every row needs at least one real token.

    Returns
    -------
    torch.Tensor
        (B, D) in the dtype of ``hidden`` (accumulated in float32). Padding positions are excluded with
        ``torch.where`` so that non-finite values at padded positions cannot leak in.
    """
    if hidden.ndim != 3 or mask.shape != hidden.shape[:2]:
        raise InputError(
            f"hidden must be (B, T, D) and mask (B, T); got {tuple(hidden.shape)} and {tuple(mask.shape)}"
        )
    m = mask.to(torch.bool)
    count = m.sum(dim=1, keepdim=True)
    if bool((count == 0).any()):
        raise InputError("a sequence has no real tokens (empty text?): its mean is undefined.")
    h = torch.where(
        m.unsqueeze(-1), hidden.float(), torch.zeros((), dtype=torch.float32, device=hidden.device)
    )
    return (h.sum(dim=1) / count.to(torch.float32)).to(hidden.dtype)


def last_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token of each row of a (B, T) mask (works for left and right padding)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    return (
        torch.where(mask.to(torch.bool), positions, torch.full_like(positions, -1))
        .max(dim=1)
        .values.clamp(min=0)
    )


def last_token(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The activation of the last real token of each sequence: (B, T, D), (B, T) -> (B, D)."""
    idx = last_index(mask)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]


def first_token(hidden: torch.Tensor) -> torch.Tensor:
    """The first token (CLS) of each sequence: (B, T, D) -> (B, D)."""
    return hidden[:, 0]


def token_mean(hidden: torch.Tensor) -> torch.Tensor:
    """Mean over all tokens (vision transformers, no padding): (B, T, D) -> (B, D)."""
    return hidden.float().mean(dim=1).to(hidden.dtype)


def spatial_mean(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling of a (B, C, H, W) feature map -> (B, C)."""
    return x.float().mean(dim=(2, 3)).to(x.dtype)


def pool_tokens(hidden: torch.Tensor, pool: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pool (B, T, D) tokens with ``pool`` in {"mean", "last", "cls"}; ``mask`` (B, T) marks real tokens.

    Without a mask every token is real.
    """
    if pool == "mean":
        return token_mean(hidden) if mask is None else masked_mean(hidden, mask)
    if pool == "last":
        return hidden[:, -1] if mask is None else last_token(hidden, mask)
    if pool == "cls":
        return first_token(hidden)
    raise InputError(f"pool={pool!r} is not one of 'mean', 'last', 'cls'.")


def pool_any(x: torch.Tensor, pool: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Pool an activation of any rank to (B, D): 4-D maps are global-average-pooled, 3-D token sequences are
    pooled with ``pool``, 2-D vectors are returned as they are, higher ranks are flattened after the batch axis."""
    if x.ndim == 4:
        return spatial_mean(x)
    if x.ndim == 3:
        return pool_tokens(x, pool, mask)
    if x.ndim == 2:
        return x
    if x.ndim > 4:
        return x.flatten(1)
    raise InputError(f"cannot pool an activation of shape {tuple(x.shape)}: it has no batch axis.")
