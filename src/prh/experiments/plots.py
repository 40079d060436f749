"""Figures of the experiments (matplotlib without pyplot, written with :func:`prh.report.figures.save_figure`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prh._figure import subplots
from prh.report.figures import save_figure


def color_embeddings(
    embeddings: Mapping[str, tuple[np.ndarray, int | None]], hexes: Sequence[str], vs_lab: Mapping, path: Path
) -> None:
    """One scatter panel per kernel, every point drawn in its own colour (the paper's colour figure)."""
    names = list(embeddings)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = subplots(rows, cols, figsize=(3.4 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    for ax, name in zip(axes.ravel(), names):
        xy, layer = embeddings[name]
        ax.scatter(xy[:, 0], xy[:, 1], c=list(hexes), s=22, edgecolors="#00000033", linewidths=0.4)
        title = name if layer is None else f"{name} (layer {layer})"
        if name in vs_lab:
            c = vs_lab[name]
            title += f"\nvs CIELAB: kNN {c.mutual_knn:.2f}, ρ {c.spearman:.2f}"
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal", adjustable="datalim")
    save_figure(fig, path)


def agreement_bars(comparisons: Sequence[Any], path: Path) -> None:
    """Bars of each kernel's agreement with CIELAB (mutual kNN, Spearman), with the null mean and the control."""
    fig, axes = subplots(1, 2, figsize=(11, 0.45 * len(comparisons) + 1.8))
    labels = [f"{c.a} [{c.kind_a}]" for c in comparisons]
    y = np.arange(len(comparisons))
    for ax, stat, title in ((axes[0], "knn", "mutual kNN"), (axes[1], "spearman", "Spearman ρ of distances")):
        score = [c.mutual_knn if stat == "knn" else c.spearman for c in comparisons]
        null = [c.null_mean_knn if stat == "knn" else c.null_mean_spearman for c in comparisons]
        control = [c.control_knn if stat == "knn" else c.control_spearman for c in comparisons]
        p = [c.p_knn if stat == "knn" else c.p_spearman for c in comparisons]
        ax.barh(y, score, color="#4c72b0", label="real labels (best layer)")
        ax.scatter(null, y, marker="|", s=200, color="black", label="null mean (layer max)", zorder=3)
        ax.scatter(control, y, marker="x", color="#c44e52", label="labels shuffled", zorder=3)
        for yi, (s, pv) in enumerate(zip(score, p)):
            ax.text(s, yi, f" p={pv:.2g}", va="center", fontsize=7)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"agreement with CIELAB: {title}", fontsize=9)
        ax.axvline(0, color="#999", lw=0.6)
    axes[0].legend(fontsize=7, loc="lower right")
    save_figure(fig, path)


def kernel_matrix(names: Sequence[str], comparisons: Sequence[Any], path: Path) -> None:
    """Heatmap of the mutual kNN of every pair of kernels (best layer pair)."""
    idx = {n: i for i, n in enumerate(names)}
    m = np.full((len(names), len(names)), np.nan)
    for c in comparisons:
        m[idx[c.a], idx[c.b]] = m[idx[c.b], idx[c.a]] = c.mutual_knn
    np.fill_diagonal(m, 1.0)
    fig, ax = subplots(figsize=(1.0 + 0.6 * len(names), 0.8 + 0.6 * len(names)))
    im = ax.imshow(
        m, cmap="viridis", vmin=0.0, vmax=float(np.nanmax(m[~np.eye(len(names), dtype=bool)]) or 1.0)
    )
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    for i in range(len(names)):
        for j in range(len(names)):
            if i != j and np.isfinite(m[i, j]):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6, color="white")
    fig.colorbar(im, ax=ax, shrink=0.8, label="mutual kNN")
    save_figure(fig, path)


def density_curves(table: Any, chance: float, path: Path) -> None:
    """Alignment (raw with intervals, and calibrated) against mean caption length, one line per model pair."""
    fig, axes = subplots(1, 2, figsize=(11, 4.2))
    for (lm, vm), rows in table.groupby(["model_x", "model_y"], sort=True):
        rows = rows.sort_values("mean_words")
        x = rows["mean_words"].to_numpy()
        yerr = None
        if rows["ci_low"].notna().all():
            yerr = np.vstack([rows["score"] - rows["ci_low"], rows["ci_high"] - rows["score"]]).clip(min=0)
        axes[0].errorbar(x, rows["score"], yerr=yerr, marker="o", ms=4, capsize=3, label=f"{lm} × {vm}")
        axes[1].plot(x, rows["calibrated_score"], marker="o", ms=4, label=f"{lm} × {vm}")
    axes[0].axhline(chance, color="#999", ls="--", lw=0.8, label="chance k/(N-1)")
    axes[0].set_ylabel("mutual kNN (best layer pair, 95% subsampling interval)")
    axes[1].set_ylabel("calibrated mutual kNN (permutation null)")
    for ax in axes:
        ax.set_xlabel("mean caption length (words)")
    axes[0].legend(fontsize=6, ncol=2)
    save_figure(fig, path)


def averaging_curves(curves: Any, fits: Any, chance: float, path: Path) -> None:
    """Alignment against the number of views / captions averaged, with intervals and the fitted saturating curves."""
    axes_of = ("views", "captions", "both")
    titles = {
        "views": "image views averaged (1 caption)",
        "captions": "captions averaged (1 view)",
        "both": "views = captions averaged",
    }
    fig, axes = subplots(1, 3, figsize=(14, 4.2), sharey=True)
    for ax, axis in zip(axes, axes_of):
        sub = curves[curves["axis"] == axis]
        for (lm, vm), rows in sub.groupby(["model_x", "model_y"], sort=True):
            rows = rows.sort_values("count")
            x = rows["count"].to_numpy()
            yerr = np.vstack([rows["score"] - rows["ci_low"], rows["ci_high"] - rows["score"]]).clip(min=0)
            line = ax.errorbar(x, rows["score"], yerr=yerr, marker="o", ms=4, capsize=3, ls="none")
            fit = fits[(fits["axis"] == axis) & (fits["model_x"] == lm) & (fits["model_y"] == vm)]
            label = f"{lm} × {vm}"
            if len(fit) and np.isfinite(fit["s_inf"].iloc[0]):
                f = fit.iloc[0]
                grid = np.linspace(1, max(x.max(), 2), 100)
                ax.plot(
                    grid,
                    f["s_inf"] - (f["s_inf"] - f["s_1"]) * grid ** (-f["exponent"]),
                    color=line.lines[0].get_color(),
                    lw=1,
                )
                label += f" (fit: s∞={f['s_inf']:.3f}, R²={f['r2']:.2f})"
            line.set_label(label)
            if axis == "both" and "control" in rows:
                ax.plot(x, rows["control"], ls=":", color=line.lines[0].get_color(), lw=1)
        ax.axhline(chance, color="#999", ls="--", lw=0.8)
        ax.set_title(titles[axis], fontsize=9)
        ax.set_xlabel("number averaged")
        ax.legend(fontsize=6)
    axes[0].set_ylabel("mutual kNN (best layer pair, 95% interval)")
    axes[2].text(1, chance, " chance; dotted: shuffled pairing", fontsize=7, va="bottom", color="#666")
    save_figure(fig, path)


def gallery_curves(curves: Any, pairings: Sequence[str], path: Path) -> None:
    """Mean score over pairs against gallery size (log axis), per pairing; bands: the pairs' spread; dotted: chance;
    right panel: the calibrated score."""
    has_cal = curves["calibrated"].notna().any()
    fig, axes = subplots(1, 2 if has_cal else 1, figsize=(11 if has_cal else 6, 4), squeeze=False)
    for pairing, colour in zip(pairings, ("C0", "C1", "C2")):
        part = curves[curves["pairing"] == pairing].groupby("size", sort=True)
        for ax, column in zip(axes[0], ("score", "calibrated")):
            mean, low, high = part[column].mean(), part[column].min(), part[column].max()
            ax.plot(mean.index, mean.values, "o-", color=colour, label=pairing)
            ax.fill_between(mean.index, low.values, high.values, color=colour, alpha=0.15)
        chance = part["chance"].mean()
        axes[0][0].plot(chance.index, chance.values, ":", color=colour)
    axes[0][0].set_ylabel("mutual kNN (best layer pair)")
    axes[0][0].set_title("raw score (dotted: chance k/(rows-1))")
    if has_cal:
        axes[0][1].set_ylabel("calibrated score")
        axes[0][1].set_title("calibrated against the permutation null")
    for ax in axes[0]:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("gallery size (items)")
        ax.legend(title="pairing")
    save_figure(fig, path)
