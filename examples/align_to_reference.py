"""Train a small head on a frozen text encoder to raise its alignment with a vision model — and check it honestly.

A small residual head on top of frozen ``minilm-l6`` sentence features (``x + U V x`` with a rank-32 ``U V``, ``U``
starting at zero, so training starts from the frozen features) is trained, with :class:`prh.losses.SoftMutualKNN`,
to make its outputs' neighbourhoods match ``effnet-lite0``'s on the OpenMoji image–caption pairs. The hard mutual
kNN (k = 10, :func:`prh.metrics.mutual_knn` after :func:`prh.prepare`) is then measured on **held-out** items,
before and after training, and for the control: the same head trained on shuffled pairs (caption i against the image
of another item), which must not raise held-out alignment.

Runs offline on the CPU in a few minutes with the offline zoo (``prh zoo install minilm-l6 effnet-lite0``)::

    python examples/align_to_reference.py --n 1024 --store prh-cache/features --out align_to_reference.json

Features are extracted into ``--store`` first if they are not there (the encoder is frozen, so its features are
computed once). Prints one line per condition and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import nn

import prh
from prh.data import load_dataset
from prh.features import ExtractConfig, FeatureStore, extract
from prh.losses import SoftMutualKNN

TEXT, IMAGE = "minilm-l6", "effnet-lite0"


def load_features(n: int, store: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) last-layer features of the frozen text encoder and the vision model's best layer against it."""
    dataset = load_dataset("openmoji", n=n)
    feature_store = FeatureStore(store)
    extract(f"{TEXT},{IMAGE}", dataset, feature_store, ExtractConfig(device="cpu"), progress=False)
    text = feature_store.load(dataset, TEXT, "mean").layers[-1]
    image_layers = feature_store.load(dataset, IMAGE, "mean").layers
    best = prh.sweep(prh.prepare([text]), prh.prepare(image_layers), metric="mutual_knn", k=10).best_layers[1]
    return text.float(), image_layers[best].float()


def held_out_alignment(x: torch.Tensor, y: torch.Tensor, k: int = 10) -> float:
    """Hard mutual kNN of two (n, D) blocks, after the paper's preprocessing (clamp + L2 rows)."""
    return prh.metrics.mutual_knn(prh.prepare(x), prh.prepare(y), k=k)


class ResidualHead(nn.Module):
    """``x + U V x`` with V: D -> rank and U: rank -> D; U starts at zero, so the head starts as the identity."""

    def __init__(self, dim: int, rank: int = 32) -> None:
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.down(x))


def train_head(x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> nn.Module:
    """A :class:`ResidualHead` trained for ``steps`` Adam steps (lr 3e-4) on batches of 256 rows of (x, y)."""
    torch.manual_seed(seed)
    head = ResidualHead(x.shape[1])
    loss_fn = SoftMutualKNN(k=10, temperature=0.02)
    opt = torch.optim.Adam(head.parameters(), lr=3e-4)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randperm(x.shape[0], generator=g)[:256]
        loss = 1.0 - loss_fn(head(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def run(n: int, store: str, steps: int = 300, seed: int = 0) -> dict:
    """Train on 3/4 of the items (real and shuffled pairs), measure on the other 1/4; returns the numbers."""
    torch.set_num_threads(1)  # a small model: more threads only contend
    text, image = load_features(n, store)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    train, held = order[: 3 * n // 4], order[3 * n // 4 :]
    shuffled = train[torch.randperm(len(train), generator=g)]
    results = {"n_train": len(train), "n_held_out": len(held), "k": 10, "chance": 10 / (len(held) - 1)}
    results["frozen_features"] = held_out_alignment(text[held], image[held])
    for name, targets in (("trained_real_pairs", image[train]), ("trained_shuffled_pairs", image[shuffled])):
        start = time.perf_counter()
        head = train_head(text[train], targets, steps, seed)
        with torch.no_grad():
            results[name] = held_out_alignment(head(text[held]), image[held])
        results[f"{name}_seconds"] = round(time.perf_counter() - start, 2)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1024, help="OpenMoji items (3/4 train, 1/4 held out)")
    parser.add_argument("--store", default="prh-cache/features", help="feature store folder")
    parser.add_argument("--steps", type=int, default=300, help="Adam steps per training run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the numbers here as JSON")
    args = parser.parse_args()
    results = run(args.n, args.store, args.steps, args.seed)
    for key in ("frozen_features", "trained_real_pairs", "trained_shuffled_pairs"):
        print(
            f"held-out mutual kNN, {key.replace('_', ' '):<24} {results[key]:.3f}   (chance {results['chance']:.3f})"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
