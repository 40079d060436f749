"""`prh experiment caption-density`: denser captions align better with vision models (the paper's Appendix E,
DCI captions summarised at increasing lengths).

The same images, with captions of increasing density: offline, OpenMoji's Unicode name, then its CLDR name,
aliases and tags, then a sentence built from them and its emoji group (:mod:`.captions`); any dataset with several
captions per item gives one level per caption rank (each item's shortest caption, then the next, ...). Every
language model's features of every level are aligned with every vision model's features of the images through the
alignment engine (mutual kNN, best layer pair, permutation-calibrated, with subsampling intervals), and plotted
against the level's mean caption length.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prh._validation import ConfigFields, check_float, check_int, check_quantile
from prh.errors import InputError
from prh.experiments.base import Context, ExperimentResult, ExperimentSpec


@dataclass(frozen=True)
class CaptionDensityConfig(ConfigFields):
    """Options of the caption-density experiment (frozen, validated when built)."""

    levels: int = field(
        default=5,
        metadata={
            "help": "Datasets with their own captions: at most this many levels (caption ranks by length)."
        },
    )
    k: int = field(default=10, metadata={"help": "Neighbours of mutual kNN."})
    permutations: int = field(default=200, metadata={"help": "Permutations K of the calibration null."})
    bootstrap: int = field(default=50, metadata={"help": "Subsamples B of each score's 95% interval."})
    alpha: float = field(default=0.05, metadata={"help": "Significance level of the calibration."})
    q: float = field(default=0.95, metadata={"help": "Outlier clamp quantile of prh.prepare."})

    def __post_init__(self) -> None:
        clean: dict[str, Any] = {
            "levels": check_int(self.levels, "levels", minimum=2, hint="caption levels"),
            "k": check_int(self.k, "k", minimum=1),
            "permutations": check_int(
                self.permutations, "permutations", minimum=0, hint="0 = no calibration"
            ),
            "bootstrap": check_int(self.bootstrap, "bootstrap", minimum=0, hint="0 = no interval, else >= 2"),
            "alpha": check_float(self.alpha, "alpha", 0.0, 1.0, inclusive=(False, False)),
            "q": check_quantile(self.q, "q"),
        }
        for name, value in clean.items():
            object.__setattr__(self, name, value)
        self.align_config(0)  # the engine's own checks (K reaches alpha, B != 1), now

    def align_config(self, seed: int):
        """The :class:`~prh.align.AlignConfig` of each level's alignment run."""
        from prh.align import AlignConfig

        return AlignConfig(
            metrics=("mutual_knn",),
            k=self.k,
            calibrate=self.permutations,
            bootstrap=self.bootstrap,
            alpha=self.alpha,
            seed=seed,
            q=self.q,
        )


def density_levels(dataset: Any, max_levels: int) -> list[tuple[str, Any]]:
    """``(level name, dataset)`` from sparsest to densest: the same images and ids, one caption per item.

    A level whose captions are the dataset's own single captions is the dataset itself (its stored features are
    reused); the others are re-captioned copies named ``<dataset>+density=<level>``.
    """
    from prh.experiments.captions import dataset_levels, emoji_levels, is_emoji_dataset

    levels = emoji_levels(dataset) if is_emoji_dataset(dataset) else dataset_levels(dataset, max_levels)
    out = []
    for level, captions in levels.items():
        if all(len(c) == 1 and c[0] == cap for c, cap in zip(dataset.captions, captions)):
            out.append((level, dataset))
        else:
            out.append(
                (level, dataset.with_captions([[c] for c in captions], f"{dataset.name}+density={level}"))
            )
    return out


def run(ctx: Context, config: CaptionDensityConfig) -> ExperimentResult:
    """Extract every level, align every language x vision pair per level, plot, write the section."""
    import pandas as pd

    from prh.align import PairGrid
    from prh.experiments.captions import words

    base = ctx.load_dataset()
    if config.k >= len(base) // 2:
        raise InputError(
            f"k={config.k} must be below N/2={len(base) // 2} (the subsamples of the intervals); lower --k or "
            f"raise --n."
        )
    levels = density_levels(base, config.levels)
    usable = ctx.usable_models()
    vision = ctx.extract(usable["vision"], base)
    language = list(usable["language"])
    for _, level_set in levels:  # a model that fails on any level is left out
        language = ctx.extract(language, level_set)
    if not vision or not language:
        from prh.errors import ExtractionError

        raise ExtractionError("no vision or no language model could be extracted; see the messages above.")
    ys = ctx.features(vision, base, q=config.q)
    tables = []
    for index, (level, level_set) in enumerate(levels):
        xs = ctx.features(language, level_set, q=config.q)
        results = PairGrid(xs, ys, config.align_config(ctx.options.seed)).run(progress=ctx.options.progress)
        table = results.table.copy()
        lengths = [words(c[0]) for c in level_set.captions]
        table.insert(0, "level", level)
        table.insert(1, "level_index", index)
        table.insert(2, "mean_words", float(np.mean(lengths)))
        table.insert(3, "mean_chars", float(np.mean([len(c[0]) for c in level_set.captions])))
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    n = len(base)
    chance = config.k / (n - 1)
    ctx.write_csv("results.csv", table)

    from prh.experiments import plots

    fig = ctx.figure_path("caption_density.png")
    plots.density_curves(table, chance, fig)

    per_level = (
        table.groupby(["level_index", "level"], sort=True)
        .agg(
            mean_words=("mean_words", "first"),
            score=("score", "mean"),
            calibrated=("calibrated_score", "mean"),
        )
        .reset_index()
    )
    first, last = levels[0][0], levels[-1][0]
    wide = table.pivot_table(index=["model_x", "model_y"], columns="level", values="score")[
        [lv for lv, _ in levels]
    ]
    rises = wide[last] - wide[first]
    lines = [
        f"N={n} items of {base.name}, {len(language)} language x {len(vision)} vision models, mutual kNN (k="
        f"{config.k}, chance {chance:.3f}), K={config.permutations} permutations, B={config.bootstrap} subsamples."
    ]
    for _, row in per_level.iterrows():
        lines.append(
            f"level {row['level']} ({row['mean_words']:.1f} words on average): mean score {row['score']:.3f}, "
            f"mean calibrated {row['calibrated']:.3f}."
        )
    for (lm, vm), rows in table.sort_values("level_index").groupby(["model_x", "model_y"], sort=True):
        points = [
            f"{r['level']} {r['score']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
            + (
                f" (calibrated {r['calibrated_score']:.3f}, p {r['p_value']:.2g})"
                if r["p_value"] == r["p_value"]
                else ""
            )
            for _, r in rows.iterrows()
        ]
        lines.append(f"{lm} x {vm}: " + " -> ".join(points) + ".")
    lines.append(
        f"{int((rises > 0).sum())} of {len(rises)} pairs align better with the densest captions ({last}) than with "
        f"the sparsest ({first}); mean change {rises.mean():+.3f}."
    )
    summary = {
        "n": n,
        "dataset": base.name,
        "levels": [
            {
                "level": r["level"],
                "mean_words": r["mean_words"],
                "score": r["score"],
                "calibrated": r["calibrated"],
            }
            for _, r in per_level.iterrows()
        ],
        "pairs_rising": int((rises > 0).sum()),
        "pairs": int(len(rises)),
        "mean_change": float(rises.mean()),
        "chance": chance,
    }
    ctx.write_json("results.json", {"summary": summary, "provenance": ctx.provenance(config)})
    examples = pd.DataFrame(
        {
            "level": [lv for lv, _ in levels],
            "example caption (item 0)": [ds.captions[0][0] for _, ds in levels],
        }
    )
    _section(ctx, fig, lines, wide.reset_index(), examples)
    return ExperimentResult("caption-density", summary, lines, ctx.folder, list(ctx.files))


def _section(ctx: Context, fig: Any, lines: list[str], wide: Any, examples: Any) -> None:
    ctx.write_report_section(
        "The same images with captions of increasing density; each language model reads each level, and "
        "is aligned with each vision model (mutual kNN, best layer pair, calibrated against a permutation "
        "null, 95% subsampling intervals).",
        lines,
        [
            (
                fig,
                "Alignment against the mean caption length of each level: raw score with its interval (left), "
                "calibrated score (right); one line per language x vision pair.",
                "Alignment vs caption density",
            )
        ],
        [("Mutual kNN per level", wide), ("The levels", examples)],
    )


SPEC = ExperimentSpec(
    name="caption-density",
    title="Caption density",
    summary="Alignment of every language x vision pair against caption density (offline: emoji names -> "
    "keywords -> sentences), calibrated, with intervals.",
    config=CaptionDensityConfig,
    run=run,
    models="offline",
    dataset="openmoji",
    n=256,
    dataset_help="Paired dataset: openmoji (offline; captions from emoji annotations) or one with several "
    "captions per item.",
    order=30,
)
