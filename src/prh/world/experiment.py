"""The Section 5 experiment: sweeps over learner capacity and training data, over seeds, plus the lossy case.

For every seed a world (Markov chain), two bijective renderings ``obs_X``, ``obs_Y`` and one lossy rendering of
``Y`` are drawn; co-occurring pairs are sampled from stationary chains; one contrastive learner per modality is
trained on its own observations only. Measured on all M states (noise-free observations):

* ``agree_x``, ``agree_y`` — Pearson correlation of each learned kernel with the exact PMI kernel (off-diagonal);
* ``mutual_knn``, ``unbiased_cka`` — cross-modal alignment of the two learned representations (``prh.metrics``).

:func:`run_world` returns a JSON-ready dict; :func:`summarise` turns the per-seed records into the numbers the
plots and the headline numbers use.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from prh._validation import ConfigFields, check_choice, check_float, check_int
from prh.errors import InputError
from prh.world.learner import LearnerConfig, embed_states, make_encoder, train_contrastive
from prh.world.measure import kernel_agreement, learned_kernel, lossy_target
from prh.world.observe import Rendering, make_rendering, merge_pairs
from prh.world.world import STRUCTURES, World, cooccurrence_pairs, make_world

Progress = Callable[[str], None]


def _increasing(values: object, name: str, minimum: int, what: str) -> tuple[int, ...]:
    """A non-empty, strictly increasing sequence of integers >= ``minimum``, as a tuple."""
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)) or not values:
        raise InputError(f"{name}={values!r} must be a non-empty list of integers ({what}).")
    out = tuple(check_int(v, f"{name}[{i}]", minimum=minimum, hint=what) for i, v in enumerate(values))
    if list(out) != sorted(set(out)):
        raise InputError(f"{name} must be strictly increasing, got {values!r}.")
    return out


@dataclass(frozen=True)
class WorldSettings(ConfigFields):
    """Every knob of the experiment (the defaults are the documented ``prh world`` run).

    Attributes
    ----------
    m, window, structure, bandwidth, teleport
        The world (see :func:`prh.world.world.make_world`).
    dim_x, dim_y : int
        Observation dimensions of the two modalities.
    noise : float
        Gaussian observation noise during training (0 = noise-free).
    lossy_fraction : float
        Share of states merged in random pairs by the lossy rendering of Y, in (0, 1].
    chain_length : int
        Length of each sampled chain; data sizes are counted in tokens (events) = chains x chain_length.
    tokens : int
        Training tokens for the capacity sweep and the lossy case.
    widths : tuple[int, ...]
        Hidden widths of the capacity sweep (increasing); the largest is "the largest learner".
    data_tokens : tuple[int, ...]
        Training-token counts of the data sweep (run at the largest width).
    depth, out_dim, steps, batch_size, lr, temperature
        Learner settings (see :class:`prh.world.learner.LearnerConfig`).
    k : int
        Neighbours of mutual_knn.
    """

    m: int = 128
    window: int = 2
    structure: str = "torus"
    bandwidth: float = 0.1
    teleport: float = 0.05
    dim_x: int = 32
    dim_y: int = 48
    noise: float = 0.0
    lossy_fraction: float = 1.0
    chain_length: int = 100
    tokens: int = 100_000
    widths: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    data_tokens: tuple[int, ...] = (1_000, 3_000, 10_000, 30_000, 100_000)
    depth: int = 2
    out_dim: int = 32
    steps: int = 800
    batch_size: int = 256
    lr: float = 3e-3
    temperature: float = 1.0
    k: int = 10

    def __post_init__(self) -> None:
        minimums = {"m": 2, "window": 1, "dim_x": 1, "dim_y": 1, "depth": 1, "out_dim": 1, "steps": 1}
        minimums.update(batch_size=2, k=1)
        clean: dict = {
            name: check_int(getattr(self, name), name, minimum=low) for name, low in minimums.items()
        }
        clean["chain_length"] = check_int(
            self.chain_length, "chain_length", minimum=clean["window"] + 1, hint="events per chain, > window"
        )
        clean["tokens"] = check_int(
            self.tokens, "tokens", minimum=clean["chain_length"], hint="at least one chain"
        )
        clean["structure"] = check_choice(self.structure, "structure", STRUCTURES)
        clean["widths"] = _increasing(self.widths, "widths", 1, "hidden widths of the capacity sweep")
        clean["data_tokens"] = _increasing(
            self.data_tokens, "data_tokens", clean["chain_length"], "training tokens, each >= chain_length"
        )
        clean["lossy_fraction"] = check_float(
            self.lossy_fraction,
            "lossy_fraction",
            0.0,
            1.0,
            inclusive=(False, True),
            hint="share of merged states",
        )
        clean["noise"] = check_float(self.noise, "noise", 0.0, hint="observation noise, 0 = none")
        for name, value in clean.items():  # the normalised values (ints, tuples) on the frozen instance
            object.__setattr__(self, name, value)
        if self.k >= self.m:
            raise InputError(f"k={self.k} must be smaller than the number of states m={self.m}.")
        if self.m < 4:
            raise InputError(f"m={self.m}: the experiment needs m >= 4 states (unbiased CKA needs N >= 4).")
        LearnerConfig(  # validates lr, temperature
            width=self.widths[-1], depth=self.depth, out_dim=self.out_dim, steps=self.steps,
            batch_size=self.batch_size, lr=self.lr, temperature=self.temperature,
        )  # fmt: skip

    def learner(self, width: int) -> LearnerConfig:
        """The learner configuration at hidden width ``width``."""
        return LearnerConfig(
            width=width, depth=self.depth, out_dim=self.out_dim, steps=self.steps,
            batch_size=self.batch_size, lr=self.lr, temperature=self.temperature,
        )  # fmt: skip

    def n_trainings(self) -> int:
        """Number of learners trained per seed (for progress bars)."""
        extra_data = [t for t in self.data_tokens if t != self.tokens]
        return 2 * len(self.widths) + 2 * len(extra_data) + 1


DEFAULT = WorldSettings()
FAST = WorldSettings(
    m=64, widths=(2, 8, 32, 128), data_tokens=(1_000, 20_000), tokens=20_000, steps=600, batch_size=256, k=5
)


@dataclass
class _Seeded:
    world: World
    pmi: torch.Tensor
    p_coor: torch.Tensor
    obs_x: Rendering
    obs_y: Rendering
    obs_y_lossy: Rendering
    chains: torch.Tensor
    generator: torch.Generator


def _setup(settings: WorldSettings, seed: int) -> _Seeded:
    world = make_world(
        settings.m, settings.window, structure=settings.structure, bandwidth=settings.bandwidth,
        teleport=settings.teleport, seed=seed,
    )  # fmt: skip
    base = 1000 * seed
    obs_x = make_rendering(settings.m, settings.dim_x, seed=base + 1, noise=settings.noise)
    obs_y = make_rendering(settings.m, settings.dim_y, seed=base + 2, noise=settings.noise)
    merge = merge_pairs(settings.m, settings.lossy_fraction, seed=base + 3)
    obs_y_lossy = make_rendering(settings.m, settings.dim_y, seed=base + 2, noise=settings.noise, merge=merge)
    gen = torch.Generator().manual_seed(base + 4)
    n_chains = max(max(settings.data_tokens), settings.tokens) // settings.chain_length
    chains = world.sample(n_chains, settings.chain_length, gen)
    p = world.p_coor()
    return _Seeded(world, world.pmi(), p, obs_x, obs_y, obs_y_lossy, chains, gen)


def _train(
    setup: _Seeded, rendering: Rendering, width: int, tokens: int, settings: WorldSettings, seed: int
) -> tuple[torch.Tensor, list[float]]:
    """Train one learner; returns its (M, out_dim) state embeddings and loss curve."""
    chains = setup.chains[: max(1, tokens // settings.chain_length)]
    pairs = cooccurrence_pairs(chains, settings.window)
    config = settings.learner(width)
    encoder = make_encoder(rendering.dim, config, seed)
    gen = torch.Generator().manual_seed(seed)
    losses = train_contrastive(encoder, rendering, pairs, config, gen)
    return embed_states(encoder, rendering.table), losses


def _pair_record(
    ex: torch.Tensor,
    ey: torch.Tensor,
    lx: list[float],
    ly: list[float],
    setup: _Seeded,
    settings: WorldSettings,
) -> dict:
    from prh.metrics import mutual_knn, unbiased_cka

    tau = settings.temperature
    return {
        "agree_x": kernel_agreement(learned_kernel(ex, tau), setup.pmi),
        "agree_y": kernel_agreement(learned_kernel(ey, tau), setup.pmi),
        "mutual_knn": float(mutual_knn(ex, ey, k=settings.k)),
        "unbiased_cka": float(unbiased_cka(ex, ey)),
        "loss_x": [_mean(lx[:10]), _mean(lx[-50:])],
        "loss_y": [_mean(ly[:10]), _mean(ly[-50:])],
    }


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values))


def run_seed(settings: WorldSettings, seed: int, progress: Progress | None = None) -> dict:
    """Run every sweep for one seed; returns a JSON-ready record (see module docstring for the fields)."""
    tick = progress or (lambda _msg: None)
    setup = _setup(settings, seed)
    base = 1000 * seed
    out: dict = {"seed": seed, "capacity": [], "data": []}
    embeddings: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, list[float], list[float]]] = {}
    for width in settings.widths:
        ex, lx = _train(setup, setup.obs_x, width, settings.tokens, settings, base + 10 + width)
        tick(f"seed {seed}: X width {width}")
        ey, ly = _train(setup, setup.obs_y, width, settings.tokens, settings, base + 500 + width)
        tick(f"seed {seed}: Y width {width}")
        embeddings[(width, settings.tokens)] = (ex, ey, lx, ly)
        out["capacity"].append({"width": width, **_pair_record(ex, ey, lx, ly, setup, settings)})
    top = settings.widths[-1]
    for tokens in settings.data_tokens:
        if (top, tokens) not in embeddings:
            ex, lx = _train(setup, setup.obs_x, top, tokens, settings, base + 10 + top)
            tick(f"seed {seed}: X tokens {tokens}")
            ey, ly = _train(setup, setup.obs_y, top, tokens, settings, base + 500 + top)
            tick(f"seed {seed}: Y tokens {tokens}")
            embeddings[(top, tokens)] = (ex, ey, lx, ly)
        ex, ey, lx, ly = embeddings[(top, tokens)]
        out["data"].append({"tokens": tokens, **_pair_record(ex, ey, lx, ly, setup, settings)})
    # The lossy case: Y observed through a many-to-one map, learner as large as the largest one, same data.
    ex, ey, lx, ly = embeddings[(top, settings.tokens)]
    ez, lz = _train(setup, setup.obs_y_lossy, top, settings.tokens, settings, base + 500 + top)
    tick(f"seed {seed}: lossy Y")
    lossy = _pair_record(ex, ez, lx, lz, setup, settings)
    bij = _pair_record(ex, ey, lx, ly, setup, settings)
    out["lossy"] = {
        "observations": int(torch.unique(setup.obs_y_lossy.merge).numel()),
        "ceiling": kernel_agreement(lossy_target(setup.p_coor, setup.obs_y_lossy.merge), setup.pmi),
        "agree_lossy": lossy["agree_y"],
        "agree_bijective": bij["agree_y"],
        "mutual_knn_lossy": lossy["mutual_knn"],
        "mutual_knn_bijective": bij["mutual_knn"],
        "unbiased_cka_lossy": lossy["unbiased_cka"],
        "unbiased_cka_bijective": bij["unbiased_cka"],
    }
    out["scatter"] = _scatter(ex, ey, ez, setup, settings)
    return out


def _scatter(
    ex: torch.Tensor, ey: torch.Tensor, ez: torch.Tensor, setup: _Seeded, settings: WorldSettings
) -> dict:
    """A fixed subsample (<= 3000) of off-diagonal kernel entries: PMI vs the largest learners' kernels."""
    from prh.world.measure import offdiagonal

    tau = settings.temperature
    pmi = offdiagonal(setup.pmi)
    kx = offdiagonal(learned_kernel(ex, tau))
    ky = offdiagonal(learned_kernel(ey, tau))
    kz = offdiagonal(learned_kernel(ez, tau))
    n = pmi.numel()
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: min(n, 3000)].sort().values
    return {
        "pmi": _r(pmi[idx]),
        "learned_x": _r(kx[idx]),
        "learned_y": _r(ky[idx]),
        "learned_y_lossy": _r(kz[idx]),
    }


def _r(t: torch.Tensor) -> list[float]:
    return [round(float(v), 5) for v in t]


def _stats(values: list[float]) -> dict:
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "sd": sd, "values": values}


def summarise(settings: WorldSettings, runs: list[dict]) -> dict:
    """Average the per-seed records and compute the headline numbers (no pass/fail: thresholds live in tests).

    Returns a dict with ``capacity`` and ``data`` curves (mean/sd over seeds per point), ``lossy`` statistics,
    Spearman correlations of cross-modal alignment with capacity and data, and ``headline`` (the measured numbers
    the docs quote: largest learner's agreement with the PMI kernel, Spearman(capacity, mutual kNN), and the
    bijective-minus-lossy gaps with the larger of their seed spreads).
    """
    from scipy.stats import spearmanr

    keys = ("agree_x", "agree_y", "mutual_knn", "unbiased_cka")
    summary: dict = {}
    for sweep, axis in (("capacity", "width"), ("data", "tokens")):
        points = [row[axis] for row in runs[0][sweep]]
        curve = {axis: points}
        for key in keys:
            curve[key] = [_stats([run[sweep][i][key] for run in runs]) for i in range(len(points))]
        curve["agree_pmi"] = [
            _stats([(run[sweep][i]["agree_x"] + run[sweep][i]["agree_y"]) / 2 for run in runs])
            for i in range(len(points))
        ]
        for key in ("mutual_knn", "unbiased_cka", "agree_pmi"):
            means = [p["mean"] for p in curve[key]]
            rho = float(spearmanr(points, means).statistic) if len(points) > 1 else float("nan")
            curve[f"spearman_{key}"] = None if math.isnan(rho) else rho
        summary[sweep] = curve
    lossy = {key: _stats([run["lossy"][key] for run in runs]) for key in runs[0]["lossy"]}
    summary["lossy"] = lossy
    largest = summary["capacity"]["agree_pmi"][-1]["mean"]
    rho = summary["capacity"]["spearman_mutual_knn"]
    gap_agree = lossy["agree_bijective"]["mean"] - lossy["agree_lossy"]["mean"]
    gap_knn = lossy["mutual_knn_bijective"]["mean"] - lossy["mutual_knn_lossy"]["mean"]
    spread = max(lossy["agree_bijective"]["sd"], lossy["agree_lossy"]["sd"])
    summary["headline"] = {
        "largest_learner_pmi_agreement": largest,
        "capacity_spearman_mutual_knn": rho,
        "lossy_gap_agreement": gap_agree,
        "lossy_gap_mutual_knn": gap_knn,
        "lossy_agreement_sd": spread,
    }
    return summary


def run_world(settings: WorldSettings = DEFAULT, seeds: int = 3, progress: Progress | None = None) -> dict:
    """Run the whole experiment for seeds ``0..seeds-1`` and return the JSON-ready result.

    Parameters
    ----------
    settings : WorldSettings
        The configuration (:data:`DEFAULT` or :data:`FAST`, or your own).
    seeds : int
        Number of seeds (>= 1); each seed draws its own world, renderings, data and initialisations.
    progress : callable, optional
        Called with a short message after each learner is trained (``settings.n_trainings()`` per seed).

    Returns
    -------
    dict
        ``{"settings", "runs" (per seed), "summary" (see :func:`summarise`), "wall_seconds"}``.
    """
    seeds = check_int(seeds, "seeds", minimum=1, hint="independent runs")
    start = time.perf_counter()
    threads = torch.get_num_threads()
    # The learners are tiny: one thread is fastest and keeps runs reproducible and immune to oversubscription.
    torch.set_num_threads(1)
    try:
        runs = [run_seed(settings, seed, progress) for seed in range(seeds)]
    finally:
        torch.set_num_threads(threads)
    summary = summarise(settings, runs)
    return {
        "settings": asdict(settings),
        "seeds": seeds,
        "runs": runs,
        "summary": summary,
        "wall_seconds": time.perf_counter() - start,
    }


__all__ = ["DEFAULT", "FAST", "WorldSettings", "run_seed", "run_world", "summarise"]
