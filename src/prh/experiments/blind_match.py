"""`prh experiment blind-match`: recover the image–caption pairing from the two kernels alone, without one pair.

If a vision and a language model's kernels converge to one kernel, the pairing of images and captions is recoverable
from the kernels alone (Maniparambil et al., CVPR 2024, "Do Vision and Language Encoders Represent the World
Similarly?"; Schnaus et al., CVPR 2025, "It's a (Blind) Match!"). This experiment measures how much of it:

* the layers of each model pair: the best layer pair of a stored `prh align` result (``--alignment DIR``), given
  layers (``--layers name=index,...``), or the best mutual-kNN layer pair on all N items;
* the focus pairs: the best and the worst cross-modal (vision x language) pair by mutual kNN, the best vision x vision
  pair (an easier upper reference), and the shuffled-caption control (the best cross-modal pair with its captions
  permuted once: the claimed pairing is wrong, so matching must sit at chance);
* for each focus pair, gallery size n (``--sizes``) and random subset (``--subsets``): the language (or second) model's
  rows are shuffled (the pairing hidden), each method of :mod:`prh.experiments._matching` solves for the permutation,
  and accuracy (items sent to their own row, chance 1/n) and top-5 accuracy (chance 5/n) are scored against the
  hidden truth; QAP is also run seeded with s = fraction x n known pairs (``--seeds``), scored on the other items;
* the scan: every cross-modal and vision pair at ``--scan-n`` items with QAP, and the Spearman correlation (bootstrap
  interval over pairs, :func:`prh.stats.correlation`) of blind-matching accuracy with mutual kNN and with CKNNA.

Cost. QAP and GW are O(n^3) per iteration. Before the grid runs, every method is timed on the best pair at a probe
size and extrapolated as n^3; ``--sizes auto`` keeps the cheapest (method, n) cells that fit ``--budget`` minutes
(the larger n of a method are dropped first and listed), and explicit sizes whose estimate exceeds
``--max-minutes`` are refused with the estimate.

One file, over the usual ~450 lines, on purpose: the experiment's options, its plan (focus pairs, sizes, the cost
budget that refuses or drops settings), the run over pairs, sizes, subsets and seeds, the all-pairs scan and the
report section all read and write one results layout; the solvers live in :mod:`prh.experiments._matching` and the
figures in :mod:`prh.experiments._blind_plots`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prh._validation import ConfigFields, check_float, check_int, check_names, check_quantile, check_str
from prh.errors import InputError
from prh.experiments import _matching
from prh.experiments.base import Context, ExperimentResult, ExperimentSpec

#: Gallery sizes of ``--sizes auto`` (those up to N, trimmed to the budget).
AUTO_SIZES = (10, 32, 100, 320, 1024)
#: Items of the timing probe (or N, if smaller).
PROBE_N = 64
#: Top-k of the second accuracy.
TOP_K = 5
#: The focus pairs, in report order.
ROLES = ("best", "worst", "vision", "control")


def parse_sizes(text: str, n: int) -> list[int]:
    """Gallery sizes: ``"auto"`` (:data:`AUTO_SIZES` up to N) or comma-separated integers, each 3 <= n <= N.

    Raises
    ------
    InputError
        A size that is not an integer, below 3, above N, or repeated.
    """
    if text.strip().lower() == "auto":
        return [m for m in AUTO_SIZES if m <= n] or [n]
    out: list[int] = []
    for part in text.split(","):
        try:
            m = int(part.strip())
        except ValueError:
            raise InputError(
                f"--sizes {text!r}: {part.strip()!r} is not an integer; e.g. --sizes 10,32,100."
            ) from None
        if m < 3 or m > n:
            raise InputError(f"--sizes {text!r}: n={m} must be between 3 and N={n} (the items there are).")
        if m in out:
            raise InputError(f"--sizes {text!r} names {m} twice.")
        out.append(m)
    return sorted(out)


def parse_seeds(text: str) -> list[float]:
    """Seed fractions of seeded QAP: comma-separated numbers in [0, 1), e.g. ``"0,0.01,0.05,0.1"``; 0 is always in.

    Raises
    ------
    InputError
        Not a number, or a fraction outside [0, 1) (a fraction of 1 or more leaves nothing to match).
    """
    out = [0.0]
    for part in text.split(","):
        if not part.strip():
            continue
        try:
            f = float(part.strip())
        except ValueError:
            raise InputError(
                f"--seeds {text!r}: {part.strip()!r} is not a number; e.g. --seeds 0,0.05,0.1."
            ) from None
        if not 0.0 <= f < 1.0:
            raise InputError(
                f"--seeds {text!r}: {f} is not a fraction in [0, 1) of the n items (known pairs must be fewer than n)."
            )
        if f not in out:
            out.append(f)
    return sorted(out)


def seed_count(fraction: float, n: int) -> int:
    """Known pairs for a seed fraction of n items: round(fraction x n), at least 1 for a positive fraction, < n."""
    if fraction <= 0:
        return 0
    return int(min(n - 1, max(1, round(fraction * n))))


def parse_layers(text: str) -> dict[str, int]:
    """``"name=index,..."`` -> {model: layer index} (negative indices count from the last layer)."""
    out: dict[str, int] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise InputError(
                f"--layers {text!r}: {part.strip()!r} is not name=index, e.g. --layers minilm-l6=5."
            )
    return out


@dataclass(frozen=True)
class BlindMatchConfig(ConfigFields):
    """Options of the blind-match experiment (frozen, validated when built)."""

    sizes: str = field(
        default="auto",
        metadata={
            "help": "Gallery sizes n: auto (10, 32, 100, 320, 1024 up to N, within --budget) or e.g. 10,32,100."
        },
    )
    subsets: int = field(default=5, metadata={"help": "Random item subsets per size (>= 1)."})
    methods: str = field(
        default="qap,gw,gw-entropic,signature",
        metadata={"help": "Matching methods: qap, gw, gw-entropic, signature."},
    )
    seeds: str = field(
        default="0,0.01,0.05,0.1", metadata={"help": "Seeded QAP: fractions of n given as known pairs."}
    )
    restarts: int = field(
        default=3, metadata={"help": "QAP runs per problem (first from the barycentre, then random)."}
    )
    epsilon: float = field(
        default=0.05, metadata={"help": "Entropic regularisation of gw-entropic (standardised kernels)."}
    )
    scan_n: int = field(
        default=100,
        metadata={"help": "Items of the all-pairs scan (QAP) for the correlation with alignment; 0 = off."},
    )
    k: int = field(
        default=10, metadata={"help": "Neighbours of mutual kNN / CKNNA (layer choice, correlation)."}
    )
    alignment: str = field(
        default="", metadata={"help": "Folder of a stored prh align result: its best layer pairs."}
    )
    layers: str = field(
        default="",
        metadata={"help": "Given layers, e.g. minilm-l6=5,effnet-lite0=-1 (others: best mutual kNN)."},
    )
    budget: float = field(
        default=5.0, metadata={"help": "Minutes the auto grid may take (estimated; larger n dropped first)."}
    )
    max_minutes: float = field(
        default=60.0, metadata={"help": "Refuse explicit settings estimated to run longer (minutes)."}
    )
    q: float = field(default=0.95, metadata={"help": "Outlier clamp quantile of prh.prepare."})

    def __post_init__(self) -> None:
        clean: dict[str, Any] = {
            "sizes": check_str(self.sizes, "sizes", allow_empty=False),
            "subsets": check_int(self.subsets, "subsets", minimum=1, hint="random subsets per size"),
            "methods": ",".join(check_names(self.methods, "methods", _matching.METHODS)),
            "seeds": check_str(self.seeds, "seeds"),
            "restarts": check_int(self.restarts, "restarts", minimum=1, hint="QAP runs per problem"),
            "epsilon": check_float(self.epsilon, "epsilon", 0.0, None, inclusive=(False, True)),
            "scan_n": check_int(self.scan_n, "scan_n", minimum=0, hint="0 = off"),
            "k": check_int(self.k, "k", minimum=1),
            "alignment": check_str(self.alignment, "alignment"),
            "layers": check_str(self.layers, "layers"),
            "budget": check_float(self.budget, "budget", 0.0, None, inclusive=(False, True), hint="minutes"),
            "max_minutes": check_float(self.max_minutes, "max_minutes", 0.0, None, inclusive=(False, True)),
            "q": check_quantile(self.q, "q"),
        }
        parse_seeds(clean["seeds"])
        parse_layers(clean["layers"])
        if 0 < clean["scan_n"] < 3:
            raise InputError(f"scan_n={clean['scan_n']} must be 0 (off) or at least 3 items.")
        for name, value in clean.items():
            object.__setattr__(self, name, value)


# -- the problem ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One hidden-pairing problem: kernel ``a`` of the items, kernel ``b`` of the partner rows in a hidden order.

    ``truth[i]`` is the row of ``b`` holding item ``i``'s partner.
    """

    a: np.ndarray
    b: np.ndarray
    truth: np.ndarray


def make_problem(x: Any, y: Any, idx: np.ndarray, rng: np.random.Generator) -> Problem:
    """Kernels of rows ``idx`` of ``x`` and ``y`` (each (N, D)), ``y``'s rows shuffled by a random permutation."""
    sigma = rng.permutation(len(idx))
    a = _matching.kernel(np.asarray(x)[idx])
    b = _matching.kernel(np.asarray(y)[idx][sigma])
    return Problem(a, b, np.argsort(sigma))


def solve(
    problem: Problem,
    method: str,
    seeds: int,
    config: BlindMatchConfig,
    rng: np.random.Generator,
    device: str | None = None,
) -> dict[str, float]:
    """Solve one problem with one method and ``seeds`` known pairs (random items); accuracy, top-5 and chance are
    over the items that were not seeds."""
    n = len(problem.truth)
    if seeds >= n:
        raise InputError(
            f"seeds={seeds} known pairs of n={n} items leave nothing to match; give fewer than n."
        )
    items = rng.choice(n, size=seeds, replace=False) if seeds else np.zeros(0, dtype=np.int64)
    pairs = np.stack([items, problem.truth[items]], axis=1) if seeds else None
    start = time.perf_counter()
    result = _matching.match(
        problem.a,
        problem.b,
        method,
        seeds=pairs,
        restarts=config.restarts,
        epsilon=config.epsilon,
        seed=int(rng.integers(2**31)),
        device=device,
    )
    elapsed = time.perf_counter() - start
    free = n - seeds
    return {
        "accuracy": _matching.accuracy(result.perm, problem.truth, exclude=items),
        "top5": _matching.top_k(result.scores, problem.truth, TOP_K, exclude=items),
        "chance": 1.0 / free,
        "chance_top5": min(TOP_K, free) / free,
        "seeds_kept": bool(np.array_equal(result.perm[items], problem.truth[items])) if seeds else True,
        "time_s": elapsed,
    }


# -- cost -------------------------------------------------------------------------------------------------------
def estimate(
    probe: dict[str, float], probe_n: int, cells: list[tuple[str, int, int]]
) -> dict[tuple[str, int], float]:
    """Seconds per (method, n) cell: the probe's time at ``probe_n`` x (n / probe_n)^3 (at least the probe's time),
    times the cell's count of problems. ``cells``: (method, n, problems)."""
    out: dict[tuple[str, int], float] = {}
    for method, n, count in cells:
        out[(method, n)] = out.get((method, n), 0.0) + probe[method] * max(1.0, (n / probe_n) ** 3) * count
    return out


def plan(
    costs: dict[tuple[str, int], float], budget_s: float
) -> tuple[set[tuple[str, int]], list[tuple[str, int]]]:
    """The cells that fit ``budget_s``, cheapest first (so a method's larger n go first); and the dropped ones."""
    kept: set[tuple[str, int]] = set()
    dropped: list[tuple[str, int]] = []
    total = 0.0
    for cell in sorted(costs, key=lambda c: (costs[c], c[1])):
        if total + costs[cell] <= budget_s:
            kept.add(cell)
            total += costs[cell]
        else:
            dropped.append(cell)
    # never keep a larger n of a method whose smaller n was dropped (the curve stays contiguous)
    for method, n in list(kept):
        if any(m == method and d < n for m, d in dropped):
            kept.discard((method, n))
            dropped.append((method, n))
    return kept, sorted(dropped)


def _label(method: str, fraction: float) -> str:
    """The cost cell of a method variant: seeded QAP is planned apart from plain QAP."""
    return "qap-seeded" if fraction > 0 else method


def _fmt_time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


# -- layers and pairs -------------------------------------------------------------------------------------------
def _stored_layers(folder: str) -> dict[tuple[str, str], tuple[int, int]]:
    """Best layer pairs by mutual kNN of a stored `prh align` result: {(model_x, model_y): (layer_x, layer_y)}."""
    from prh.align.engine import Results

    table = Results.load(folder).table
    rows = table[(table["metric"] == "mutual_knn") & (table["control"] == "none")]
    if rows.empty:
        raise InputError(
            f"--alignment {folder}: the result holds no mutual_knn rows; run `prh align --metrics mutual_knn`."
        )
    out = {}
    for _, r in rows.iterrows():
        out[(r["model_x"], r["model_y"])] = (int(r["best_layer_x"]), int(r["best_layer_y"]))
        out[(r["model_y"], r["model_x"])] = (int(r["best_layer_y"]), int(r["best_layer_x"]))
    return out


def _pick_layer(layers: list, index: int, name: str) -> int:
    if not -len(layers) <= index < len(layers):
        raise InputError(f"--layers: {name} has {len(layers)} layers; index {index} is out of range.")
    return index % len(layers)


def _pair_layers(
    fx: Any, fy: Any, given: dict[str, int], stored: dict, k: int
) -> tuple[int, int, float, float, str]:
    """Layers of a pair (given > stored result > best mutual kNN), with its mutual kNN and CKNNA there."""
    from prh._sweep import sweep

    if fx.name in given or fy.name in given:
        lx = _pick_layer(fx.layers, given.get(fx.name, -1), fx.name)
        ly = _pick_layer(fy.layers, given.get(fy.name, -1), fy.name)
        source = "given"
    elif (fx.name, fy.name) in stored:
        lx, ly = stored[(fx.name, fy.name)]
        source = "stored"
    else:
        lx, ly = sweep(fx.layers, fy.layers, "mutual_knn", k=k).best_layers
        source = "best mutual kNN"
    knn = sweep([fx.layers[lx]], [fy.layers[ly]], "mutual_knn", k=k).best
    cknna = sweep([fx.layers[lx]], [fy.layers[ly]], "cknna", k=k).best
    return int(lx), int(ly), float(knn), float(cknna), source


def _interval(values: np.ndarray) -> tuple[float, float]:
    """95% t-interval of the mean of per-subset values (the subset's spread; a single subset gives no width)."""
    from scipy import stats

    m = len(values)
    mean = float(np.mean(values))
    if m < 2:
        return mean, mean
    half = float(stats.t.ppf(0.975, m - 1) * np.std(values, ddof=1) / np.sqrt(m))
    return mean - half, mean + half


def _binomial_band(total: int, chance: float) -> tuple[float, float]:
    """Central 95% band of the fraction of successes of ``total`` Bernoulli(chance) trials."""
    from scipy import stats

    lo, hi = stats.binom.interval(0.95, total, chance)
    return float(lo / total), float(hi / total)


def _device(option: str) -> str | None:
    import torch

    if option == "auto":
        return "cuda" if torch.cuda.is_available() else None
    return None if option == "cpu" else option


# -- the run ----------------------------------------------------------------------------------------------------
def run(ctx: Context, config: BlindMatchConfig) -> ExperimentResult:  # noqa: PLR0915 - one experiment, in order
    """Choose layers and focus pairs, time the methods, run the grid and the scan, write tables, figures, section."""
    import itertools

    import pandas as pd

    base = ctx.load_dataset()
    n_items = len(base)
    sizes = parse_sizes(config.sizes, n_items)
    seed_fracs = parse_seeds(config.seeds)
    methods = config.methods.split(",")
    if config.scan_n > n_items:
        raise InputError(
            f"--scan-n {config.scan_n} exceeds the N={n_items} items; lower --scan-n or raise --n."
        )
    given = parse_layers(config.layers)
    stored = _stored_layers(config.alignment) if config.alignment else {}
    usable = ctx.usable_models()
    specs = ctx.extract(list(usable["vision"]) + list(usable["language"]), base)
    feats = {f.name: f for f in ctx.features(specs, base, q=config.q)}
    vision = [s.name for s in specs if s.modality == "vision"]
    language = [s.name for s in specs if s.modality == "language"]
    if not vision or not language:
        raise InputError("blind matching needs at least one vision and one language model with features.")
    unknown = sorted(set(given) - set(feats))
    if unknown:
        raise InputError(f"--layers names {unknown}, not among the run's models {sorted(feats)}.")
    device = _device(ctx.options.device)

    # every pair's layers and alignment
    pairs: list[dict] = []
    combos = [("cross", v, t) for v in vision for t in language]
    combos += [("vision", a, b) for a, b in itertools.combinations(vision, 2)]
    for kind, mx, my in combos:
        lx, ly, knn, cknna, source = _pair_layers(feats[mx], feats[my], given, stored, config.k)
        pairs.append(
            {
                "kind": kind,
                "model_x": mx,
                "model_y": my,
                "layer_x": lx,
                "layer_y": ly,
                "mutual_knn": knn,
                "cknna": cknna,
                "layers_from": source,
            }
        )
    pair_table = pd.DataFrame(pairs)
    cross = pair_table[pair_table["kind"] == "cross"].sort_values("mutual_knn", ascending=False)
    focus: dict[str, dict] = {"best": cross.iloc[0].to_dict(), "worst": cross.iloc[-1].to_dict()}
    within = pair_table[pair_table["kind"] == "vision"].sort_values("mutual_knn", ascending=False)
    if not within.empty:
        focus["vision"] = within.iloc[0].to_dict()
    focus["control"] = dict(focus["best"])
    if len(cross) == 1:
        focus.pop("worst")

    rng = np.random.default_rng(30_000 + ctx.options.seed)
    control_perm = rng.permutation(n_items)  # caption of item i := caption of item control_perm[i]

    def arrays(role: str) -> tuple[np.ndarray, np.ndarray]:
        p = focus[role]
        x = feats[p["model_x"]].layers[p["layer_x"]].double().numpy()
        y = feats[p["model_y"]].layers[p["layer_y"]].double().numpy()
        return (x, y[control_perm]) if role == "control" else (x, y)

    draws = {  # all N items are one subset (repeats of it would not be independent)
        m: [np.arange(n_items)]
        if m == n_items
        else [np.sort(rng.choice(n_items, size=m, replace=False)) for _ in range(config.subsets)]
        for m in sizes
    }
    variants = [(method, 0) for method in methods] + [
        ("qap", f) for f in seed_fracs if f > 0 and "qap" in methods
    ]

    # timing probe on the best pair, then the plan
    probe_n = min(PROBE_N, n_items)
    x, y = arrays("best")
    probe_problem = make_problem(x, y, np.sort(rng.choice(n_items, size=probe_n, replace=False)), rng)
    probe = {m: solve(probe_problem, m, 0, config, rng, device)["time_s"] for m in methods}
    ctx.log(f"probe at n={probe_n}: " + ", ".join(f"{m} {t:.2f} s" for m, t in probe.items()))
    rates = probe | {"qap-seeded": probe.get("qap", 0.0), "qap-scan": probe.get("qap", 0.0)}
    cells = [(_label(method, f), m, len(focus) * len(draws[m])) for method, f in variants for m in sizes]
    scan_on = bool(config.scan_n) and "qap" in methods
    if scan_on:
        cells.append(("qap-scan", config.scan_n, len(pair_table) * config.subsets))
    costs = estimate(rates, probe_n, cells)
    total = sum(costs.values())
    if config.sizes.strip().lower() == "auto":
        scan_cost = costs.pop(("qap-scan", config.scan_n), 0.0)
        if scan_cost > config.budget * 60:
            raise InputError(
                f"the all-pairs scan at --scan-n {config.scan_n} alone is estimated at {_fmt_time(scan_cost)}, "
                f"over --budget {config.budget:g} min; lower --scan-n (or 0 = off) or raise --budget."
            )
        kept, dropped = plan(costs, config.budget * 60 - scan_cost)
        if scan_on:
            costs[("qap-scan", config.scan_n)] = scan_cost
            kept.add(("qap-scan", config.scan_n))
    else:
        if total > config.max_minutes * 60:
            worst = sorted(costs.items(), key=lambda kv: -kv[1])[:3]
            raise InputError(
                f"this grid is estimated at {_fmt_time(total)} on this machine (probe at n={probe_n}, n^3 scaling; "
                f"largest: {', '.join(f'{m} n={n} {_fmt_time(s)}' for (m, n), s in worst)}), over --max-minutes "
                f"{config.max_minutes:g}; use fewer/smaller --sizes, fewer --subsets or --methods, or raise --max-minutes."
            )
        kept, dropped = set(costs), []
    for label, m in dropped:
        ctx.log(f"skipping {label} at n={m}: estimated {_fmt_time(costs[(label, m)])} (over --budget)")
    planned = sum(costs[c] for c in kept)

    # the focus grid
    rows: list[dict] = []
    count = len(focus) * sum(
        len(draws[m]) for method, f in variants for m in sizes if (_label(method, f), m) in kept
    )
    bar = ctx.bar(count, "blind match")
    for role in focus:
        x, y = arrays(role)
        for m in sizes:
            for r, idx in enumerate(draws[m]):
                problem = make_problem(x, y, idx, np.random.default_rng([ctx.options.seed, m, r]))
                done: set[int] = set()
                for method, frac in variants:
                    if (_label(method, frac), m) not in kept:
                        continue
                    s = seed_count(frac, m)
                    if frac > 0 and (s == 0 or s in done):
                        continue  # a fraction that rounds to no seed, or to the count of a smaller fraction
                    done.add(s)
                    out = solve(
                        problem, method, s, config, np.random.default_rng([ctx.options.seed, m, r, s]), device
                    )
                    rows.append(
                        {
                            "role": role,
                            "kind": "control" if role == "control" else focus[role]["kind"],
                            "model_x": focus[role]["model_x"],
                            "model_y": focus[role]["model_y"],
                            "n": m,
                            "subset": r,
                            "method": method,
                            "seed_fraction": frac,
                            "seeds": s,
                            **out,
                        }
                    )
                    bar.update(1)
    bar.close()
    grid = pd.DataFrame(rows)
    if not grid.empty and not grid["seeds_kept"].all():  # pragma: no cover - scipy's partial_match contract
        raise RuntimeError("seeded QAP reassigned a known pair")

    # the scan across all pairs
    scan_rows: list[dict] = []
    if config.scan_n and "qap" in methods:
        scan_idx = [
            np.sort(rng.choice(n_items, size=config.scan_n, replace=False)) for _ in range(config.subsets)
        ]
        bar = ctx.bar(len(pair_table) * config.subsets, "all pairs")
        for _, p in pair_table.iterrows():
            x = feats[p["model_x"]].layers[p["layer_x"]].double().numpy()
            y = feats[p["model_y"]].layers[p["layer_y"]].double().numpy()
            for r, idx in enumerate(scan_idx):
                problem = make_problem(x, y, idx, np.random.default_rng([ctx.options.seed, 7, r]))
                out = solve(
                    problem, "qap", 0, config, np.random.default_rng([ctx.options.seed, 8, r]), device
                )
                scan_rows.append(
                    {
                        "kind": p["kind"],
                        "model_x": p["model_x"],
                        "model_y": p["model_y"],
                        "n": config.scan_n,
                        "subset": r,
                        **out,
                    }
                )
                bar.update(1)
        bar.close()
    scan = pd.DataFrame(scan_rows)

    summary, curves, lines, scan_pairs_table = _summarise(grid, scan, pair_table, focus, config, ctx)
    lines.insert(
        0,
        (
            f"{base.name}: N={n_items} items; {len(language)} language x {len(vision)} vision models; sizes "
            f"{', '.join(map(str, sizes))}; {config.subsets} subsets each; methods {', '.join(methods)}; "
            f"estimated {_fmt_time(planned)}, took {_fmt_time(time.perf_counter() - ctx.started)}"
            + (f"; GW on {device}" if device else "")
            + "."
        ),
    )
    summary.update(
        {
            "n": n_items,
            "dataset": base.name,
            "sizes": sizes,
            "methods": methods,
            "probe_seconds": probe,
            "probe_n": probe_n,
            "estimated_seconds": planned,
            "dropped_cells": [f"{m}@{n}" for m, n in dropped],
            "device": device or "cpu",
        }
    )
    ctx.write_csv("pairs.csv", scan_pairs_table)
    ctx.write_csv("matches.csv", grid)
    ctx.write_csv("curves.csv", curves)
    if not scan.empty:
        ctx.write_csv("scan.csv", scan)
    ctx.write_json("results.json", {"summary": summary, "provenance": ctx.provenance(config)})
    from prh.experiments import _blind_plots

    figs = [ctx.figure_path("accuracy_vs_n.png")]
    _blind_plots.accuracy_vs_n(curves, focus, figs[0])
    if len(seed_fracs) > 1 and "qap" in methods:
        figs.append(ctx.figure_path("accuracy_vs_seeds.png"))
        _blind_plots.accuracy_vs_seeds(curves, figs[-1])
    if not scan.empty:
        figs.append(ctx.figure_path("accuracy_vs_alignment.png"))
        _blind_plots.accuracy_vs_alignment(scan_pairs_table, summary.get("correlation", {}), figs[-1])
    _section(ctx, figs, lines, curves)
    return ExperimentResult("blind-match", summary, lines, ctx.folder, list(ctx.files))


def _summarise(grid: Any, scan: Any, pair_table: Any, focus: dict, config: BlindMatchConfig, ctx: Context):
    import pandas as pd

    from prh.stats import correlation

    curves_rows = []
    keys = ["role", "model_x", "model_y", "n", "method", "seed_fraction"]
    for key, part in grid.groupby(keys, sort=False) if not grid.empty else []:
        acc = part["accuracy"].to_numpy()
        lo, hi = _interval(acc)
        t_lo, t_hi = _interval(part["top5"].to_numpy())
        free = int((part["n"] - part["seeds"]).iloc[0])
        correct = int(round((part["accuracy"] * free).sum()))
        b_lo, b_hi = _binomial_band(free * len(part), 1.0 / free)
        curves_rows.append(
            dict(zip(keys, key))
            | {
                "seeds": int(part["seeds"].iloc[0]),
                "accuracy": acc.mean(),
                "ci_low": max(0.0, lo),
                "ci_high": min(1.0, hi),
                "top5": part["top5"].mean(),
                "top5_low": max(0.0, t_lo),
                "top5_high": min(1.0, t_hi),
                "chance": 1.0 / free,
                "chance_top5": float(part["chance_top5"].iloc[0]),
                "correct": correct,
                "chance_band_low": b_lo,
                "chance_band_high": b_hi,
                "subsets": len(part),
                "time_s": part["time_s"].mean(),
            }
        )
    curves = pd.DataFrame(curves_rows)
    summary: dict[str, Any] = {
        "focus": {
            r: {k: focus[r][k] for k in ("model_x", "model_y", "layer_x", "layer_y", "mutual_knn", "cknna")}
            for r in focus
        }
    }
    lines: list[str] = []
    plain = curves[curves["seed_fraction"] == 0] if not curves.empty else curves
    summary["accuracy"] = {}
    for role in focus:
        part = plain[plain["role"] == role] if not plain.empty else plain
        p = focus[role]
        label = {
            "best": "best cross-modal pair",
            "worst": "worst cross-modal pair",
            "vision": "best vision pair",
            "control": "shuffled-caption control (best pair)",
        }[role]
        summary["accuracy"][role] = (
            {
                method: {
                    int(r["n"]): {
                        "accuracy": r["accuracy"],
                        "ci": [r["ci_low"], r["ci_high"]],
                        "top5": r["top5"],
                        "chance": r["chance"],
                    }
                    for _, r in part[part["method"] == method].iterrows()
                }
                for method in part["method"].unique()
            }
            if not part.empty
            else {}
        )
        if part.empty:
            continue
        top = part[part["n"] == part["n"].max()]
        best_method = top.sort_values("accuracy", ascending=False).iloc[0]
        text = (
            f"{label} {p['model_x']}[{p['layer_x']}] x {p['model_y']}[{p['layer_y']}] (mutual kNN {p['mutual_knn']:.3f}): "
            f"at n={int(best_method['n'])} "
            + ", ".join(
                f"{r['method']} {r['accuracy']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] (top-5 {r['top5']:.3f})"
                for _, r in top.iterrows()
            )
            + f"; chance {best_method['chance']:.4f}"
        )
        if role == "control":
            control = plain[plain["role"] == "control"]
            outside = (control["accuracy"] < control["chance_band_low"]) | (
                control["accuracy"] > control["chance_band_high"]
            )
            text += (
                f" — {int(outside.sum())} of {len(control)} (n, method) cells outside the binomial 95% band of "
                f"chance (about 5% expected by chance alone)"
            )
            summary["control"] = {"cells": len(control), "outside_95_band": int(outside.sum())}
        lines.append(text + ".")
    seeded = (
        curves[(curves["seed_fraction"] > 0) & (curves["role"] == "best")] if not curves.empty else curves
    )
    if not seeded.empty:
        m = int(seeded["n"].max())
        part = curves[
            (curves["role"] == "best") & (curves["method"] == "qap") & (curves["n"] == m)
        ].sort_values("seeds")
        lines.append(
            f"seeded QAP, best pair, n={m}: "
            + ", ".join(
                f"s={int(r['seeds'])} {r['accuracy']:.3f} (chance {r['chance']:.4f})"
                for _, r in part.iterrows()
            )
            + " (accuracy on the unseeded items)."
        )
    table = pair_table.copy()
    if not scan.empty:
        acc = scan.groupby(["model_x", "model_y"], sort=False)["accuracy"].mean().rename("accuracy")
        top5 = scan.groupby(["model_x", "model_y"], sort=False)["top5"].mean().rename("top5")
        table = table.merge(acc.reset_index(), on=["model_x", "model_y"]).merge(
            top5.reset_index(), on=["model_x", "model_y"]
        )
        table["chance"] = 1.0 / config.scan_n
        summary["correlation"] = {}
        for metric in ("mutual_knn", "cknna"):
            try:
                res = correlation(
                    table["accuracy"].to_numpy(),
                    table[metric].to_numpy(),
                    "spearman",
                    B=1000,
                    K=1000,
                    seed=ctx.options.seed,
                )
            except InputError as err:
                summary["correlation"][metric] = {"error": str(err)}
                lines.append(f"all-pairs scan: Spearman ρ of accuracy vs {metric} not defined: {err}")
                continue
            summary["correlation"][metric] = res.to_dict()
            lines.append(
                f"all {res.n} pairs at n={config.scan_n} (QAP): Spearman ρ of blind-matching accuracy vs "
                f"{metric} = {res.r:.2f} [{res.ci_low:.2f}, {res.ci_high:.2f}], p = {res.p_value:.3g}."
            )
    return summary, curves, lines, table


def _section(ctx: Context, figs: list, lines: list[str], curves: Any) -> None:
    from prh.report.sections import Figure, Section, Table

    captions = {
        "accuracy_vs_n.png": (
            "Blind-matching accuracy against gallery size n (log axis) per method, for the best and "
            "worst cross-modal pair, the best vision pair and the shuffled-caption control; bars are "
            "95% intervals over subsets, the dotted line is chance 1/n.",
            "Accuracy vs n",
        ),
        "accuracy_vs_seeds.png": (
            "Seeded QAP on the best cross-modal pair: accuracy on the unseeded items against the "
            "fraction of known pairs, per n; dotted lines are chance.",
            "Accuracy vs seeds",
        ),
        "accuracy_vs_alignment.png": (
            "Every pair at the scan size: blind-matching accuracy (QAP) against mutual kNN and "
            "CKNNA of its layer pair.",
            "Accuracy vs alignment",
        ),
    }
    show = (
        curves[
            [
                "role",
                "model_x",
                "model_y",
                "n",
                "method",
                "seeds",
                "accuracy",
                "ci_low",
                "ci_high",
                "top5",
                "chance",
                "subsets",
                "time_s",
            ]
        ]
        if not curves.empty
        else curves
    )
    ctx.write_section(
        Section(
            name="blind-match",
            title=SPEC.title,
            order=SPEC.order,
            paragraphs=[
                "Can the image–caption pairing be recovered from the two models' kernels alone? For random subsets of n "
                "items the second model's rows are shuffled and the permutation that best aligns the two kernels is "
                "solved for (quadratic assignment, Gromov–Wasserstein, a sorted-row signature baseline); accuracy is the "
                "fraction of items sent to their own partner (chance 1/n). The shuffled-caption control must sit at chance."
            ],
            findings=lines,
            figures=[Figure(ctx.relative(f), *captions[f.name]) for f in figs],
            tables=[Table("Accuracy per pair, n, method and seeds (mean over subsets, 95% interval)", show)],
            files=[(p.name, ctx.relative(p)) for p in ctx.files if p.suffix in (".json", ".csv")],
        )
    )


SPEC = ExperimentSpec(
    name="blind-match",
    title="Blind matching: the pairing from the kernels alone",
    summary="Recover the image-caption pairing from a vision and a language model's kernels without pairs (QAP, "
    "Gromov-Wasserstein, a signature baseline): accuracy vs n, seeds, control at chance, vs alignment.",
    config=BlindMatchConfig,
    run=run,
    models="offline",
    dataset="openmoji",
    n=320,
    dataset_help="Paired dataset: openmoji (offline) or any dataset prh loads (a Hugging Face dataset name, a folder).",
    order=65,
)
