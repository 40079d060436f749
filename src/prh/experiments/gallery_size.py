"""`prh experiment gallery-size`: cross-modal alignment against the size of the gallery it is measured on.

Koepke et al. (2026, "Back into Plato's Cave") report that vision-language alignment measured on 1K items does not
survive larger galleries: it falls as the gallery grows toward millions of items, and further with many-to-many
captions. This experiment measures that curve on any paired set prh can load, from 128 items to all of them:

* gallery sizes m (``--sizes``, default 128, 256, 512, ... and all N), ``--repeats`` random item subsets per size
  (the same subsets for every model pair, seeded);
* for every vision x language pair and subset: the layer-maximised mutual kNN, its chance level k/(rows - 1), and the
  calibrated score and p-value of a ``--calibrate`` K-permutation null (layer maximum included, :mod:`prh.stats`);
* pairing modes (``--pairing``) where items have several captions (a dataset's own, or OpenMoji's caption variants
  from emoji annotations, as in ``test-time-averaging``): ``one`` (one caption per image), ``average`` (text features
  averaged over the captions), ``all`` (every image-caption pair is its own row: m x c rows, each image repeated
  c times — its copies are one another's nearest neighbours, as in a many-to-many gallery).

Features are extracted once for all N items (through the feature store, so a run resumes) and subsets are rows of
them, prepared per subset; each model's per-layer caches are built once per subset and serve all its pairs and the
calibration (:func:`prh._sweep.cache_layers`). Every point reports the mean over the subsets and the range they span.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from prh._validation import ConfigFields, check_int, check_quantile, check_str
from prh.errors import InputError
from prh.experiments.base import Context, ExperimentResult, ExperimentSpec

#: The pairing modes, in the order they are reported.
PAIRINGS = ("one", "average", "all")


def parse_sizes(text: str, n: int) -> list[int]:
    """Gallery sizes: ``"auto"`` (128, 256, ... below N, then N) or comma-separated integers (each <= N).

    Raises
    ------
    InputError
        A size that is not an integer, below 16, above N, or repeated.
    """
    if text.strip().lower() == "auto":
        return [m for m in (128 * 2**i for i in range(20)) if m < n] + [n]
    out: list[int] = []
    for part in text.split(","):
        try:
            m = int(part.strip())
        except ValueError:
            raise InputError(
                f"--sizes {text!r}: {part.strip()!r} is not an integer; e.g. --sizes 128,512,1024."
            ) from None
        if m < 16 or m > n:
            raise InputError(
                f"--sizes {text!r}: gallery size {m} must be between 16 and N={n} (the items there are)."
            )
        if m in out:
            raise InputError(f"--sizes {text!r} names {m} twice.")
        out.append(m)
    return sorted(out)


def parse_pairings(text: str) -> list[str]:
    """Pairing modes from a comma-separated list of :data:`PAIRINGS`."""
    from prh._validation import check_names

    return check_names(text, "pairing", PAIRINGS)


@dataclass(frozen=True)
class GallerySizeConfig(ConfigFields):
    """Options of the gallery-size experiment (frozen, validated when built)."""

    sizes: str = field(
        default="auto", metadata={"help": "Gallery sizes: auto (128, 256, ..., N) or e.g. 128,512."}
    )
    repeats: int = field(default=3, metadata={"help": "Random item subsets per gallery size (>= 1)."})
    k: int = field(default=10, metadata={"help": "Neighbours of mutual kNN."})
    calibrate: int = field(default=99, metadata={"help": "Permutations K of the calibrated score (0 = off)."})
    pairing: str = field(default="one,average,all", metadata={"help": "Pairing modes: one, average, all."})
    captions: int = field(default=3, metadata={"help": "Captions per item for --pairing average/all (>= 2)."})
    q: float = field(default=0.95, metadata={"help": "Outlier clamp quantile of prh.prepare."})

    def __post_init__(self) -> None:
        clean: dict[str, Any] = {
            "sizes": check_str(self.sizes, "sizes", allow_empty=False),
            "repeats": check_int(self.repeats, "repeats", minimum=1, hint="subsets per size"),
            "k": check_int(self.k, "k", minimum=1),
            "calibrate": check_int(self.calibrate, "calibrate", minimum=0, hint="0 = off"),
            "pairing": ",".join(parse_pairings(self.pairing)),
            "captions": check_int(self.captions, "captions", minimum=2, hint="captions per item"),
            "q": check_quantile(self.q, "q"),
        }
        if 0 < clean["calibrate"] < 19:
            raise InputError(
                f"calibrate={clean['calibrate']} permutations cannot reach p <= 0.05 (needs K >= 19); use 0 or >= 19."
            )
        for name, value in clean.items():
            object.__setattr__(self, name, value)


def subsets(n: int, sizes: list[int], repeats: int, seed: int) -> list[tuple[int, int, torch.Tensor]]:
    """``(size, repeat, sorted item indices)`` for every size and repeat; the full set is drawn once."""
    g = torch.Generator().manual_seed(20_000 + seed)
    out = []
    for m in sizes:
        for r in range(1 if m == n else repeats):
            idx = torch.arange(n) if m == n else torch.randperm(n, generator=g)[:m].sort().values
            out.append((m, r, idx))
    return out


def _rows(idx: torch.Tensor, copies: int) -> torch.Tensor:
    """Row indices of items ``idx`` in an item-major (N * copies) layout: item i's copies are rows i*c..i*c+c-1."""
    return (idx[:, None] * copies + torch.arange(copies)[None, :]).reshape(-1)


def _views(
    vision: dict[str, list[torch.Tensor]], texts: dict[str, list[list[torch.Tensor]]], pairing: str
) -> tuple[dict[str, list[torch.Tensor]], dict[str, list[torch.Tensor]], int]:
    """Raw per-layer features of every model in one pairing mode, and the rows per item (1, or c for ``all``)."""
    if pairing == "one":
        return vision, {name: sets[0] for name, sets in texts.items()}, 1
    if pairing == "average":
        mean = {
            name: [
                torch.stack([s[layer] for s in sets]).double().mean(0).float()
                for layer in range(len(sets[0]))
            ]
            for name, sets in texts.items()
        }
        return vision, mean, 1
    c = len(next(iter(texts.values())))
    repeated = {name: [t.repeat_interleave(c, dim=0) for t in layers] for name, layers in vision.items()}
    interleaved = {
        name: [
            torch.stack([s[layer] for s in sets], dim=1).reshape(-1, sets[0][layer].shape[1])
            for layer in range(len(sets[0]))
        ]
        for name, sets in texts.items()
    }
    return repeated, interleaved, c


def run(ctx: Context, config: GallerySizeConfig) -> ExperimentResult:
    """Extract every model once, score every pair on every subset and pairing mode, write curves and the section."""
    import pandas as pd

    from prh._prepare import prepare
    from prh._sweep import cache_layers, sweep_caches
    from prh.experiments.averaging import caption_sets
    from prh.stats import calibrate_sweep

    base = ctx.load_dataset()
    n = len(base)
    sizes = parse_sizes(config.sizes, n)
    pairings = config.pairing.split(",")
    many = [p for p in pairings if p != "one"]
    texts_ds = caption_sets(base, config.captions) if many else [base]
    if many and len(texts_ds) < 2:
        raise InputError(f"--pairing {','.join(many)} needs several captions per item; {base.name} has one.")
    usable = ctx.usable_models()
    vision_specs = ctx.extract(list(usable["vision"]), base)
    language_specs = list(usable["language"])
    for ds in texts_ds:
        language_specs = ctx.extract(language_specs, ds)
    if not vision_specs or not language_specs:
        from prh.errors import ExtractionError

        raise ExtractionError("no vision or no language model could be extracted; see the messages above.")
    vision = {s.name: ctx.raw_layers(s, base) for s in vision_specs}
    texts = {s.name: [ctx.raw_layers(s, ds) for ds in texts_ds] for s in language_specs}
    smallest = sizes[0]
    if config.k >= smallest - 1:
        raise InputError(
            f"k={config.k} must be below the smallest gallery size minus 1 ({smallest - 1}); lower --k."
        )

    draws = subsets(n, sizes, config.repeats, ctx.options.seed)
    rows: list[dict] = []
    total = len(pairings) * len(draws) * len(vision) * len(texts)
    bar = ctx.bar(total, "gallery size")
    for pairing in pairings:
        vis, txt, copies = _views(vision, texts, pairing)
        for m, r, idx in draws:
            rows_idx = _rows(idx, copies)
            cache = {}
            for name, layers in (*vis.items(), *txt.items()):
                sub = prepare([t.index_select(0, rows_idx) for t in layers], q=config.q)
                cache[name] = cache_layers(sub, "mutual_knn", name=name, k=config.k)
            for ln in txt:
                for vn in vis:
                    observed = sweep_caches(cache[ln], cache[vn])
                    row = {
                        "pairing": pairing,
                        "size": m,
                        "rows": int(rows_idx.numel()),
                        "repeat": r,
                        "model_x": ln,
                        "model_y": vn,
                        "score": observed.best,
                        "best_layer_x": observed.best_layers[0],
                        "best_layer_y": observed.best_layers[1],
                        "chance": config.k / (rows_idx.numel() - 1),
                        "calibrated": np.nan,
                        "p_value": np.nan,
                    }
                    if config.calibrate:
                        cal = calibrate_sweep(
                            cache[ln],
                            cache[vn],
                            "mutual_knn",
                            K=config.calibrate,
                            seed=ctx.options.seed + r,
                            observed=observed,
                        )
                        row.update(calibrated=cal.calibrated, p_value=cal.p_value)
                    rows.append(row)
                    bar.update(1)
    bar.close()
    table = pd.DataFrame(rows)
    curves = (
        table.groupby(["pairing", "size", "model_x", "model_y"], sort=False)
        .agg(
            score=("score", "mean"),
            score_min=("score", "min"),
            score_max=("score", "max"),
            chance=("chance", "mean"),
            calibrated=("calibrated", "mean"),
            calibrated_min=("calibrated", "min"),
            calibrated_max=("calibrated", "max"),
            p_max=("p_value", "max"),
            subsets=("repeat", "count"),
        )
        .reset_index()
    )
    ctx.write_csv("scores.csv", table)
    ctx.write_csv("curves.csv", curves)
    fig = ctx.figure_path("gallery_size.png")
    from prh.experiments import plots

    plots.gallery_curves(curves, pairings, fig)

    lines = [
        f"{base.name}: N={n} items; gallery sizes {', '.join(map(str, sizes))}; {config.repeats} random subsets per "
        f"size (one at N); mutual kNN k={config.k}"
        + (f", K={config.calibrate} permutations per point" if config.calibrate else "")
        + f"; {len(texts)} language x {len(vision)} vision models; pairing: {', '.join(pairings)}"
        + (f" ({len(texts_ds)} captions per item)" if many else "")
        + "."
    ]
    summary: dict[str, Any] = {"n": n, "dataset": base.name, "sizes": sizes, "k": config.k, "pairings": {}}
    for pairing in pairings:
        part = curves[curves["pairing"] == pairing]
        by_size = part.groupby("size", sort=True).agg(
            score=("score", "mean"), chance=("chance", "mean"), calibrated=("calibrated", "mean")
        )
        first, last = by_size.iloc[0], by_size.iloc[-1]
        summary["pairings"][pairing] = {
            "mean_score": {int(m): float(v) for m, v in by_size["score"].items()},
            "mean_chance": {int(m): float(v) for m, v in by_size["chance"].items()},
            "mean_calibrated": {int(m): float(v) for m, v in by_size["calibrated"].items()},
        }
        text = (
            f"{pairing}: mean over pairs {first['score']:.3f} at m={by_size.index[0]} (chance {first['chance']:.4f}) "
            f"-> {last['score']:.3f} at m={by_size.index[-1]} (chance {last['chance']:.4f})"
        )
        if config.calibrate:
            text += f"; calibrated {first['calibrated']:.3f} -> {last['calibrated']:.3f}"
        lines.append(text + ".")
    ctx.write_json("results.json", {"summary": summary, "provenance": ctx.provenance(config)})
    _section(ctx, fig, lines, curves)
    return ExperimentResult("gallery-size", summary, lines, ctx.folder, list(ctx.files))


def _section(ctx: Context, fig: Any, lines: list[str], curves: Any) -> None:
    ctx.write_report_section(
        "Cross-modal mutual kNN (best layer pair) of every vision x language pair on random galleries of "
        "growing size, with the chance level and the permutation-calibrated score; where items have several "
        "captions, one caption per image, features averaged over captions, or every image-caption pair as "
        "its own row (many-to-many).",
        lines,
        [
            (
                fig,
                "Mean over model pairs against gallery size, per pairing mode; bands span the pairs' subset "
                "means; dotted lines are chance.",
                "Gallery size",
            )
        ],
        [("Per pair and size (mean over subsets; min-max range)", curves)],
    )


SPEC = ExperimentSpec(
    name="gallery-size",
    title="Alignment against gallery size",
    summary="Cross-modal mutual kNN (raw, calibrated, chance) of every vision x language pair on random galleries "
    "from 128 items to all, one-to-one and many-to-many.",
    config=GallerySizeConfig,
    run=run,
    models="offline",
    dataset="openmoji",
    n=None,
    dataset_help="Paired dataset: openmoji (offline, all items; caption variants from emoji annotations) or any "
    "dataset prh loads (a Hugging Face dataset name, a folder).",
    order=60,
)
