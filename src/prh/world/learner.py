"""The contrastive learner of Section 5: an MLP encoder per modality trained with InfoNCE on co-occurring pairs.

Each learner sees only its own modality: positives are observations of two events that co-occur within the
window, negatives are the other observations of the batch (drawn from the marginal). With the symmetric InfoNCE
loss below, the optimal dot-product critic is ``<f(x_a), f(x_b)> / temperature = K_PMI(a, b) + c`` (Section 5,
Eq. 7-8), so the learned kernel approaches the PMI kernel whenever the encoder can represent it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from prh._validation import ConfigFields, check_float, check_int
from prh.errors import InputError
from prh.world.observe import Rendering


@dataclass(frozen=True)
class LearnerConfig(ConfigFields):
    """Encoder shape and training budget.

    Attributes
    ----------
    width : int
        Hidden width (the capacity knob; a small width is a bottleneck), >= 1.
    depth : int
        Number of hidden layers, >= 1.
    out_dim : int
        Embedding dimension, >= 1.
    steps : int
        Optimiser steps, >= 1.
    batch_size : int
        Co-occurring pairs per step, >= 2.
    lr : float
        Peak Adam learning rate, > 0 (cosine-decayed to 0 over ``steps``).
    temperature : float
        InfoNCE temperature, > 0 (logits are ``<f(x), f(x')> / temperature``).
    """

    width: int = 128
    depth: int = 2
    out_dim: int = 32
    steps: int = 1500
    batch_size: int = 256
    lr: float = 3e-3
    temperature: float = 1.0

    def __post_init__(self) -> None:
        lows = {"width": 1, "depth": 1, "out_dim": 1, "steps": 1, "batch_size": 2}
        for name, low in lows.items():
            object.__setattr__(self, name, check_int(getattr(self, name), name, minimum=low))
        for name in ("lr", "temperature"):
            value = check_float(
                getattr(self, name), name, 0.0, inclusive=(False, True), hint="a positive number"
            )
            object.__setattr__(self, name, value)


class Encoder(nn.Module):
    """MLP ``in_dim -> [width] * depth -> out_dim`` with GELU activations; input (n, in_dim) -> (n, out_dim)."""

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, width), nn.GELU()]
            d = width
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def info_nce(za: torch.Tensor, zb: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Symmetric InfoNCE loss of a batch of positive pairs ``(za[i], zb[i])``; all other rows are negatives.

    Parameters
    ----------
    za, zb : torch.Tensor
        (B, d) embeddings of the two members of each co-occurring pair.
    temperature : float
        Logits are ``za @ zb.T / temperature``.

    Returns
    -------
    torch.Tensor
        Scalar: mean of the cross-entropies in both directions; ``log B`` for an uninformative critic.
    """
    logits = za @ zb.T / temperature
    target = torch.arange(za.shape[0], device=za.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def make_encoder(in_dim: int, config: LearnerConfig, seed: int) -> Encoder:
    """An encoder initialised deterministically from ``seed`` (the global RNG state is left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return Encoder(in_dim, config.width, config.depth, config.out_dim)


def train_contrastive(
    encoder: Encoder,
    rendering: Rendering,
    pairs: torch.Tensor,
    config: LearnerConfig,
    generator: torch.Generator,
) -> list[float]:
    """Train ``encoder`` in place with InfoNCE on random batches of co-occurring pairs.

    Parameters
    ----------
    encoder : Encoder
        The modality's encoder.
    rendering : Rendering
        This modality's observation function (the learner sees only its observations, never the states).
    pairs : torch.Tensor
        (P, 2) int64 co-occurring state pairs (the training data; the learner never sees the states themselves).
    config : LearnerConfig
        Budget and optimiser settings.
    generator : torch.Generator
        Source of batch indices, pair order and observation noise.

    Returns
    -------
    list[float]
        The loss of every step.
    """
    if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.shape[0] < 1:
        raise InputError(f"pairs must have shape (P, 2) with P >= 1, got {tuple(pairs.shape)}.")
    opt = torch.optim.Adam(encoder.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
    losses: list[float] = []
    onehot = torch.eye(rendering.table.shape[0], dtype=rendering.table.dtype)
    encoder.train()
    for _ in range(config.steps):
        idx = torch.randint(pairs.shape[0], (config.batch_size,), generator=generator)
        batch = pairs[idx]
        if rendering.noise > 0:
            za = encoder(rendering.observe(batch[:, 0], generator))
            zb = encoder(rendering.observe(batch[:, 1], generator))
        else:
            # Noise-free observations are a fixed table: encode the M distinct ones once and select rows (same loss
            # and gradient as encoding the batch, 2B/M times cheaper). Selecting with a one-hot matmul instead of
            # indexing keeps the backward pass deterministic (CPU index backward accumulates in thread order).
            z = encoder(rendering.table)
            za, zb = onehot[batch[:, 0]] @ z, onehot[batch[:, 1]] @ z
        loss = info_nce(za, zb, config.temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(float(loss.detach()))
    encoder.eval()
    return losses


@torch.no_grad()
def embed_states(encoder: Encoder, table: torch.Tensor) -> torch.Tensor:
    """Embeddings of every state's noise-free observation: (M, D) -> (M, out_dim) float32."""
    encoder.eval()
    return encoder(table)
