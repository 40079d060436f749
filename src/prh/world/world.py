"""The world Z of Section 5: a Markov chain over M discrete states, its co-occurrence law and the PMI kernel.

Section 5 of Huh et al. (2024) models the world as a sequence of discrete events ``Z = [z_1, ..., z_T]`` drawn from
an unknown distribution. Two events *co-occur* when they fall within a window of each other; their joint law is
``P_coor``. Here the sequence is a stationary Markov chain with transition matrix ``T`` (M x M) and stationary law
``pi``, so ``P_coor`` over a window of ``w`` steps is exact and closed-form::

    P_coor = 1/(2w) * sum_{d=1..w} (diag(pi) T^d + (diag(pi) T^d)^T)          (symmetric, rows sum to pi)
    K_PMI(a, b) = log P_coor(a, b) / (pi_a pi_b)

Everything here is pure tensor code in float64; validation of user input happens in :func:`make_world` and
:meth:`World.from_transition`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prh._validation import check_choice, check_float, check_int
from prh.errors import InputError

STRUCTURES = ("torus", "ring")


@dataclass(frozen=True)
class World:
    """A stationary Markov chain over ``m`` states with a co-occurrence window.

    Attributes
    ----------
    transition : torch.Tensor
        (M, M) float64 row-stochastic matrix, ``transition[a, b] = P(z_{t+1} = b | z_t = a)``.
    stationary : torch.Tensor
        (M,) float64 stationary law ``pi`` (``pi @ T = pi``, sums to 1, all entries > 0).
    window : int
        Two events co-occur when ``1 <= |t - t'| <= window``.
    positions : torch.Tensor | None
        (M, 2) float64 latent positions used to build the chain (``None`` for a chain given directly).
    """

    transition: torch.Tensor
    stationary: torch.Tensor
    window: int
    positions: torch.Tensor | None = None

    @property
    def m(self) -> int:
        """Number of states M."""
        return int(self.transition.shape[0])

    @classmethod
    def from_transition(cls, transition: object, window: int = 1) -> World:
        """Build a world from an explicit (M, M) row-stochastic transition matrix (irreducible, so pi > 0)."""
        t = torch.as_tensor(transition, dtype=torch.float64)
        if t.ndim != 2 or t.shape[0] != t.shape[1]:
            raise InputError(f"transition must be a square (M, M) matrix, got shape {tuple(t.shape)}.")
        if t.shape[0] < 2:
            raise InputError(f"transition describes M={t.shape[0]} state(s); the world needs M >= 2 states.")
        if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise InputError("transition must hold finite, non-negative probabilities.")
        if not torch.allclose(t.sum(1), torch.ones(t.shape[0], dtype=torch.float64), atol=1e-8):
            raise InputError("transition must be row-stochastic: every row must sum to 1.")
        _check_window(window)
        pi = stationary_distribution(t)
        if bool((pi <= 1e-12).any()):
            raise InputError(
                "transition is not irreducible: some states have zero stationary probability; "
                "make every state reachable (e.g. add a small teleport probability)."
            )
        return cls(transition=t, stationary=pi, window=int(window))

    def p_coor(self) -> torch.Tensor:
        """Exact co-occurrence law ``P_coor`` (M, M), symmetric, sums to 1, marginals equal ``pi``."""
        return cooccurrence(self.transition, self.stationary, self.window)

    def pmi(self) -> torch.Tensor:
        """Exact PMI kernel ``log P_coor(a, b) / (pi_a pi_b)`` (M, M), symmetric, finite when P_coor > 0."""
        return pmi_kernel(self.p_coor())

    def sample(self, n_chains: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """Sample ``n_chains`` independent stationary chains of ``length`` steps: (n_chains, length) int64."""
        return sample_chains(self.transition, self.stationary, n_chains, length, generator)


def _check_window(window: object) -> int:
    return check_int(window, "window", minimum=1, hint="co-occurrence within that many steps")
    return window


def stationary_distribution(transition: torch.Tensor) -> torch.Tensor:
    """Stationary law of a row-stochastic matrix: the left eigenvector for eigenvalue 1, normalised to sum 1.

    Parameters
    ----------
    transition : torch.Tensor
        (M, M) float64, rows sum to 1, irreducible.

    Returns
    -------
    torch.Tensor
        (M,) float64, non-negative, sums to 1.
    """
    m = transition.shape[0]
    # Solve pi (T - I) = 0 with sum(pi) = 1: one balance equation is redundant for an irreducible chain, so replace
    # it by the normalisation and solve the square system (LU: exact and deterministic).
    a = (transition - torch.eye(m, dtype=transition.dtype)).T.clone()
    a[-1] = 1.0
    rhs = torch.zeros(m, dtype=transition.dtype)
    rhs[-1] = 1.0
    try:
        pi = torch.linalg.solve(a, rhs)
    except RuntimeError as err:  # singular: the chain is reducible
        raise InputError(
            "transition is not irreducible (no unique stationary law); make every state reachable from every "
            "other, e.g. with a small teleport probability."
        ) from err
    pi = pi.clamp_min(0.0)
    return pi / pi.sum()


def cooccurrence(transition: torch.Tensor, stationary: torch.Tensor, window: int) -> torch.Tensor:
    """Exact co-occurrence law of a stationary chain within ``window`` steps (both orders, offsets equally weighted).

    Parameters
    ----------
    transition : torch.Tensor
        (M, M) row-stochastic.
    stationary : torch.Tensor
        (M,) stationary law of ``transition``.
    window : int
        Largest offset ``w >= 1``; offsets ``d = 1..w`` each get weight ``1/w``.

    Returns
    -------
    torch.Tensor
        (M, M) float64, symmetric, entries sum to 1, row sums equal ``stationary``.
    """
    _check_window(window)
    joint = torch.zeros_like(transition)
    step = torch.eye(transition.shape[0], dtype=transition.dtype)
    for _ in range(window):
        step = step @ transition
        joint = joint + stationary[:, None] * step
    joint = joint / window
    return (joint + joint.T) / 2


def pmi_kernel(p_coor: torch.Tensor) -> torch.Tensor:
    """Pointwise mutual information kernel ``K(a, b) = log P(a, b) / (P(a) P(b))`` of a joint law.

    Parameters
    ----------
    p_coor : torch.Tensor
        (M, M) non-negative joint law (normalised here), symmetric for a symmetric kernel.

    Returns
    -------
    torch.Tensor
        (M, M) float64. Raises :class:`InputError` if any pair never co-occurs (PMI would be -inf).
    """
    p = torch.as_tensor(p_coor, dtype=torch.float64)
    if bool((p < 0).any()) or not bool(torch.isfinite(p).all()):
        raise InputError("p_coor must hold finite, non-negative probabilities.")
    p = p / p.sum()
    if bool((p <= 0).any()):
        raise InputError(
            "p_coor has pairs that never co-occur, so their PMI is -inf; "
            "use a world with teleport > 0 or a larger window."
        )
    marginal = p.sum(1)
    return torch.log(p) - torch.log(marginal)[:, None] - torch.log(marginal)[None, :]


def empirical_cooccurrence(chains: torch.Tensor, m: int, window: int) -> torch.Tensor:
    """Co-occurrence counts of sampled chains, normalised like :func:`cooccurrence` (both orders, w offsets).

    Uses the same pairs as :func:`cooccurrence_pairs`, so its expectation is exactly :func:`cooccurrence`.
    Returns (M, M) float64 summing to 1.
    """
    pairs = cooccurrence_pairs(chains, window)
    counts = torch.zeros(m * m, dtype=torch.float64)
    counts.index_add_(0, pairs[:, 0] * m + pairs[:, 1], torch.ones(pairs.shape[0], dtype=torch.float64))
    counts = counts.view(m, m)
    counts = counts + counts.T
    return counts / counts.sum()


def cooccurrence_pairs(chains: torch.Tensor, window: int) -> torch.Tensor:
    """All co-occurring pairs ``(z_t, z_{t+d})``, ``d = 1..window``, with every offset equally often.

    Parameters
    ----------
    chains : torch.Tensor
        (n_chains, length) int64 state indices; ``length > window``.
    window : int
        Largest offset.

    Returns
    -------
    torch.Tensor
        (n_chains * (length - window) * window, 2) int64. Anchors ``t`` run over ``0..length-window-1`` for every
        offset, so each offset contributes the same number of pairs (the empirical law is unbiased for P_coor).
    """
    _check_window(window)
    length = chains.shape[1]
    if length <= window:
        raise InputError(f"chain length ({length}) must exceed window ({window}) to form co-occurring pairs.")
    anchors = chains[:, : length - window]
    parts = [
        torch.stack([anchors, chains[:, d : length - window + d]], dim=-1).reshape(-1, 2)
        for d in range(1, window + 1)
    ]
    return torch.cat(parts)


def sample_chains(
    transition: torch.Tensor, stationary: torch.Tensor, n_chains: int, length: int, generator: torch.Generator
) -> torch.Tensor:
    """Sample independent chains started from the stationary law (so every step is stationary).

    Returns (n_chains, length) int64. Deterministic given the generator's state.
    """
    if n_chains < 1 or length < 1:
        raise InputError(f"n_chains and length must be >= 1, got n_chains={n_chains}, length={length}.")
    cum = torch.cumsum(transition, dim=1)
    cum[:, -1] = 1.0 + 1e-12
    start_cum = torch.cumsum(stationary, dim=0)
    start_cum[-1] = 1.0 + 1e-12
    u = torch.rand(n_chains, length, generator=generator, dtype=torch.float64)
    out = torch.empty(n_chains, length, dtype=torch.int64)
    out[:, 0] = torch.searchsorted(start_cum, u[:, :1].contiguous()).squeeze(1)
    for t in range(1, length):
        rows = cum[out[:, t - 1]]
        out[:, t] = torch.searchsorted(rows, u[:, t : t + 1].contiguous()).squeeze(1)
    return out


def make_world(
    m: int = 128,
    window: int = 2,
    *,
    structure: str = "torus",
    bandwidth: float = 0.1,
    teleport: float = 0.05,
    seed: int = 0,
) -> World:
    """A structured world: M states at latent positions, random-walk transitions to nearby states.

    Parameters
    ----------
    m : int
        Number of states, >= 2.
    window : int
        Co-occurrence window, >= 1.
    structure : {"torus", "ring"}
        ``"torus"``: M random points on the unit 2-D torus (uneven density, so pi is not uniform);
        ``"ring"``: M evenly spaced points on a circle (circumference 1).
    bandwidth : float
        Length scale of a step: transition weight ``exp(-dist^2 / (2 bandwidth^2))`` (self-loops included).
    teleport : float
        Probability in [0, 1) of jumping to a uniformly random state; > 0 makes every P_coor entry positive.
    seed : int
        Seed of the positions (ignored for the ring).

    Returns
    -------
    World
    """
    check_int(m, "m", minimum=2, hint="the number of states")
    _check_window(window)
    check_choice(structure, "structure", STRUCTURES)
    check_float(bandwidth, "bandwidth", 0.0, inclusive=(False, True), hint="a positive number")
    check_float(teleport, "teleport", 0.0, 1.0, inclusive=(True, False), hint="a probability in [0, 1)")
    gen = torch.Generator().manual_seed(int(seed))
    if structure == "torus":
        pos = torch.rand(m, 2, generator=gen, dtype=torch.float64)
        diff = (pos[:, None, :] - pos[None, :, :]).abs()
        diff = torch.minimum(diff, 1.0 - diff)
        dist2 = (diff**2).sum(-1)
    else:
        angle = torch.arange(m, dtype=torch.float64) / m
        pos = torch.stack([torch.cos(2 * math.pi * angle), torch.sin(2 * math.pi * angle)], dim=1)
        diff = (angle[:, None] - angle[None, :]).abs()
        diff = torch.minimum(diff, 1.0 - diff)
        dist2 = diff**2
    weights = torch.exp(-dist2 / (2 * bandwidth**2))
    local = weights / weights.sum(1, keepdim=True)
    transition = (1 - teleport) * local + teleport / m
    world = World.from_transition(transition, window)
    return World(transition=world.transition, stationary=world.stationary, window=world.window, positions=pos)
