"""How much the same-items maximum over layer pairs overstates alignment: raw max vs held-out vs calibrated.

A planted null: two "models" with L layers each of independent Gaussian features (no relation at all), N items.
For each metric: the same-items maximum over the L x L layer pairs (what a sweep reports), the held-out score
(best pair chosen on one random half of the items, scored on the other half, mean and spread over S splits,
``prh.sweep(select="held-out")``), the permutation-calibrated score of the maximum (K permutations of the items
of Y, ``prh.stats.calibrate_sweep``) and the metric's null expectation at N and at N/2 where it has one.

Usage: python benchmarks/held_out_selection.py [--n 256] [--layers 6] [--dim 64] [--splits 20] [--K 200]
"""

from __future__ import annotations

import argparse

import numpy as np

import prh
from prh.metrics import spec
from prh.stats import calibrate_sweep

METRICS = (("mutual_knn", {"k": 10}), ("unbiased_cka", {}), ("linear_predictivity", {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--K", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    x = prh.prepare(rng.standard_normal((args.n, args.layers, args.dim)).astype(np.float32))
    y = prh.prepare(rng.standard_normal((args.n, args.layers, args.dim)).astype(np.float32))
    print(
        f"planted null: N={args.n}, {args.layers} x {args.layers} layer pairs of {args.dim}-d independent features"
    )
    print(
        "| metric | raw max (same items) | held-out mean [spread over splits] | calibrated | null at N | null at N/2 |"
    )
    print("|---|---|---|---|---|---|")
    for metric, kw in METRICS:
        sw = prh.sweep(x, y, metric, select="held-out", splits=args.splits, select_seed=args.seed, **kw)
        cal = calibrate_sweep(x, y, metric, K=args.K, seed=args.seed, observed=sw, **kw)
        low, high = sw.held_out.interval
        s = spec(metric)
        nulls = [
            f"{s.null_expectation(n, s.check_kwargs(n, **kw)):.4f}" if s.null_expectation else "≤ 0"
            for n in (args.n, args.n // 2)
        ]
        print(
            f"| {metric} | {sw.best:.4f} | {sw.held_out.mean:.4f} [{low:.4f}, {high:.4f}] | {cal.calibrated:.4f} "
            f"(p = {cal.p_value:.3f}) | {nulls[0]} | {nulls[1]} |"
        )


if __name__ == "__main__":
    main()
