"""Figures of an alignment run (matplotlib without pyplot, written as PNG). Each function takes :class:`prh.align.Results`
and a path, draws one PNG, and returns a short caption — or None when the run has nothing to draw for it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib.patches import Rectangle

from prh._figure import subplots
from prh.align.engine import Results
from prh.atomic import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 130


def save_figure(fig: Figure, path: Path) -> None:
    """Lay out ``fig`` and write it to ``path`` atomically (format from the suffix, PNG by default).

    ``fig`` is a pyplot-free figure (:func:`prh._figure.subplots`): nothing to close, no backend involved.
    """
    fmt = Path(path).suffix.lstrip(".") or "png"
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format=fmt))


def _main(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    return table[(table["metric"] == metric) & (table["control"] == "none")]


def models_by_modality(table: pd.DataFrame) -> dict[str, list[str]]:
    """Models of each modality ordered by size (params, then name)."""
    info: dict[str, tuple[str, float]] = {}
    for side in ("x", "y"):
        for _, row in table.iterrows():
            info[row[f"model_{side}"]] = (row[f"modality_{side}"], row[f"params_{side}"])
    out: dict[str, list[str]] = {}
    for name, (modality, _params) in sorted(
        info.items(), key=lambda kv: (np.nan_to_num(kv[1][1], nan=np.inf), kv[0])
    ):
        out.setdefault(modality, []).append(name)
    return out


def pair_matrix(
    table: pd.DataFrame, metric: str, rows: list[str], cols: list[str], column: str = "score"
) -> np.ndarray:
    """(len(rows), len(cols)) matrix of ``column`` for a metric, filled symmetrically where only (y, x) exists."""
    sub = _main(table, metric)
    lookup = {}
    for _, r in sub.iterrows():
        lookup[(r["model_x"], r["model_y"])] = r[column]
        lookup.setdefault((r["model_y"], r["model_x"]), r[column])
    return np.array([[lookup.get((a, b), np.nan) for b in cols] for a in rows], dtype=float)


def _heatmap(ax, values, rows, cols, significant=None, fmt="{:.2f}"):
    finite = values[np.isfinite(values)]
    vmax = float(finite.max()) if finite.size else 1.0
    im = ax.imshow(
        values, cmap="viridis", vmin=min(0.0, float(finite.min()) if finite.size else 0.0), vmax=vmax
    )
    ax.set_xticks(range(len(cols)), cols, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = values[i, j]
            if not np.isfinite(v):
                continue
            label = fmt.format(v)
            if significant is not None and np.isfinite(significant[i, j]) and not significant[i, j]:
                label += "\nn.s."
                ax.add_patch(
                    Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="white", lw=0)
                )
            color = "black" if v > 0.6 * vmax else "white"
            ax.text(j, i, label, ha="center", va="center", fontsize=7, color=color)
    return im


def _significance(table, metric, rows, cols, alpha):
    if "p_value" not in table.columns:
        return None
    p = pair_matrix(table, metric, rows, cols, "p_value")
    return np.where(np.isfinite(p), p <= alpha, np.nan)


def cross_modal_heatmap(results: Results, metric: str, path: Path, alpha: float = 0.05) -> str | None:
    """Language models (rows) x vision models (columns), both ordered by size; n.s. cells hatched."""
    groups = models_by_modality(results.table)
    lang, vis = groups.get("language", []), groups.get("vision", [])
    if not lang or not vis:
        return None
    values = pair_matrix(results.table, metric, lang, vis)
    fig, ax = subplots(figsize=(max(5.5, 2.4 + 0.9 * len(vis)), max(3.2, 1.6 + 0.55 * len(lang))))
    im = _heatmap(ax, values, lang, vis, _significance(results.table, metric, lang, vis, alpha))
    fig.colorbar(im, ax=ax, shrink=0.8, label=metric)
    ax.set_title(f"cross-modal alignment ({metric}, best layer pair)", fontsize=10)
    save_figure(fig, path)
    return (
        f"Cross-modal {metric}: each cell is the best score over all layer pairs of a language model (row) and a "
        f"vision model (column); models ordered by size. Hatched 'n.s.' cells are not significant at alpha={alpha} "
        f"under the layer-aggregated permutation null."
    )


def within_modality_heatmap(
    results: Results, metric: str, modality: str, path: Path, alpha: float = 0.05
) -> str | None:
    """Every pair of models of one modality."""
    names = models_by_modality(results.table).get(modality, [])
    if len(names) < 2:
        return None
    values = pair_matrix(results.table, metric, names, names)
    fig, ax = subplots(figsize=(max(5.0, 2.4 + 0.8 * len(names)), max(3.6, 1.8 + 0.65 * len(names))))
    im = _heatmap(ax, values, names, names, _significance(results.table, metric, names, names, alpha))
    fig.colorbar(im, ax=ax, shrink=0.8, label=metric)
    ax.set_title(f"{modality} models ({metric})", fontsize=10)
    save_figure(fig, path)
    return f"Alignment among {modality} models ({metric}); the diagonal is each model against itself."


def mean_cross_modal(table: pd.DataFrame, metric: str, modality: str) -> pd.DataFrame:
    """Per model of ``modality``: its mean best score against the models of the other modality, with competence."""
    sub = _main(table, metric)
    rows = []
    for side, other in (("x", "y"), ("y", "x")):
        part = sub[(sub[f"modality_{side}"] == modality) & (sub[f"modality_{other}"] != modality)]
        for _, r in part.iterrows():
            rows.append(
                {
                    "model": r[f"model_{side}"],
                    "score": r["score"],
                    "params": r[f"params_{side}"],
                    "bpb": r[f"bpb_{side}"],
                    "imagenet_top1": r[f"imagenet_top1_{side}"],
                }
            )
    if not rows:
        return pd.DataFrame(columns=["model", "score", "params", "bpb", "imagenet_top1"])
    return (
        pd.DataFrame(rows)
        .groupby("model", as_index=False)
        .agg(
            score=("score", "mean"),
            params=("params", "first"),
            bpb=("bpb", "first"),
            imagenet_top1=("imagenet_top1", "first"),
        )
    )


def _scatter_with_fit(ax, x, y, labels, xlabel, ylabel, seed=0):
    from prh import stats

    ax.scatter(x, y, color="tab:blue", zorder=3)
    for xi, yi, name in zip(x, y, labels):
        ax.annotate(name, (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ok = np.isfinite(x) & np.isfinite(y)
    text = f"n={int(ok.sum())} models with this figure: too few for a correlation (3 needed)"
    if ok.sum() >= 3 and np.ptp(x[ok]) > 0 and np.ptp(y[ok]) > 0:
        slope, intercept = np.polyfit(x[ok], y[ok], 1)
        grid = np.linspace(x[ok].min(), x[ok].max(), 50)
        ax.plot(grid, slope * grid + intercept, color="tab:red", lw=1, label="least-squares fit")
        corr = stats.correlation(x[ok], y[ok], method="pearson", seed=seed)
        rank = stats.correlation(x[ok], y[ok], method="spearman", seed=seed)
        text = (
            f"Pearson r={corr.r:.2f} [{corr.ci_low:.2f}, {corr.ci_high:.2f}], p={corr.p_value:.3f}\n"
            f"Spearman ρ={rank.r:.2f} [{rank.ci_low:.2f}, {rank.ci_high:.2f}], p={rank.p_value:.3f}\n"
            f"n={int(ok.sum())} models; 95% bootstrap intervals, permutation p"
        )
    ax.set_title(text, fontsize=7.5)
    ax.grid(alpha=0.3)


def competence_plot(results: Results, metric: str, path: Path) -> str | None:
    """Alignment vs competence: language models (bits-per-byte) and vision models (params, ImageNet top-1)."""
    lang = mean_cross_modal(results.table, metric, "language")
    vis = mean_cross_modal(results.table, metric, "vision")
    panels = []
    # a panel needs at least two models with the competence figure (a correlation is reported from three on)
    if lang["bpb"].notna().sum() >= 2:
        panels.append((lang, "bpb", "bits per byte (lower = better language model)", "language"))
    if vis["imagenet_top1"].notna().sum() >= 2:
        panels.append((vis, "imagenet_top1", "reported ImageNet top-1 (%)", "vision"))
    if lang["params"].notna().sum() >= 2:
        panels.append((lang, "params", "parameters (log scale)", "language"))
    if vis["params"].notna().sum() >= 2:
        panels.append((vis, "params", "parameters (log scale)", "vision"))
    if not panels:
        return None
    competence_panels(panels, metric, path)
    return (
        f"Alignment vs competence ({metric}): each point is one model's mean best-layer alignment to the models "
        f"of the other modality. With few models the intervals are wide: read the sign, not the decimals."
    )


def competence_panels(panels: list[tuple], metric: str, path: Path) -> None:
    """Draw alignment-vs-competence panels, two per row: each ``(frame, column, x label, modality)`` plots the
    frame's mean cross-modal ``score`` against ``column`` (log10 for parameter counts) with a fit and correlations."""
    cols = min(len(panels), 2)
    rows = -(-len(panels) // cols)
    fig, axes = subplots(rows, cols, figsize=(5.2 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.remove()
    for ax, (df, col, xlabel, modality) in zip(axes.flat, panels):
        x = df[col].to_numpy(dtype=float)
        if col == "params":
            x = np.log10(x)
            xlabel = "log10 " + xlabel
        _scatter_with_fit(
            ax,
            x,
            df["score"].to_numpy(dtype=float),
            list(df["model"]),
            xlabel,
            f"mean cross-modal {metric}\n({modality} model vs other modality)",
        )
    save_figure(fig, path)


def best_pair_grid(results: Results, metric: str, path: Path) -> str | None:
    """The full layer-pair grid of the best-aligned cross-modal pair."""
    sub = _main(results.table, metric)
    sub = sub[sub["modality_x"] != sub["modality_y"]]
    if sub.empty:
        return None
    best = sub.loc[sub["score"].idxmax()]
    grid = results.grid(metric, best["model_x"], best["model_y"])
    fig, ax = subplots(figsize=(5.0, 4.2))
    im = ax.imshow(grid, aspect="auto", cmap="magma", origin="lower")
    i, j = int(best["best_layer_x"]), int(best["best_layer_y"])
    ax.scatter([j], [i], marker="*", s=120, color="cyan", label=f"best ({i}, {j}) = {best['score']:.3f}")
    ax.set_ylabel(f"{best['model_x']} layer")
    ax.set_xlabel(f"{best['model_y']} layer")
    ax.legend(loc="upper left", fontsize=7)
    fig.colorbar(im, ax=ax, label=metric)
    ax.set_title(f"layer-pair grid of the best cross-modal pair ({metric})", fontsize=9)
    save_figure(fig, path)
    return (
        f"Every layer pair of {best['model_x']} x {best['model_y']} ({metric}); the star marks the best pair."
    )


def classical_mds(distances: np.ndarray, dims: int = 2) -> np.ndarray:
    """Classical (Torgerson) MDS of a symmetric (M, M) distance matrix -> (M, dims) coordinates."""
    m = distances.shape[0]
    h = np.eye(m) - 1.0 / m
    b = -0.5 * h @ (distances**2) @ h
    values, vectors = np.linalg.eigh(b)
    order = np.argsort(values)[::-1][:dims]
    return vectors[:, order] * np.sqrt(np.clip(values[order], 0, None))


def label_offsets(xy: np.ndarray, near: float = 0.04, step: float = 9.0) -> list[float]:
    """Vertical label offsets (points) that stack the labels of points closer than ``near`` x the plot span.

    ``xy``: (M, 2) coordinates. Returns M offsets: 3 for an isolated point, 3, -6, -15, ... within a cluster.
    """
    span = float(np.ptp(xy, axis=0).max()) or 1.0
    offsets = [3.0] * len(xy)
    placed: list[int] = []
    for i in np.argsort(-xy[:, 1], kind="stable"):
        close = [j for j in placed if np.abs(xy[i] - xy[j]).max() < near * span]
        offsets[i] = 3.0 - step * len(close)
        placed.append(int(i))
    return offsets


def model_map(results: Results, metric: str, path: Path) -> str | None:
    """A 2-D map of all models: classical MDS on 1 - alignment."""
    groups = models_by_modality(results.table)
    names = [n for modality in sorted(groups) for n in groups[modality]]
    if len(names) < 3:
        return None
    sim = pair_matrix(results.table, metric, names, names)
    if not np.isfinite(sim).all():
        return None
    dist = np.clip(1.0 - (sim + sim.T) / 2.0, 0.0, None)
    np.fill_diagonal(dist, 0.0)
    xy = classical_mds(dist)
    fig, ax = subplots(figsize=(5.2, 4.4))
    colors = {"language": "tab:orange", "vision": "tab:blue"}
    for modality in sorted(groups):
        idx = [names.index(n) for n in groups[modality]]
        ax.scatter(xy[idx, 0], xy[idx, 1], label=modality, color=colors.get(modality, "gray"), s=40)
    offsets = label_offsets(xy)
    for i, name in enumerate(names):
        ax.annotate(name, xy[i], fontsize=7, xytext=(4, offsets[i]), textcoords="offset points")
    ax.legend(fontsize=8)
    ax.set_title(f"map of the models (classical MDS on 1 - {metric})", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    save_figure(fig, path)
    return "Models placed so that distances approximate 1 - alignment: nearby models see the data alike."


def chance_level(metric: str, k: object, n: object) -> tuple[float, str] | None:
    """The expected score of independent inputs for ``metric`` at ``n`` samples and ``k`` neighbours, from the
    metric's ``null_expectation``, and how its documentation writes it (``"k / (N-1)"``).

    Returns None for an unregistered metric, a metric without a closed form, a missing ``k`` of a metric that uses
    it, or a chance level of 0 (nothing to draw a ratio against).
    """
    from prh.metrics import names as metric_names
    from prh.metrics import spec as metric_spec

    if metric not in metric_names() or pd.isna(n):
        return None
    spec = metric_spec(metric)
    if spec.null_expectation is None or (spec.uses_k and pd.isna(k)):
        return None
    value = spec.chance(int(n), {"k": int(k)} if spec.uses_k else {})
    if not value:
        return None
    return value, (spec.properties.null if spec.properties is not None else "expected under independence")


def control_plot(results: Results, metric: str, path: Path) -> str | None:
    """Best cross-modal score per pair, real captions vs shuffled captions, with the metric's chance level (its
    expected score under independence, e.g. k/(N-1) for mutual kNN) where it has one."""
    table = results.table[results.table["metric"] == metric]
    cross = table[table["modality_x"] != table["modality_y"]]
    real = cross[cross["control"] == "none"]
    shuffled = cross[cross["control"] != "none"]
    if real.empty or shuffled.empty:
        return None
    key = lambda df: df["model_x"] + " × " + df["model_y"]  # noqa: E731
    merged = pd.DataFrame({"pair": key(real), "real": real["score"].to_numpy()}).merge(
        pd.DataFrame({"pair": key(shuffled), "shuffled": shuffled["score"].to_numpy()}), on="pair"
    )
    fig, ax = subplots(figsize=(max(5.0, 0.5 * len(merged) + 2), 3.8))
    pos = np.arange(len(merged))
    ax.bar(pos - 0.2, merged["real"], width=0.4, label="paired captions")
    ax.bar(pos + 0.2, merged["shuffled"], width=0.4, label="captions shuffled (control)")
    chance = chance_level(metric, real["k"].iloc[0], real["N"].iloc[0])
    if chance is not None:
        ax.axhline(chance[0], color="black", ls="--", lw=1, label=f"chance {chance[1]}")
    ax.set_xticks(pos, merged["pair"], rotation=60, ha="right", fontsize=6)
    ax.set_ylabel(f"best-layer {metric}")
    ax.legend(fontsize=7)
    ax.set_title("real pairing vs shuffled captions", fontsize=9)
    save_figure(fig, path)
    return (
        "Each bar pair is one language x vision model pair: with the real pairing, and with the captions shuffled "
        "(the same models, the pairing destroyed). The control falls to chance."
    )
