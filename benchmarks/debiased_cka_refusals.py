"""How often debiased_cka refuses (its feature-debiased self term HSIC_d(A, A) <= 0), by N and D.

A is isotropic Gaussian noise (no structure shared across features: the population self term is 0) or a rank-3
signal plus noise of the same size; B is a rank-4 signal plus noise (always accepted). 40 seeds per cell, float64.
Prints the markdown table quoted in docs/metrics.md.

Usage: python benchmarks/debiased_cka_refusals.py
"""

from __future__ import annotations

import torch

import prh
from prh.errors import InputError

SEEDS = 40


def refused(n: int, d: int, signal: bool) -> int:
    """How many of the seeds make debiased_cka(A, B) refuse."""
    count = 0
    for seed in range(SEEDS):
        g = torch.Generator().manual_seed(seed)
        a = torch.randn(n, d, generator=g, dtype=torch.float64)
        if signal:
            a = a + torch.randn(n, 3, generator=g, dtype=torch.float64) @ torch.randn(
                3, d, generator=g, dtype=torch.float64
            )
        b = torch.randn(n, 4, generator=g, dtype=torch.float64) @ torch.randn(
            4, 6, generator=g, dtype=torch.float64
        ) + torch.randn(n, 6, generator=g, dtype=torch.float64)
        try:
            prh.metrics.debiased_cka(a, b)
        except InputError:
            count += 1
    return count


def main() -> None:
    torch.set_num_threads(1)
    print("| N | D | isotropic noise refused | rank-3 signal + noise refused |")
    print("|---:|---:|---:|---:|")
    for n in (10, 30, 100, 300):
        for d in (5, 50, 500):
            print(f"| {n} | {d} | {refused(n, d, False)}/{SEEDS} | {refused(n, d, True)}/{SEEDS} |")


if __name__ == "__main__":
    main()
