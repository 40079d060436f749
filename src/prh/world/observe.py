"""Observation functions ``obs_X``, ``obs_Y``: fixed random nonlinear renderings of states into vectors.

Section 5 assumes each modality sees the world through a bijective map of the events (``X = obs_X(Z)``,
``Y = obs_Y(Z)``). A :class:`Rendering` gives every state a random code and pushes it through a fixed random
tanh MLP to a vector of the modality's own dimension, so two modalities see the same states through unrelated
nonlinear maps. A *lossy* rendering (the paper's stated limitation) first merges states through a many-to-one map,
so several states produce the same observation. Optional Gaussian noise is added per sample at training time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prh._validation import check_int
from prh.errors import InputError


@dataclass(frozen=True)
class Rendering:
    """A fixed observation function of a modality.

    Attributes
    ----------
    table : torch.Tensor
        (M, D) float32: ``table[z]`` is the noise-free observation of state ``z``.
    merge : torch.Tensor
        (M,) int64: the observation class of each state (``arange(M)`` for a bijective rendering).
    noise : float
        Standard deviation of the Gaussian noise added by :meth:`observe` (0 = noise-free).
    """

    table: torch.Tensor
    merge: torch.Tensor
    noise: float = 0.0

    @property
    def dim(self) -> int:
        """Observation dimension D."""
        return int(self.table.shape[1])

    @property
    def bijective(self) -> bool:
        """True when distinct states always give distinct (noise-free) observations."""
        return bool(torch.unique(self.merge).numel() == self.merge.numel())

    def observe(self, states: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Observations of ``states`` ((n,) int64) -> (n, D) float32, with noise if ``noise > 0``."""
        x = self.table[states]
        if self.noise > 0:
            x = x + self.noise * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        return x


def merge_pairs(m: int, fraction: float, seed: int) -> torch.Tensor:
    """A many-to-one map of states: a random ``fraction`` of the states is merged in random pairs.

    Parameters
    ----------
    m : int
        Number of states.
    fraction : float
        In (0, 1]: share of states that lose their identity (rounded down to an even count).
    seed : int
        Seed of the random pairing.

    Returns
    -------
    torch.Tensor
        (M,) int64 class ids in ``0..M-1``; merged partners share the smaller of their two ids.
    """
    if not (0 < fraction <= 1):
        raise InputError(f"lossy fraction must be in (0, 1], got {fraction!r}.")
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(m, generator=gen)
    n_merge = (int(fraction * m) // 2) * 2
    merge = torch.arange(m)
    for i in range(0, n_merge, 2):
        a, b = int(perm[i]), int(perm[i + 1])
        merge[a] = merge[b] = min(a, b)
    return merge


def make_rendering(
    m: int,
    dim: int,
    *,
    seed: int,
    code_dim: int = 16,
    hidden: int = 64,
    depth: int = 2,
    gain: float = 2.0,
    noise: float = 0.0,
    merge: torch.Tensor | None = None,
) -> Rendering:
    """A random nonlinear rendering of M states into ``dim``-dimensional observations.

    Each observation class gets a code ``c ~ N(0, I_code_dim)``; the code goes through ``depth`` random tanh layers
    (width ``hidden``, weights ``N(0, gain^2 / fan_in)``) and a random linear read-out to ``dim`` dimensions,
    then every coordinate is standardised over the states. The map is fixed by ``seed``.

    Parameters
    ----------
    m : int
        Number of states (>= 2).
    dim : int
        Observation dimension (>= 1).
    seed : int
        Seed of codes and weights.
    code_dim, hidden, depth, gain : int, int, int, float
        Shape and nonlinearity of the random map (larger gain = more saturated tanh = more nonlinear).
    noise : float
        Gaussian noise std added per training sample (>= 0).
    merge : torch.Tensor | None
        (M,) int64 class of each state; ``None`` = bijective. States of one class share the same observation.

    Returns
    -------
    Rendering
        Raises :class:`InputError` if a "bijective" rendering maps two states to the same vector.
    """
    for name, value, low in (
        ("dim", dim, 1),
        ("code_dim", code_dim, 1),
        ("hidden", hidden, 1),
        ("depth", depth, 0),
    ):
        check_int(value, name, minimum=low)
    if noise < 0:
        raise InputError(f"noise must be >= 0, got {noise!r}.")
    merge = torch.arange(m) if merge is None else torch.as_tensor(merge, dtype=torch.int64)
    if merge.shape != (m,) or bool((merge < 0).any()) or bool((merge >= m).any()):
        raise InputError(f"merge must be an (M,) = ({m},) tensor of class ids in 0..{m - 1}.")
    gen = torch.Generator().manual_seed(int(seed))
    codes = torch.randn(m, code_dim, generator=gen, dtype=torch.float64)
    x = codes[merge]
    width = code_dim
    for _ in range(depth):
        w = torch.randn(width, hidden, generator=gen, dtype=torch.float64) * gain / width**0.5
        b = torch.randn(hidden, generator=gen, dtype=torch.float64) * 0.5
        x = torch.tanh(x @ w + b)
        width = hidden
    x = x @ (torch.randn(width, dim, generator=gen, dtype=torch.float64) / width**0.5)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-12)
    table = x.to(torch.float32)
    rendering = Rendering(table=table, merge=merge, noise=float(noise))
    if rendering.bijective:
        d = torch.cdist(table.double(), table.double())
        d.fill_diagonal_(float("inf"))
        if float(d.min()) < 1e-6:
            raise InputError(
                "the rendering is not injective (two states collide); pick another seed or larger dim."
            )
    return rendering
