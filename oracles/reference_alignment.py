"""A literal re-implementation of the reference's ``platonic.Alignment.score`` (test-only), written from the
definitions in platonic-rep's ``platonic/alignment.py`` and ``measure_alignment.py`` for parity tests.

What it keeps from the reference, step by step:

- each model's file is read as ``torch.load(path)["feats"]`` -- an (N, L, D) tensor or a list of (N, D_l) tensors --
  and cast to the Alignment's ``dtype`` (here float32: the reference's default bfloat16 runs the metrics in
  bfloat16 arithmetic, which prh deliberately does not copy);
- ``prepare_features(feats, exact=True)``: ``remove_outliers`` at q = 0.95 by a full sort of |x| (rank
  ``int(q * numel)``) -- over the whole tensor, or layer by layer for a list --; no normalisation there;
- ``compute_score(x, y, metric, topk=..., normalize=True)``: for every layer pair (i of the scored features, j of
  the reference model), L2-normalise both layers and call the metric from scratch, passing ``topk`` only when
  ``'knn' in metric`` (so cknna gets it, CKA does not); the best score starts at 0 and is replaced only by a strictly
  larger one, so the result is ``(0, None)`` when no score is positive;
- the metrics of ``reference_impl`` with the reference's ``+1e-6`` in the CKA / CKNNA denominators.

The test files are written by the tests themselves, so loading them with ``weights_only=True`` loses nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import reference_impl as ref

FUDGE = 1e-6


def load_features(path, dtype: torch.dtype = torch.float32):
    """``Alignment.load_features``: the file's ``feats`` as a tensor or a list of tensors, cast to ``dtype``."""
    raw = torch.load(path, map_location="cpu", weights_only=True)["feats"]
    if isinstance(raw, torch.Tensor):
        return raw.to(dtype=dtype)
    return [layer.to(dtype=dtype) for layer in raw]


def prepare_features(feats, q: float = 0.95):
    """``measure_alignment.prepare_features(feats, exact=True)``: one clamp for a tensor, one per listed layer."""
    if isinstance(feats, torch.Tensor):
        return ref.remove_outliers_sort(feats.float(), q)
    return [ref.remove_outliers_sort(layer.float(), q) for layer in feats]


def measure(metric: str, a: torch.Tensor, b: torch.Tensor, **kwargs) -> float:
    """``AlignmentMetrics.measure`` for the metrics compared here (``topk`` is the reference's ``k``)."""
    topk = kwargs.get("topk")
    if metric == "mutual_knn":
        return ref.mutual_knn(a, b, topk)
    if metric == "cycle_knn":
        return ref.cycle_knn(a, b, topk)
    if metric == "cka":
        return ref.cka(a, b, fudge=FUDGE)
    if metric == "unbiased_cka":
        return ref.cka(a, b, unbiased=True, fudge=FUDGE)
    if metric == "cknna":
        return ref.cknna(a, b, k=topk, fudge=FUDGE)
    raise ValueError(f"metric {metric!r} is not re-implemented here")


def compute_score(x_feats, y_feats, metric: str = "mutual_knn", topk: int = 10, normalize: bool = True):
    """``measure_alignment.compute_score``: ``(best score, (i, j))``, or ``(0, None)`` when nothing is positive."""
    if isinstance(x_feats, torch.Tensor):
        x_feats = [x_feats[:, i, :] for i in range(x_feats.shape[1])]
    if isinstance(y_feats, torch.Tensor):
        y_feats = [y_feats[:, j, :] for j in range(y_feats.shape[1])]
    best_score, best_indices = 0, None
    for i, x in enumerate(x_feats):
        for j, y in enumerate(y_feats):
            xa = F.normalize(x, p=2, dim=-1) if normalize else x
            ya = F.normalize(y, p=2, dim=-1) if normalize else y
            kwargs = {"topk": topk} if "knn" in metric else {}
            score = measure(metric, xa, ya, **kwargs)
            if score > best_score:
                best_score, best_indices = score, (i, j)
    return best_score, best_indices


def alignment_score(features, model_files: dict, metric: str, topk: int = 10, normalize: bool = True) -> dict:
    """``Alignment(...).score(features, metric, topk=topk, normalize=normalize)`` with ``dtype=torch.float32``:
    ``{model: (score, (i, j))}`` for the models' files ``{model: path}``."""
    x = prepare_features(features)
    return {
        name: compute_score(x, prepare_features(load_features(path)), metric, topk=topk, normalize=normalize)
        for name, path in model_files.items()
    }
