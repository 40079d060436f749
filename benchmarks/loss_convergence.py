"""How close the soft neighbourhood losses come to the hard metrics as the temperature falls.

For ``--seeds`` random related pairs (B items, a shared 8-d latent seen through two random linear maps plus noise,
float64, rows L2-normalised), prints the mean and largest |soft - hard| of :class:`prh.losses.SoftMutualKNN` against
:func:`prh.metrics.mutual_knn` and of :class:`prh.losses.SoftCKNNA` against :func:`prh.metrics.cknna` (k = 10) at
each temperature, as a Markdown table (docs/training.md quotes it)::

    python benchmarks/loss_convergence.py --b 256 --seeds 10
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import prh
from prh.losses import SoftCKNNA, SoftMutualKNN

TEMPERATURES = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001, 1e-4, 1e-5)


def pair(b: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, 8, generator=g, dtype=torch.float64)
    x = z @ torch.randn(8, 64, generator=g, dtype=torch.float64) + torch.randn(
        b, 64, generator=g, dtype=torch.float64
    )
    y = z @ torch.randn(8, 32, generator=g, dtype=torch.float64) + torch.randn(
        b, 32, generator=g, dtype=torch.float64
    )
    return F.normalize(x, dim=1), F.normalize(y, dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--b", type=int, default=256, help="items per batch")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    pairs = [pair(args.b, s) for s in range(args.seeds)]
    hard = [(prh.metrics.mutual_knn(x, y, k=args.k), prh.metrics.cknna(x, y, k=args.k)) for x, y in pairs]
    print(
        f"B = {args.b}, k = {args.k}, {args.seeds} pairs; hard mutual kNN mean {sum(h[0] for h in hard) / len(hard):.3f}, "
        f"hard CKNNA mean {sum(h[1] for h in hard) / len(hard):.3f}\n"
    )
    print("| temperature | mutual kNN: mean abs error | max | CKNNA: mean abs error | max |")
    print("|---|---|---|---|---|")
    for t in TEMPERATURES:
        knn = [
            abs(float(SoftMutualKNN(k=args.k, temperature=t)(x, y)) - h[0]) for (x, y), h in zip(pairs, hard)
        ]
        ck = [abs(float(SoftCKNNA(k=args.k, temperature=t)(x, y)) - h[1]) for (x, y), h in zip(pairs, hard)]
        print(
            f"| {t:g} | {sum(knn) / len(knn):.2e} | {max(knn):.2e} | {sum(ck) / len(ck):.2e} | {max(ck):.2e} |"
        )


if __name__ == "__main__":
    main()
