"""The stitching layer: a 1×1 convolution fitted by least squares over spatial positions, optionally fine-tuned.

Least squares ("direct matching"): every spatial position of every training item is one sample; the map from the
sender's channels (plus a bias) to the receiver's channels minimises the summed squared error, with a small ridge
``ridge * tr(XᵀX) / C_in`` on the weights (not the bias) for stability. The normal equations are accumulated in
float64 over batches (:class:`Normal`), so no activation has to be kept in memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F


def rows(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) or (B, C) -> (B·H·W, C) float64 rows (one per spatial position)."""
    if x.ndim == 4:
        x = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
    return x.to(torch.float64)


@dataclass
class Normal:
    """Accumulated normal equations ``[X 1]ᵀ[X 1]`` (``gram``) and ``[X 1]ᵀ Y`` (``cross``) of one map."""

    gram: torch.Tensor | None = None
    cross: dict = field(default_factory=dict)

    def add_sender(self, x: torch.Tensor) -> torch.Tensor:
        """Add the rows of sender ``x`` to the Gram matrix; returns the rows with their bias column."""
        z = rows(x)
        z = torch.cat([z, torch.ones(z.shape[0], 1, dtype=z.dtype, device=z.device)], dim=1)
        g = z.T @ z
        self.gram = g if self.gram is None else self.gram + g
        return z

    def add_target(self, key: object, z: torch.Tensor, y: torch.Tensor) -> None:
        """Add ``zᵀ rows(y)`` under ``key`` (one sender, many receivers share one Gram matrix)."""
        c = z.T @ rows(y)
        self.cross[key] = c if key not in self.cross else self.cross[key] + c

    def solve(self, key: object, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight (C_out, C_in), bias (C_out,)) float32 of the least-squares map for ``key``."""
        g = self.gram
        d = g.shape[0] - 1
        lam = ridge * float(torch.trace(g[:d, :d])) / max(d, 1)
        pen = torch.full((d + 1,), lam, dtype=g.dtype, device=g.device)
        pen[-1] = 0.0
        sol = torch.linalg.solve(g + torch.diag(pen), self.cross[key])  # (d + 1, C_out)
        return sol[:d].T.float().contiguous(), sol[d].float().contiguous()


def apply_map(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The stitching layer: a 1×1 convolution of a (B, C_in, H, W) map, or a linear map of (B, C_in) rows."""
    if x.ndim == 4:
        return F.conv2d(x, weight[:, :, None, None], bias)
    return x @ weight.T + bias


def kl_to_reference(reference: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """(B,) KL(p_reference || p_logits) in nats of two batches of logits."""
    log_p = F.log_softmax(reference.float(), dim=1)
    log_q = F.log_softmax(logits.float(), dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)
