"""Save a :class:`~prh.stitch.StitchResult` into a results folder: JSON, CSV grids, a figure, a report section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from prh.atomic import atomic_write, atomic_write_text
from prh.stitch._stitch import StitchResult

#: Position of the stitching section among the report's sections.
SECTION_ORDER = 60


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c == "-" else "-" for c in text.lower()).strip("-")


def draw(result: StitchResult, path: Path) -> None:
    """Stitching agreement grid beside the mutual-kNN grid of the same blocks, and the diagonal's controls."""
    from prh._figure import subplots

    fig, axes = subplots(1, 3, figsize=(15, 4.4))
    grids = (
        (result.agreement, "stitching: held-out top-1 agreement with B"),
        (result.knn, "mutual kNN (pooled)"),
    )
    for ax, (grid, title) in zip(axes[:2], grids):
        im = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(len(result.blocks_b)), result.blocks_b, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(result.blocks_a)), result.blocks_a, fontsize=8)
        ax.set_xlabel(f"block of {result.model_b} (receiver)")
        ax.set_ylabel(f"block of {result.model_a} (sender)")
        ax.set_title(title, fontsize=10)
        for (r, c), v in np.ndenumerate(grid):
            ax.text(
                c,
                r,
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="w" if v < grid.max() * 0.6 else "k",
            )
        fig.colorbar(im, ax=ax, fraction=0.046)
    ax = axes[2]
    x = np.arange(len(result.blocks_b))
    c = result.controls
    ax.plot(x, c["stitch"], "o-", label=f"{result.model_a} → {result.model_b}")
    ax.plot(x, c["noise"], "s--", label="random-noise sender")
    ax.plot(x, c["shuffled"], "^--", label="shuffled pairing")
    ax.axhline(c["chance"], color="gray", lw=1, ls=":", label="chance (B's most frequent class)")
    if result.finetuned:
        ax.plot(x, result.finetuned["agreement"], "o-", label="fine-tuned")
    ax.set_xticks(x, result.blocks_b, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("held-out top-1 agreement with B")
    ax.set_title(f"diagonal cells (Spearman of grids = {result.spearman:.2f})", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def write_stitch(result: StitchResult, out: str | Path) -> Path:
    """Write ``<out>/stitch/<a>--<b>/`` (stitch.json, agreement.csv, kl.csv, knn.csv, figure.png) and the report
    section ``<out>/sections/60-stitch-<a>--<b>.html``; returns the pair's folder."""
    from prh.report.sections import Figure, Section, Table, write_section

    out = Path(out)
    name = f"{_slug(result.model_a)}--{_slug(result.model_b)}"
    folder = out / "stitch" / name
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "stitch.json", json.dumps(result.to_dict(), indent=1))
    for key, grid in (("agreement", result.agreement), ("kl", result.kl), ("knn", result.knn)):
        frame = pd.DataFrame(grid, index=result.blocks_a, columns=result.blocks_b)
        atomic_write_text(
            folder / f"{key}.csv", frame.to_csv(index_label=f"{result.model_a} \\ {result.model_b}")
        )
    draw(result, folder / "figure.png")
    c = result.controls
    best = np.unravel_index(int(np.argmax(result.agreement)), result.agreement.shape)
    rows = pd.DataFrame(
        {
            f"block of {result.model_b}": result.blocks_b,
            f"block of {result.model_a}": [result.blocks_a[i] for i in result.diagonal],
            "stitched": c["stitch"],
            "random-noise sender": c["noise"],
            "shuffled pairing": c["shuffled"],
            **({"fine-tuned": result.finetuned["agreement"]} if result.finetuned else {}),
        }
    )
    rel = f"stitch/{name}"
    section = Section(
        name=f"stitch-{name}",
        title=f"Model stitching: {result.model_a} → {result.model_b}",
        order=SECTION_ORDER,
        paragraphs=[
            f"Block i of {result.model_a} feeds block j+1 of {result.model_b} through one 1×1 convolution fitted by "
            f"least squares on {result.n_train} items; the stitched model is scored on {result.n_test} held-out items "
            f"by its top-1 agreement with {result.model_b} itself (label-free; 1.0 = no stitching penalty).",
            "Controls on the diagonal cells: a random-noise sender with the sender's shapes and clustering, and a map "
            "fitted on shuffled sender/receiver pairs; self-stitching A→A is the ceiling of the method.",
        ],
        findings=[
            f"best cell {result.blocks_a[best[0]]} → {result.blocks_b[best[1]]}: agreement "
            f"{result.agreement[best]:.3f} (KL {result.kl[best]:.3f} nats).",
            f"controls: noise sender {min(c['noise']):.3f}–{max(c['noise']):.3f}, shuffled pairing "
            f"{min(c['shuffled']):.3f}–{max(c['shuffled']):.3f}, chance {c['chance']:.3f}, self-stitching "
            f"{min(c['self']):.3f}–{max(c['self']):.3f}.",
            f"Spearman correlation between the stitching grid and the mutual-kNN grid: {result.spearman:.2f}.",
        ],
        figures=[
            Figure(
                f"{rel}/figure.png",
                "left: stitching grid; middle: mutual kNN of the same blocks; "
                "right: the diagonal cells with their controls.",
                "stitching vs mutual kNN",
            )
        ],
        tables=[Table("Diagonal cells and controls (held-out top-1 agreement with B)", rows)],
        files=[
            ("stitch.json", f"{rel}/stitch.json"),
            ("agreement.csv", f"{rel}/agreement.csv"),
            ("knn.csv", f"{rel}/knn.csv"),
        ],
    )
    write_section(out, section)
    return folder
