"""Model stitching: block i of model A feeds block j+1 of model B through one 1×1 convolution.

For every (block i of A) × (block j of B) of a grid, the stitching layer is fitted on a training split of the
items by least squares to B's own activation at block j ("direct matching", :mod:`prh.stitch._fit`), then B runs
from block j+1 on A's transformed activation of held-out items. The score is **label-free**: top-1 agreement of the
stitched model with B itself on the held-out items, the KL divergence from B's output distribution, and the
penalty ``1 - agreement`` against B's agreement with itself (1.0). Optional fine-tuning (Adam, a few epochs on the
training items) minimises the KL to B's logits, on the grid's diagonal cells.

Controls, on the diagonal cells (A's k-th block into B's k-th block, the same relative depth):

* **self-stitching** A→A at each block of A (the ceiling of the method: the fitted map should be the identity);
* a **random-noise sender** with A's shapes and clustering: items are clustered by A's pooled features (k-means,
  ``noise_clusters``), each cluster gets one random template of A's block shape, each item its own noise on top,
  mixed so the between-cluster share of variance equals A's, scaled to A's per-channel mean and spread. If it
  stitches well, the stitching score says little about A (structured noise can be mapped onto B's classes);
* **shuffled pairing**: the map fitted with senders and receivers of *different* items (a within-batch shift),
  evaluated on correctly paired held-out items.

Beside the stitching grid: the mutual-kNN grid of the same pair (pooled features of the same blocks, all items,
:func:`prh.prepare`), and the Spearman correlation between the two grids.

One file, over the usual ~450 lines, on purpose: the grid loop, the three controls and the results record share the
held-out split, the receiver's cached activations and the fitted maps; the least-squares fit and the report section
live in their own modules.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from prh._validation import ConfigFields, check_float, check_int, check_str
from prh.errors import InputError
from prh.stitch._fit import Normal, apply_map, kl_to_reference
from prh.stitch._network import Staged, resize, spatial_points


@dataclass(frozen=True)
class StitchConfig(ConfigFields):
    """Every option of a stitching run (frozen; validated when built).

    Parameters
    ----------
    n : int, default 1024
        Items of the dataset (its first ``n``).
    blocks : int, default 6
        Blocks per model in the grid, evenly spaced over the model's spatial hook points (stem to last block).
    test_fraction : float, default 0.25
        Share of the items held out for scoring (the rest fits the maps); 0 < f < 1.
    ridge : float, default 1e-4
        Relative ridge of the least-squares fit (times the mean squared sender activation), >= 0.
    finetune_epochs : int, default 0
        Adam epochs of KL-to-B fine-tuning of the diagonal cells' maps after least squares (0 = off).
    lr : float, default 1e-3
        Adam learning rate of fine-tuning.
    batch_size : int, default 32
        Images per forward pass.
    noise_clusters : int, default 10
        Clusters of the random-noise sender (k-means on A's pooled features).
    k : int, default 10
        Neighbours of the mutual-kNN grid drawn beside the stitching grid.
    seed : int, default 0
        Seed of the split, the noise sender, the shuffled pairing and fine-tuning.
    dataset : str, default "openmoji"
        Dataset name for :func:`prh.data.load_dataset` (images only; no labels are used).
    """

    n: int = 1024
    blocks: int = 6
    test_fraction: float = 0.25
    ridge: float = 1e-4
    finetune_epochs: int = 0
    lr: float = 1e-3
    batch_size: int = 32
    noise_clusters: int = 10
    k: int = 10
    seed: int = 0
    dataset: str = "openmoji"

    def __post_init__(self) -> None:
        clean = {
            "n": check_int(self.n, "n", minimum=8, hint="items of the dataset"),
            "blocks": check_int(self.blocks, "blocks", minimum=1, hint="blocks per model in the grid"),
            "test_fraction": check_float(
                self.test_fraction, "test_fraction", 0.0, 1.0, inclusive=(False, False), hint="held-out share"
            ),
            "ridge": check_float(self.ridge, "ridge", 0.0, None, hint="relative ridge of the fit, >= 0"),
            "finetune_epochs": check_int(self.finetune_epochs, "finetune_epochs", minimum=0, hint="0 = off"),
            "lr": check_float(
                self.lr, "lr", 0.0, None, inclusive=(False, True), hint="Adam learning rate > 0"
            ),
            "batch_size": check_int(self.batch_size, "batch_size", minimum=2),
            "noise_clusters": check_int(self.noise_clusters, "noise_clusters", minimum=1),
            "k": check_int(self.k, "k", minimum=1, hint="neighbours of the mutual-kNN grid"),
            "seed": check_int(self.seed, "seed", minimum=0),
            "dataset": check_str(self.dataset, "dataset", allow_empty=False),
        }
        n_test = round(clean["n"] * clean["test_fraction"])
        if n_test < 2 or clean["n"] - n_test < 4:
            raise InputError(
                f"n={clean['n']} with test_fraction={clean['test_fraction']} leaves {n_test} held-out and "
                f"{clean['n'] - n_test} training items; use more items (both need a few)."
            )
        for name, value in clean.items():
            object.__setattr__(self, name, value)


@dataclass
class StitchResult:
    """The stitching grid of one model pair, its controls and the mutual-kNN grid beside it.

    Attributes (grids are (L_a, L_b) float64 arrays over the selected blocks)
    ----------
    model_a, model_b : names (A sends, B receives and judges).
    blocks_a, blocks_b : the selected hook-point names.
    agreement : held-out top-1 agreement of the least-squares stitched model with B, in [0, 1].
    kl : held-out mean KL(B || stitched) in nats.
    knn : mutual-kNN grid of the pooled features of the same blocks (all items).
    spearman : Spearman correlation between ``agreement`` and ``knn`` (flattened).
    diagonal : (L_b,) index of A's block paired with each block of B for the controls.
    controls : per diagonal cell (over B's blocks): ``noise``, ``shuffled`` agreements, and ``self`` (over A's
        blocks, A→A); ``chance`` the agreement of always answering B's most frequent held-out class.
    finetuned : diagonal-cell agreements and KL after fine-tuning (empty when off).
    """

    model_a: str
    model_b: str
    blocks_a: list[str]
    blocks_b: list[str]
    agreement: np.ndarray
    kl: np.ndarray
    knn: np.ndarray
    spearman: float
    diagonal: list[int]
    controls: dict
    n_train: int
    n_test: int
    config: dict
    seconds: dict
    finetuned: dict = field(default_factory=dict)

    @property
    def penalty(self) -> np.ndarray:
        """``1 - agreement``: the stitching penalty against B's agreement with itself (1.0)."""
        return 1.0 - self.agreement

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready content (grids as nested lists)."""
        return {
            "model_a": self.model_a,
            "model_b": self.model_b,
            "blocks_a": self.blocks_a,
            "blocks_b": self.blocks_b,
            "agreement": self.agreement.tolist(),
            "kl": self.kl.tolist(),
            "penalty": self.penalty.tolist(),
            "knn": self.knn.tolist(),
            "spearman": self.spearman,
            "diagonal": self.diagonal,
            "controls": self.controls,
            "finetuned": self.finetuned,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "config": self.config,
            "seconds": self.seconds,
        }


def select_points(spatial: Sequence[int], blocks: int) -> list[int]:
    """``blocks`` indices of ``spatial`` (hook-point indices), evenly spaced from the first to the last."""
    if blocks >= len(spatial):
        return list(spatial)
    picks = np.round(np.linspace(0, len(spatial) - 1, blocks)).astype(int)
    return [spatial[i] for i in picks]


def _batches(idx: np.ndarray, size: int) -> list[np.ndarray]:
    parts = max(1, int(np.ceil(len(idx) / size)))
    return [p for p in np.array_split(idx, parts) if len(p)]


def _kmeans(x: torch.Tensor, c: int, seed: int, iters: int = 50) -> tuple[torch.Tensor, float]:
    """Centroids (c, D) of Lloyd's k-means (seeded init from the rows) and the between-cluster variance share."""
    g = torch.Generator().manual_seed(seed)
    c = min(c, x.shape[0])
    cent = x[torch.randperm(x.shape[0], generator=g)[:c]].clone()
    for _ in range(iters):
        lab = torch.cdist(x, cent).argmin(dim=1)
        for k in range(c):
            if bool((lab == k).any()):
                cent[k] = x[lab == k].mean(dim=0)
    lab = torch.cdist(x, cent).argmin(dim=1)
    total = float(((x - x.mean(dim=0)) ** 2).sum())
    within = float(((x - cent[lab]) ** 2).sum())
    return cent, (1.0 - within / total) if total > 0 else 0.0


@dataclass
class _NoiseSender:
    """A random sender with the shape, per-channel mean/spread and cluster structure of one block of A."""

    centroids: torch.Tensor  # (c, C) in pooled space
    share: float  # between-cluster share of variance
    mean: torch.Tensor  # (C,)
    std: torch.Tensor  # (C,)
    shape: tuple[int, ...]  # (C, H, W)
    seed: int

    def __call__(self, pooled: torch.Tensor, items: np.ndarray) -> torch.Tensor:
        labels = torch.cdist(pooled, self.centroids).argmin(dim=1)
        g = torch.Generator().manual_seed(self.seed)
        templates = torch.randn((self.centroids.shape[0], *self.shape), generator=g)
        out = []
        for lab, item in zip(labels.tolist(), items.tolist()):
            gi = torch.Generator().manual_seed(self.seed * 1_000_003 + int(item) + 1)
            own = torch.randn(self.shape, generator=gi)
            z = np.sqrt(self.share) * templates[lab] + np.sqrt(1.0 - self.share) * own
            out.append(z * self.std[:, None, None] + self.mean[:, None, None])
        return torch.stack(out).to(pooled.device)


def _pool(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3)) if x.ndim == 4 else x


def _noise_senders(a: Staged, images, items, pts: list[int], cfg: StitchConfig) -> dict[int, _NoiseSender]:
    """Fit each selected block's noise sender on up to 128 training items."""
    sample = items[: min(128, len(items))]
    acts_by_point: dict[int, list[torch.Tensor]] = {p: [] for p in pts}
    for batch in _batches(sample, cfg.batch_size):
        _, acts = a.forward(a.pixels([images(i) for i in batch]))
        for p in pts:
            acts_by_point[p].append(acts[p].cpu())
    out = {}
    for p in pts:
        x = torch.cat(acts_by_point[p])
        cent, share = _kmeans(_pool(x).double(), cfg.noise_clusters, cfg.seed + p)
        flat = x.transpose(0, 1).reshape(x.shape[1], -1)
        out[p] = _NoiseSender(
            cent.float(),
            share,
            flat.mean(dim=1),
            flat.std(dim=1),
            tuple(x.shape[1:]),
            cfg.seed + 7919 * (p + 1),
        )
    return out


@dataclass
class _Tally:
    """Held-out agreement and KL sums of one cell."""

    agree: float = 0.0
    kl: float = 0.0
    n: int = 0

    def add(self, reference: torch.Tensor, logits: torch.Tensor) -> None:
        self.agree += float((reference.argmax(dim=1) == logits.argmax(dim=1)).sum())
        self.kl += float(kl_to_reference(reference, logits).sum())
        self.n += reference.shape[0]

    @property
    def agreement(self) -> float:
        return self.agree / self.n

    @property
    def mean_kl(self) -> float:
        return self.kl / self.n


def stitch(
    a: str | object,
    b: str | object,
    config: StitchConfig | dict | None = None,
    dataset: object = None,
    device: str = "cpu",
    progress: Callable[[str], None] | None = None,
) -> StitchResult:
    """Stitch every selected block of A into every selected block of B; score on held-out items.

    Parameters
    ----------
    a, b : model names of the registry (``"effnet-lite0"``) or image adapters (``build_adapter(spec)``); both
        image models with named hook points. A sends, B receives; B's own outputs are the reference.
    config : :class:`StitchConfig` (or a mapping of its fields).
    dataset : a :class:`prh.data.PairedDataset` (its images are used); default ``load_dataset(config.dataset,
        config.n)``.
    device : where the models run (``"cpu"``, ``"cuda"``, ``"auto"``).
    progress : optional callable receiving one line per stage.

    Returns
    -------
    :class:`StitchResult`.
    """
    from prh._prepare import prepare
    from prh._sweep import sweep

    cfg = StitchConfig.coerce(config)
    say = progress or (lambda _line: None)
    times: dict[str, float] = {}
    start, cpu_start = time.perf_counter(), time.process_time()
    sa, sb = _staged(a, device, "a"), _staged(b, device, "b")
    if dataset is None:
        from prh.data import load_dataset

        dataset = load_dataset(cfg.dataset, n=cfg.n)
    n = min(cfg.n, len(dataset))
    images = dataset.image
    order = np.random.default_rng(cfg.seed).permutation(n)
    n_test = round(n * cfg.test_fraction)
    test, train = np.sort(order[:n_test]), np.sort(order[n_test:])

    probe = train[: min(4, len(train))]
    _, acts_a = sa.forward(sa.pixels([images(i) for i in probe]))
    _, acts_b = sb.forward(sb.pixels([images(i) for i in probe]))
    pa = select_points(spatial_points(sa, acts_a), cfg.blocks)
    pb = select_points(spatial_points(sb, acts_b), cfg.blocks)
    if not pa or not pb:
        raise InputError(f"{sa.name} or {sb.name} has no spatial hook points (B, C, H, W) to stitch.")
    sa.check_run_from(sa.pixels([images(i) for i in probe]), pa)
    sb.check_run_from(sb.pixels([images(i) for i in probe]), pb)
    size_b = {j: tuple(acts_b[j].shape[-2:]) for j in pb}
    diagonal = [pa[int(round(k * (len(pa) - 1) / max(len(pb) - 1, 1)))] for k in range(len(pb))]
    times["setup"] = time.perf_counter() - start
    say(
        f"blocks of {sa.name}: {[sa.point_names[p] for p in pa]}; of {sb.name}: {[sb.point_names[p] for p in pb]}"
    )

    t0 = time.perf_counter()
    noise = _noise_senders(sa, images, train, pa, cfg)
    # normal equations: per (A block, B resolution) one Gram matrix; the noise and self-stitch senders their own
    real = {(i, r): Normal() for i in pa for r in set(size_b.values())}
    fake = {j: Normal() for j in pb}  # noise sender of the diagonal cell of B's block j
    self_fit = {i: Normal() for i in pa}
    pooled_a: dict[int, dict[int, torch.Tensor]] = {p: {} for p in pa}
    pooled_b: dict[int, dict[int, torch.Tensor]] = {p: {} for p in pb}
    for batch in _batches(train, cfg.batch_size):
        imgs = [images(i) for i in batch]
        _, xa = sa.forward(sa.pixels(imgs))
        _, xb = sb.forward(sb.pixels(imgs))
        _keep_pooled(pooled_a, xa, batch)
        _keep_pooled(pooled_b, xb, batch)
        for i in pa:
            for r in set(size_b.values()):
                z = real[(i, r)].add_sender(resize(xa[i], r).cpu())
                for j in pb:
                    if size_b[j] == r:
                        y = xb[j].cpu()
                        real[(i, r)].add_target(j, z, y)
                        real[(i, r)].add_target(("shuffled", j), z, torch.roll(y, 1, dims=0))
            z = self_fit[i].add_sender(xa[i].cpu())
            self_fit[i].add_target(i, z, xa[i].cpu())
        for j, i in zip(pb, diagonal):
            z = fake[j].add_sender(resize(noise[i](_pool(xa[i]).cpu(), batch), size_b[j]))
            fake[j].add_target(j, z, xb[j].cpu())
    maps = {(i, j): real[(i, size_b[j])].solve(j, cfg.ridge) for i in pa for j in pb}
    shuffled = {j: real[(i, size_b[j])].solve(("shuffled", j), cfg.ridge) for j, i in zip(pb, diagonal)}
    noise_maps = {j: fake[j].solve(j, cfg.ridge) for j in pb}
    self_maps = {i: self_fit[i].solve(i, cfg.ridge) for i in pa}
    times["fit"] = time.perf_counter() - t0
    say(f"fitted {len(maps)} least-squares maps on {len(train)} items")

    t0 = time.perf_counter()
    tallies = {key: _Tally() for key in maps}
    ctl = {(kind, j): _Tally() for kind in ("noise", "shuffled") for j in pb}
    ctl.update({("self", i): _Tally() for i in pa})
    top_b: list[torch.Tensor] = []
    for batch in _batches(test, cfg.batch_size):
        imgs = [images(i) for i in batch]
        logits_a, xa = sa.forward(sa.pixels(imgs))
        logits_b, xb = sb.forward(sb.pixels(imgs))
        _keep_pooled(pooled_a, xa, batch)
        _keep_pooled(pooled_b, xb, batch)
        top_b.append(logits_b.argmax(dim=1).cpu())
        for (i, j), (w, bias) in maps.items():
            s = apply_map(resize(xa[i], size_b[j]), w.to(xa[i].device), bias.to(xa[i].device))
            tallies[(i, j)].add(logits_b, sb.run_from(j, s))
        for j, i in zip(pb, diagonal):
            w, bias = shuffled[j]
            s = apply_map(resize(xa[i], size_b[j]), w.to(xa[i].device), bias.to(xa[i].device))
            ctl[("shuffled", j)].add(logits_b, sb.run_from(j, s))
            w, bias = noise_maps[j]
            x_noise = resize(noise[i](_pool(xa[i]).cpu(), batch), size_b[j]).to(xa[i].device)
            ctl[("noise", j)].add(
                logits_b, sb.run_from(j, apply_map(x_noise, w.to(x_noise.device), bias.to(x_noise.device)))
            )
        for i in pa:
            w, bias = self_maps[i]
            ctl[("self", i)].add(
                logits_a, sa.run_from(i, apply_map(xa[i], w.to(xa[i].device), bias.to(xa[i].device)))
            )
    times["evaluate"] = time.perf_counter() - t0
    say(f"scored {len(maps)} cells and the controls on {len(test)} held-out items")

    counts = torch.bincount(torch.cat(top_b))
    agreement = np.array([[tallies[(i, j)].agreement for j in pb] for i in pa])
    kl = np.array([[tallies[(i, j)].mean_kl for j in pb] for i in pa])
    finetuned = {}
    if cfg.finetune_epochs:
        t0 = time.perf_counter()
        finetuned = _finetune(sa, sb, (images, train, test), maps, list(zip(pb, diagonal)), size_b, cfg)
        times["finetune"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    items = np.arange(n)
    fa = prepare([torch.stack([pooled_a[p][int(i)] for i in items]) for p in pa])
    fb = prepare([torch.stack([pooled_b[p][int(i)] for i in items]) for p in pb])
    knn = sweep(fa, fb, "mutual_knn", k=min(cfg.k, n - 2)).scores
    rho = _spearman(agreement.ravel(), knn.ravel())
    times["knn"] = time.perf_counter() - t0
    times["total"] = time.perf_counter() - start
    times["cpu_total"] = time.process_time() - cpu_start
    controls = {
        "noise": [ctl[("noise", j)].agreement for j in pb],
        "noise_kl": [ctl[("noise", j)].mean_kl for j in pb],
        "shuffled": [ctl[("shuffled", j)].agreement for j in pb],
        "shuffled_kl": [ctl[("shuffled", j)].mean_kl for j in pb],
        "self": [ctl[("self", i)].agreement for i in pa],
        "self_kl": [ctl[("self", i)].mean_kl for i in pa],
        "stitch": [float(agreement[pa.index(i), pb.index(j)]) for j, i in zip(pb, diagonal)],
        "chance": float(counts.max()) / float(counts.sum()),
    }
    return StitchResult(
        model_a=sa.name,
        model_b=sb.name,
        blocks_a=[sa.point_names[p] for p in pa],
        blocks_b=[sb.point_names[p] for p in pb],
        agreement=agreement,
        kl=kl,
        knn=knn,
        spearman=rho,
        diagonal=[pa.index(i) for i in diagonal],
        controls=controls,
        n_train=len(train),
        n_test=len(test),
        config=cfg.to_dict(),
        seconds=times,
        finetuned=finetuned,
    )


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def _keep_pooled(
    store: dict[int, dict[int, torch.Tensor]], acts: list[torch.Tensor], batch: np.ndarray
) -> None:
    for p in store:
        pooled = _pool(acts[p]).cpu()
        for row, item in enumerate(batch.tolist()):
            store[p][item] = pooled[row]


def _staged(model: str | object, device: str, what: str) -> Staged:
    if isinstance(model, str):
        from prh.models import build_adapter, resolve_models

        specs = resolve_models(model)
        if len(specs) != 1:
            raise InputError(f"model {what}={model!r} names {len(specs)} models; give one model name.")
        if specs[0].modality != "vision":
            raise InputError(
                f"model {what}={model!r} is a {specs[0].modality} model; prh stitch runs image models. Language-"
                f"model stitching (hidden states into B's residual stream) is not implemented: it needs two models "
                f"with the same tokenizer, and stitching across different tokenizers would misalign tokens."
            )
        adapter = build_adapter(specs[0], device=device)
        return Staged(adapter, specs[0].name)
    spec = getattr(model, "spec", None)
    return Staged(model, getattr(spec, "name", what))


def _finetune(sa, sb, split, maps, cells, size_b, cfg) -> dict:
    """Adam on the diagonal cells' maps, loss KL(B || stitched) on the training items; scored on held-out items."""
    images, train, test = split
    out = {"agreement": [], "kl": [], "train_kl": []}
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    for j, i in cells:
        w0, b0 = maps[(i, j)]
        w = w0.clone().to(sa.device).requires_grad_(True)
        bias = b0.clone().to(sa.device).requires_grad_(True)
        opt = torch.optim.Adam([w, bias], lr=cfg.lr)
        losses = []
        for _ in range(cfg.finetune_epochs):
            total, count = 0.0, 0
            for batch in _batches(rng.permutation(train), cfg.batch_size):
                imgs = [images(t) for t in batch]
                _, xa = sa.forward(sa.pixels(imgs))
                logits_b, _ = sb.forward(sb.pixels(imgs))
                x = resize(xa[i], size_b[j]).clone()
                with torch.enable_grad():
                    logits = sb.run_from(j, apply_map(x, w, bias), grad=True)
                    loss = kl_to_reference(logits_b, logits).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                total += float(loss.detach()) * len(batch)
                count += len(batch)
            losses.append(total / count)
        out["train_kl"].append(losses)
        tally = _Tally()
        with torch.no_grad():
            for batch in _batches(test, cfg.batch_size):
                imgs = [images(t) for t in batch]
                _, xa = sa.forward(sa.pixels(imgs))
                logits_b, _ = sb.forward(sb.pixels(imgs))
                tally.add(
                    logits_b, sb.run_from(j, apply_map(resize(xa[i], size_b[j]), w.detach(), bias.detach()))
                )
        out["agreement"].append(tally.agreement)
        out["kl"].append(tally.mean_kl)
    return out
