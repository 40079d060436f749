"""Figures of the world experiment (matplotlib without pyplot): one function per PNG, reading ``world.json`` data.

Each function takes the dict returned by :func:`prh.world.experiment.run_world` (or loaded from ``world.json``)
and a path, writes the PNG atomically and returns the path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prh._figure import subplots
from prh.atomic import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_CURVES = (
    ("mutual_knn", "cross-modal mutual kNN", "tab:blue"),
    ("unbiased_cka", "cross-modal unbiased CKA", "tab:orange"),
    ("agree_pmi", "agreement with PMI kernel", "tab:green"),
)


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=130, bbox_inches="tight", format="png"))


def _curve_plot(result: dict, sweep: str, axis: str, xlabel: str, title: str, path: Path) -> Path:
    curve = result["summary"][sweep]
    xs = curve[axis]
    fig, ax = subplots(figsize=(5.5, 3.8))
    for key, label, color in _CURVES:
        means = [p["mean"] for p in curve[key]]
        sds = [p["sd"] for p in curve[key]]
        ax.errorbar(xs, means, yerr=sds, marker="o", capsize=3, label=label, color=color)
    m = result["settings"]["m"]
    k = result["settings"]["k"]
    ax.axhline(k / (m - 1), color="grey", linestyle=":", linewidth=1, label="mutual kNN chance (k/(M-1))")
    ax.set_xscale("log", base=2 if sweep == "capacity" else 10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("score")
    ax.set_ylim(-0.05, 1.02)
    ax.set_title(f"{title} (mean ± sd over {result['seeds']} seed(s))", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def plot_capacity(result: dict, path: Path) -> Path:
    """Alignment (cross-modal and with PMI) vs the learners' hidden width."""
    return _curve_plot(
        result, "capacity", "width", "hidden width of both encoders", "Alignment vs capacity", path
    )


def plot_data(result: dict, path: Path) -> Path:
    """Alignment (cross-modal and with PMI) vs the number of training tokens, at the largest width."""
    return _curve_plot(result, "data", "tokens", "training tokens (events)", "Alignment vs data", path)


def plot_scatter(result: dict, path: Path) -> Path:
    """Learned kernel entries vs PMI kernel entries (first seed, largest learners, off-diagonal subsample)."""
    sc = result["runs"][0]["scatter"]
    cap = result["runs"][0]["capacity"][-1]
    panels = (
        ("learned_x", f"learner X (r = {cap['agree_x']:.3f})", "tab:blue"),
        ("learned_y", f"learner Y (r = {cap['agree_y']:.3f})", "tab:orange"),
        ("learned_y_lossy", f"lossy Y (r = {result['runs'][0]['lossy']['agree_lossy']:.3f})", "tab:red"),
    )
    fig, axes = subplots(1, 3, figsize=(11, 3.6), sharex=True)
    for ax, (key, title, color) in zip(axes, panels):
        ax.scatter(sc["pmi"], sc[key], s=3, alpha=0.35, color=color, linewidths=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("K_PMI(a, b) = log P_coor(a,b) / (P(a) P(b))")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("<f(x_a), f(x_b)> / temperature")
    fig.suptitle("Learned kernel vs PMI kernel (off-diagonal pairs of states, seed 0)", fontsize=10)
    return _save(fig, path)


def plot_lossy(result: dict, path: Path) -> Path:
    """Bijective vs lossy observation of Y: agreement with PMI (with the exact ceiling) and cross-modal alignment."""
    lossy = result["summary"]["lossy"]
    groups = (
        ("agreement of Y's kernel\nwith PMI", "agree_bijective", "agree_lossy"),
        ("mutual kNN with X", "mutual_knn_bijective", "mutual_knn_lossy"),
        ("unbiased CKA with X", "unbiased_cka_bijective", "unbiased_cka_lossy"),
    )
    fig, ax = subplots(figsize=(6.5, 3.8))
    width = 0.38
    for i, (_label, bij, los) in enumerate(groups):
        for j, (key, color, name) in enumerate(
            ((bij, "tab:blue", "bijective Y"), (los, "tab:red", "lossy Y"))
        ):
            ax.bar(
                i + (j - 0.5) * width, lossy[key]["mean"], width, yerr=lossy[key]["sd"], capsize=3, color=color,
                label=name if i == 0 else None,
            )  # fmt: skip
    ceiling = lossy["ceiling"]["mean"]
    ax.hlines(
        ceiling, -0.5, 0.5, colors="black", linestyles="--", label=f"lossy ceiling (exact) = {ceiling:.3f}"
    )
    ax.set_xticks(range(len(groups)), [g[0] for g in groups], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    n_obs = int(lossy["observations"]["mean"])
    ax.set_title(
        f"Lossy observation: {result['settings']['m']} states seen as {n_obs} observations "
        f"(mean ± sd, {result['seeds']} seed(s))",
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_all(result: dict, out_dir: Path) -> dict[str, Path]:
    """Write all four figures into ``out_dir``; returns ``{name: path}``."""
    out = Path(out_dir)
    return {
        "capacity": plot_capacity(result, out / "world_capacity.png"),
        "data": plot_data(result, out / "world_data.png"),
        "scatter": plot_scatter(result, out / "world_kernel_scatter.png"),
        "lossy": plot_lossy(result, out / "world_lossy.png"),
    }
