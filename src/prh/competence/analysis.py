"""The numbers behind the paper's Fig. 2 and Fig. 4 views, from an alignment run and measured competence.

- :func:`effective_pairs` -- every model pair's best alignment, with a best pair at an input layer flagged and,
  when asked, replaced by the best pair over the other layers (exact: the grid's maximum without those rows and
  columns, i.e. what a sweep over the learned layers alone gives).
- :func:`competence_buckets` -- Fig. 2 (left): models of one modality sorted by competence into equal-count
  buckets; the mean alignment among the models of each bucket.
- :func:`map_coordinates` -- Fig. 2 (right): a 2-D map of the models from 1 - alignment (UMAP when ``umap-learn``
  is installed and there are enough models, classical MDS otherwise).
- :func:`downstream_alignment` -- Fig. 4: each language model's alignment to a reference vision model (or the mean
  over the vision models) next to its downstream scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from prh.competence.layers import best_excluding, input_layers
from prh.errors import InputError

#: Columns of :func:`effective_pairs`.
PAIR_COLUMNS = [
    "model_x",
    "model_y",
    "modality_x",
    "modality_y",
    "score",
    "best_layer_x",
    "best_layer_y",
    "score_all_layers",
    "all_best_layer_x",
    "all_best_layer_y",
    "input_pair",
    "excluded",
]
#: Below this many models a map is drawn with classical MDS even when UMAP is installed (UMAP's neighbourhood
#: graph needs more points than its n_neighbors).
UMAP_MIN_MODELS = 10


def layer_names_of(results: Any) -> dict[str, list[str]]:
    """``{model: layer names}`` from an alignment run's provenance (empty lists where unknown)."""
    models = (getattr(results, "provenance", None) or {}).get("models") or {}
    return {str(m): list((info or {}).get("layer_names") or []) for m, info in models.items()}


def effective_pairs(results: Any, metric: str, skip_input_layers: bool = True) -> pd.DataFrame:
    """Best alignment of every pair of distinct models (real pairing, no control), input layers flagged.

    Parameters
    ----------
    results : prh.align.Results
        An alignment run (table, grids, provenance with the models' layer names).
    metric : str
        The metric's rows to use.
    skip_input_layers : bool, default True
        Replace a best pair at an input layer (:func:`~prh.competence.layers.input_layers`) by the best pair over
        the other layers (needs the run's grids; without a grid the pair keeps its score and is only flagged).

    Returns
    -------
    DataFrame with :data:`PAIR_COLUMNS`
        ``score`` / ``best_layer_*`` are the pair's score and layers after the exclusion (the all-layer ones when
        nothing is excluded), ``score_all_layers`` / ``all_best_layer_*`` the run's own; ``input_pair`` says the
        run's best pair touches an input layer, ``excluded`` that the score was recomputed without it.
    """
    table = results.table
    if metric not in set(table["metric"]):
        raise InputError(
            f"metric {metric!r} is not in these results (they hold {sorted(set(table['metric']))})."
        )
    names = layer_names_of(results)
    sub = table[
        (table["metric"] == metric) & (table["control"] == "none") & (table["model_x"] != table["model_y"])
    ]
    rows = []
    for _, r in sub.iterrows():
        x, y = str(r["model_x"]), str(r["model_y"])
        skip_x, skip_y = input_layers(names.get(x)), input_layers(names.get(y))
        bx, by = int(r["best_layer_x"]), int(r["best_layer_y"])
        touches = bx in skip_x or by in skip_y
        score, ex, ey, excluded = float(r["score"]), bx, by, False
        if touches and skip_input_layers:
            try:
                grid = results.grid(metric, x, y)
            except KeyError:
                grid = None
            if grid is not None:
                score, ex, ey = best_excluding(grid, skip_x, skip_y)
                excluded = True
        rows.append(
            {
                "model_x": x,
                "model_y": y,
                "modality_x": r["modality_x"],
                "modality_y": r["modality_y"],
                "score": score,
                "best_layer_x": ex,
                "best_layer_y": ey,
                "score_all_layers": float(r["score"]),
                "all_best_layer_x": bx,
                "all_best_layer_y": by,
                "input_pair": bool(touches),
                "excluded": excluded,
            }
        )
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def pair_lookup(pairs: pd.DataFrame) -> dict[tuple[str, str], float]:
    """``{(a, b): score}`` in both orders (a symmetric metric stores each unordered pair once; for an asymmetric
    one the two orders are averaged)."""
    both: dict[tuple[str, str], list[float]] = {}
    for x, y, s in zip(pairs["model_x"], pairs["model_y"], pairs["score"]):
        both.setdefault((x, y), []).append(float(s))
        both.setdefault((y, x), []).append(float(s))
    return {k: float(np.mean(v)) for k, v in both.items()}


def competence_buckets(
    pairs: pd.DataFrame, competence: Mapping[str, float], models: Sequence[str], n_buckets: int | None = None
) -> pd.DataFrame:
    """Fig. 2 (left): mean alignment among the models of each competence bucket.

    Parameters
    ----------
    pairs : DataFrame
        :func:`effective_pairs` (the pairs among ``models`` are used).
    competence : mapping of model to float
        Measured competence (e.g. the linear probe's best-layer accuracy); models without one are left out.
    models : sequence of str
        The models to bucket (usually one modality's).
    n_buckets : int, optional
        Equal-count buckets, lowest competence first; default ``min(5, n_models // 2)`` so that every bucket holds at
        least two models (one pair).

    Returns
    -------
    DataFrame
        One row per bucket: ``bucket`` (1 = least competent), ``models`` (comma-separated), ``n_models``,
        ``competence_low``/``competence_high``, ``n_pairs``, ``mean_alignment`` (NaN for a bucket without a pair),
        ``sd_alignment``.
    """
    ranked = sorted(
        (m for m in models if m in competence and np.isfinite(competence[m])), key=lambda m: competence[m]
    )
    if not ranked:
        return pd.DataFrame(
            columns=[
                "bucket",
                "models",
                "n_models",
                "competence_low",
                "competence_high",
                "n_pairs",
                "mean_alignment",
                "sd_alignment",
            ]
        )
    b = n_buckets if n_buckets is not None else max(1, min(5, len(ranked) // 2))
    lookup = pair_lookup(pairs)
    rows = []
    for i, chunk in enumerate(np.array_split(np.array(ranked, dtype=object), b), start=1):
        members = [str(m) for m in chunk]
        scores = [lookup[(a, c)] for k, a in enumerate(members) for c in members[k + 1 :] if (a, c) in lookup]
        rows.append(
            {
                "bucket": i,
                "models": ", ".join(members),
                "n_models": len(members),
                "competence_low": float(min(competence[m] for m in members)) if members else np.nan,
                "competence_high": float(max(competence[m] for m in members)) if members else np.nan,
                "n_pairs": len(scores),
                "mean_alignment": float(np.mean(scores)) if scores else np.nan,
                "sd_alignment": float(np.std(scores, ddof=1)) if len(scores) > 1 else np.nan,
            }
        )
    return pd.DataFrame(rows)


def distance_matrix(pairs: pd.DataFrame, models: Sequence[str]) -> np.ndarray:
    """(M, M) distances 1 - alignment among ``models`` (0 on the diagonal); NaN where a pair is missing."""
    lookup = pair_lookup(pairs)
    m = len(models)
    out = np.full((m, m), np.nan)
    for i, a in enumerate(models):
        out[i, i] = 0.0
        for j, b in enumerate(models):
            if i != j and (a, b) in lookup:
                out[i, j] = max(0.0, 1.0 - lookup[(a, b)])
    return out


def map_coordinates(distances: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates of models from their (M, M) distances, and the method used.

    UMAP (``umap-learn``, precomputed metric) when installed and M >= :data:`UMAP_MIN_MODELS`; classical MDS
    otherwise (exact for so few points: it keeps as much of the distances as two axes can).

    Raises
    ------
    InputError
        A distance is missing (NaN) or M < 3.
    """
    d = np.asarray(distances, dtype=float)
    if d.ndim != 2 or d.shape[0] != d.shape[1] or d.shape[0] < 3:
        raise InputError(
            f"a model map needs a square distance matrix of at least 3 models, got shape {d.shape}."
        )
    if not np.isfinite(d).all():
        raise InputError(
            "a model map needs the alignment of every pair of its models; some pairs are missing."
        )
    d = (d + d.T) / 2.0
    if d.shape[0] >= UMAP_MIN_MODELS:
        try:
            import umap  # type: ignore[import-not-found]

            reducer = umap.UMAP(metric="precomputed", n_neighbors=min(15, d.shape[0] - 1), random_state=seed)
            return np.asarray(reducer.fit_transform(d)), "UMAP"
        except ImportError:
            pass
    m = d.shape[0]
    h = np.eye(m) - 1.0 / m
    b = -0.5 * h @ (d**2) @ h
    values, vectors = np.linalg.eigh(b)
    order = np.argsort(values)[::-1][:2]
    return vectors[:, order] * np.sqrt(np.clip(values[order], 0, None)), "classical MDS"


def downstream_alignment(
    pairs: pd.DataFrame, downstream: pd.DataFrame, modality: Mapping[str, str], reference: str | None = None
) -> pd.DataFrame:
    """Fig. 4: each language model's alignment to the vision side next to each of its downstream scores.

    Parameters
    ----------
    pairs : DataFrame
        :func:`effective_pairs` of the run (cross-modal pairs are used).
    downstream : DataFrame
        Resolved downstream scores (model, task, metric, value).
    modality : mapping of model to modality
        Which models are language / vision models.
    reference : str, optional
        A vision model: alignment to it; default the mean alignment over all vision models of the run.

    Returns
    -------
    DataFrame
        ``model, task, metric, value, alignment`` (one row per downstream score of a language model with an
        alignment; scores of models that are not in the run are left out).
    """
    vision = sorted(m for m, mod in modality.items() if mod == "vision")
    if reference is not None and reference not in vision:
        raise InputError(
            f"reference vision model {reference!r} is not a vision model of this alignment run ({vision}); "
            f"pick one of them or leave it out for the mean over vision models."
        )
    lookup = pair_lookup(pairs)
    align: dict[str, float] = {}
    for model, mod in modality.items():
        if mod != "language":
            continue
        targets = [reference] if reference else vision
        scores = [lookup[(model, v)] for v in targets if (model, v) in lookup]
        if scores:
            align[model] = float(np.mean(scores))
    out = downstream[downstream["model"].isin(align)].copy()
    out["alignment"] = out["model"].map(align)
    return out[["model", "task", "metric", "value", "alignment"]].reset_index(drop=True)
