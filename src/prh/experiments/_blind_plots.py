"""Figures of `prh experiment blind-match` (matplotlib, Agg, written with :func:`prh.report.figures.save_figure`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prh.report.figures import save_figure

_TITLES = {
    "best": "best cross-modal pair",
    "worst": "worst cross-modal pair",
    "vision": "best vision pair (reference)",
    "control": "shuffled captions (control)",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def accuracy_vs_n(curves: Any, focus: dict, path: Path) -> None:
    """One panel per focus pair: accuracy (mean, 95% interval over subsets) against n per method, log n, chance."""
    plt = _plt()
    roles = [r for r in focus if not curves.empty and (curves["role"] == r).any()] or list(focus)
    fig, axes = plt.subplots(1, len(roles), figsize=(3.6 * len(roles), 3.4), squeeze=False, sharey=True)
    for ax, role in zip(axes[0], roles):
        part = (
            curves[(curves["role"] == role) & (curves["seed_fraction"] == 0)] if not curves.empty else curves
        )
        for method in part["method"].unique() if not part.empty else []:
            m = part[part["method"] == method].sort_values("n")
            err = np.vstack([m["accuracy"] - m["ci_low"], m["ci_high"] - m["accuracy"]]).clip(min=0)
            ax.errorbar(m["n"], m["accuracy"], yerr=err, marker="o", ms=3, capsize=2, label=method)
        if not part.empty:
            ns = np.sort(part["n"].unique())
            ax.plot(ns, 1.0 / ns, ":", color="black", label="chance 1/n")
        p = focus[role]
        ax.set_title(f"{_TITLES.get(role, role)}\n{p['model_x']} x {p['model_y']}", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("n (items)")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("matching accuracy")
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path)


def accuracy_vs_seeds(curves: Any, path: Path) -> None:
    """Seeded QAP on the best pair: accuracy on unseeded items against the seed fraction, one line per n."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    part = curves[(curves["role"] == "best") & (curves["method"] == "qap")]
    for n in sorted(part["n"].unique()):
        m = part[part["n"] == n].sort_values("seed_fraction")
        line = ax.errorbar(
            m["seed_fraction"] * 100,
            m["accuracy"],
            yerr=np.vstack([m["accuracy"] - m["ci_low"], m["ci_high"] - m["accuracy"]]).clip(min=0),
            marker="o",
            ms=3,
            capsize=2,
            label=f"n={n}",
        )
        ax.plot(m["seed_fraction"] * 100, m["chance"], ":", color=line[0].get_color())
    ax.set_xlabel("known pairs (% of n)")
    ax.set_ylabel("accuracy on the other items")
    ax.set_title("seeded QAP, best cross-modal pair", fontsize=9)
    ax.legend(fontsize=7)
    save_figure(fig, path)


def accuracy_vs_alignment(table: Any, correlation: dict, path: Path) -> None:
    """Every pair of the scan: accuracy against mutual kNN and against CKNNA, cross-modal and vision pairs marked."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, metric in zip(axes, ("mutual_knn", "cknna")):
        for kind, marker in (("cross", "o"), ("vision", "s")):
            part = table[table["kind"] == kind]
            ax.scatter(part[metric], part["accuracy"], marker=marker, label=f"{kind} pairs", alpha=0.8)
        if "chance" in table:
            ax.axhline(float(table["chance"].iloc[0]), ls=":", color="black", label="chance")
        c = correlation.get(metric, {})
        title = metric
        if "r" in c:
            title += f": Spearman ρ {c['r']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}]"
        ax.set_title(title, fontsize=8)
        ax.set_xlabel(metric)
    axes[0].set_ylabel("blind-matching accuracy (QAP)")
    axes[0].legend(fontsize=7)
    save_figure(fig, path)
