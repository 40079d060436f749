"""`prh experiment test-time-averaging`: averaging features over more views of each image and more captions of
each item raises cross-modal alignment along a saturating curve (VideoPRH, 2025: mutual kNN from ~0.16 to ~0.4 with
more frames and captions).

Image views are deterministic augmentations (:data:`VIEWS`: flips, crops, shifts, small rotations, other
background colours), each a dataset of its own that goes through every vision model's own preprocessing and into
the feature store; captions are the dataset's own (several per item) or, offline, OpenMoji's name in templates
over its CLDR names and aliases (:mod:`.captions`). For v = 1..V views and m = 1..M captions the raw per-layer
features are averaged, prepared (:func:`prh.prepare`) and swept over all layer pairs (mutual kNN); each point gets a
95% subsampling interval of the layer-maximised score, the "both" curve a shuffled-pairing control, and each curve
a fitted saturating power law (:mod:`.fitting`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from prh._validation import ConfigFields, check_int, check_quantile
from prh.data.base import PairedDataset
from prh.errors import InputError
from prh.experiments.base import Context, ExperimentResult, ExperimentSpec

#: The deterministic image views, in the order they are averaged (view 1 is the image itself).
VIEWS = (
    "identity",
    "flip",
    "crop-90",
    "shift",
    "background-cream",
    "rotate-10",
    "crop-corner",
    "flip-shift",
    "background-grey",
    "rotate-minus-10",
)


def view_image(img: Any, view: str) -> Any:
    """The RGB PIL image ``img`` seen through ``view`` (one of :data:`VIEWS`); same size as ``img``."""
    from PIL import Image, ImageOps

    img = img.convert("RGB")
    w, h = img.size
    fill = img.getpixel((0, 0))
    if view == "identity":
        return img
    if view == "flip":
        return ImageOps.mirror(img)
    if view == "crop-90":
        dx, dy = round(0.05 * w), round(0.05 * h)
        return img.crop((dx, dy, w - dx, h - dy)).resize((w, h), Image.BICUBIC)
    if view in ("shift", "flip-shift"):
        src = ImageOps.mirror(img) if view == "flip-shift" else img
        sx, sy = round(0.08 * w), round(0.08 * h)
        if view == "flip-shift":
            sx, sy = -sx, -sy
        return src.transform((w, h), Image.AFFINE, (1, 0, -sx, 0, 1, -sy), fillcolor=fill)
    if view.startswith("background-"):
        colour = (240, 228, 200) if view == "background-cream" else (200, 200, 200)
        arr = np.asarray(img).copy()
        mask = arr.min(axis=2) >= 245  # white (background) pixels
        arr[mask] = colour
        return Image.fromarray(arr)
    if view in ("rotate-10", "rotate-minus-10"):
        return img.rotate(10 if view == "rotate-10" else -10, resample=Image.BICUBIC, fillcolor=fill)
    if view == "crop-corner":
        return img.crop((0, 0, round(0.85 * w), round(0.85 * h))).resize((w, h), Image.BICUBIC)
    from prh._validation import suggest

    raise InputError(f"unknown view {view!r}.{suggest(view, VIEWS)} The views are {list(VIEWS)}.")


class ViewDataset(PairedDataset):
    """The items of ``parent`` with every image seen through one view; named ``<parent>+view=<view>``."""

    def __init__(self, parent: PairedDataset, view: str) -> None:
        from prh._validation import check_choice

        check_choice(view, "view", VIEWS)
        self.parent = parent
        self.view = view
        super().__init__(f"{parent.name}+view={view}", parent.ids, parent.captions)

    def _load_image(self, i: int):
        return view_image(self.parent.image(i), self.view)

    def _image_bytes(self, i: int) -> bytes:
        img = self.image(i)
        return f"{img.mode}|{img.size[0]}x{img.size[1]}|".encode() + img.tobytes()


@dataclass(frozen=True)
class AveragingConfig(ConfigFields):
    """Options of the test-time averaging experiment (frozen, validated when built)."""

    views: int = field(default=8, metadata={"help": f"Image views averaged, 1..{len(VIEWS)}."})
    captions: int = field(default=8, metadata={"help": "Captions averaged (at most the dataset's per item)."})
    k: int = field(default=10, metadata={"help": "Neighbours of mutual kNN."})
    bootstrap: int = field(default=50, metadata={"help": "Subsamples B of each point's 95% interval (>= 2)."})
    q: float = field(default=0.95, metadata={"help": "Outlier clamp quantile of prh.prepare."})

    def __post_init__(self) -> None:
        clean: dict[str, Any] = {
            "views": check_int(self.views, "views", minimum=1, maximum=len(VIEWS), hint="image views"),
            "captions": check_int(self.captions, "captions", minimum=1, hint="captions per item"),
            "k": check_int(self.k, "k", minimum=1),
            "bootstrap": check_int(self.bootstrap, "bootstrap", minimum=2, hint="subsamples of the interval"),
            "q": check_quantile(self.q, "q"),
        }
        if clean["views"] < 2 and clean["captions"] < 2:
            raise InputError("views=1 and captions=1 average nothing; give --views or --captions >= 2.")
        for name, value in clean.items():
            object.__setattr__(self, name, value)


def caption_sets(dataset: PairedDataset, m: int) -> list[PairedDataset]:
    """``m'`` <= ``m`` datasets with the same images, caption j of every item in dataset j (dataset 0 is
    ``dataset`` itself when it has one caption per item)."""
    from prh.experiments.captions import dataset_variants, emoji_variants, is_emoji_dataset

    variants = emoji_variants(dataset, m) if is_emoji_dataset(dataset) else dataset_variants(dataset, m)
    count = len(variants[0])
    out = []
    for j in range(count):
        caps = [[v[j]] for v in variants]
        if all(len(c) == 1 and c[0] == cap[0] for c, cap in zip(dataset.captions, caps)):
            out.append(dataset)
        else:
            out.append(dataset.with_captions(caps, f"{dataset.name}+caption={j}"))
    return out


def cumulative_means(sets: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """Per-layer means of the first 1, 2, ..., len(sets) feature sets (each a list of (N, D_l) layers)."""
    out = []
    total = [t.to(torch.float64).clone() for t in sets[0]]
    out.append([t.to(torch.float32) for t in total])
    for j, layers in enumerate(sets[1:], start=2):
        for t, new in zip(total, layers):
            t += new.to(torch.float64)
        out.append([(t / j).to(torch.float32) for t in total])
    return out


def curve_points(views: int, captions: int) -> list[tuple[str, int, int]]:
    """``(axis, v, m)`` of every point: more views (1 caption), more captions (1 view), and both together."""
    pts = [("views", v, 1) for v in range(1, views + 1)]
    pts += [("captions", 1, m) for m in range(1, captions + 1)]
    pts += [("both", t, t) for t in range(1, min(views, captions) + 1)]
    return pts


def run(ctx: Context, config: AveragingConfig) -> ExperimentResult:
    """Extract every view and caption set, sweep every averaged pair, fit the curves, write the section."""
    import pandas as pd

    from prh._prepare import prepare
    from prh._sweep import sweep
    from prh.align import shuffled_control
    from prh.experiments.fitting import fit_saturating
    from prh.stats import bootstrap_ci

    base = ctx.load_dataset()
    n = len(base)
    if config.k >= n // 2:
        raise InputError(
            f"k={config.k} must be below N/2={n // 2} (the subsamples of the intervals); lower --k."
        )
    texts = caption_sets(base, config.captions)
    views = [ViewDataset(base, v) if v != "identity" else base for v in VIEWS[: config.views]]
    usable = ctx.usable_models()
    vision, language = list(usable["vision"]), list(usable["language"])
    for ds in views:
        vision = ctx.extract(vision, ds)
    for ds in texts:
        language = ctx.extract(language, ds)
    if not vision or not language:
        from prh.errors import ExtractionError

        raise ExtractionError("no vision or no language model could be extracted; see the messages above.")
    perm = shuffled_control(n, ctx.options.seed)["shuffled_captions"]
    points = curve_points(len(views), len(texts))
    rows = []
    bar = ctx.bar(len(vision) * len(language) * len(points), "test-time averaging")
    for vm in vision:
        img_means = cumulative_means([ctx.raw_layers(vm, ds) for ds in views])
        img_prep = [prepare(layers, q=config.q) for layers in img_means]
        for lm in language:
            txt_means = cumulative_means([ctx.raw_layers(lm, ds) for ds in texts])
            txt_prep = [prepare(layers, q=config.q) for layers in txt_means]
            for axis, v, m in points:
                x, y = txt_prep[m - 1], img_prep[v - 1]
                result = sweep(x, y, "mutual_knn", k=config.k)
                ci = bootstrap_ci(x, y, "mutual_knn", B=config.bootstrap, seed=ctx.options.seed, k=config.k)
                row = {
                    "model_x": lm.name,
                    "model_y": vm.name,
                    "axis": axis,
                    "views": v,
                    "captions": m,
                    "count": v if axis == "views" else m,
                    "score": result.best,
                    "best_layer_x": result.best_layers[0],
                    "best_layer_y": result.best_layers[1],
                    "ci_low": ci.ci_low,
                    "ci_high": ci.ci_high,
                    "control": np.nan,
                }
                if axis == "both":
                    row["control"] = sweep([t[perm] for t in x], y, "mutual_knn", k=config.k).best
                rows.append(row)
                bar.update(1)
    bar.close()
    curves = pd.DataFrame(rows)
    fits = []
    for (lm, vm, axis), sub in curves.groupby(["model_x", "model_y", "axis"], sort=False):
        fit = fit_saturating(sub["count"], sub["score"])
        fits.append({"model_x": lm, "model_y": vm, "axis": axis, **fit.to_dict()})
    fits = pd.DataFrame(fits)
    chance = config.k / (n - 1)
    ctx.write_csv("curves.csv", curves)
    ctx.write_csv("fits.csv", fits)

    from prh.experiments import plots

    fig = ctx.figure_path("test_time_averaging.png")
    plots.averaging_curves(curves, fits, chance, fig)

    lines = [
        f"N={n} items of {base.name}; {len(views)} views ({', '.join(VIEWS[: len(views)])}), {len(texts)} captions "
        f"per item; mutual kNN (k={config.k}, chance {chance:.3f}), B={config.bootstrap} subsamples."
    ]
    summary_pairs = []
    curve: list[str] = []  # every point with its interval, after the per-pair findings
    for (lm, vm), sub in curves.groupby(["model_x", "model_y"], sort=False):
        one = sub[(sub["axis"] == "views") & (sub["views"] == 1)].iloc[0]
        pair = {"model_x": lm, "model_y": vm, "score_1": float(one["score"])}
        text = f"{lm} x {vm}: {one['score']:.3f} [{one['ci_low']:.3f}, {one['ci_high']:.3f}] with one view and caption"
        for axis in ("views", "captions", "both"):
            part = sub[sub["axis"] == axis]
            if len(part) < 2:
                continue
            top = part.loc[part["count"].idxmax()]
            fit = fits[(fits["model_x"] == lm) & (fits["model_y"] == vm) & (fits["axis"] == axis)].iloc[0]
            pair[axis] = {
                "count": int(top["count"]),
                "score": float(top["score"]),
                "ci": [float(top["ci_low"]), float(top["ci_high"])],
                "fit": {key: fit[key] for key in ("s_inf", "s_1", "exponent", "r2")},
            }
            text += (
                f"; {int(top['count'])} {axis}: {top['score']:.3f} [{top['ci_low']:.3f}, {top['ci_high']:.3f}] "
                f"(fit s_inf {fit['s_inf']:.3f}, exponent {fit['exponent']:.2f}, R² {fit['r2']:.2f})"
            )
        for axis in ("views", "captions", "both"):
            part = sub[sub["axis"] == axis].sort_values("count")
            if len(part) > 1:
                curve.append(
                    f"{lm} x {vm}, {axis} 1..{int(part['count'].max())}: "
                    + ", ".join(
                        f"{r['score']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
                        for _, r in part.iterrows()
                    )
                )
        both = sub[sub["axis"] == "both"]
        if both["control"].notna().any():
            pair["control_mean"] = float(both["control"].mean())
            text += f"; shuffled pairing {both['control'].mean():.3f} on average"
        lines.append(text + ".")
        summary_pairs.append(pair)
    lines += curve
    summary = {"n": n, "dataset": base.name, "views": len(views), "captions": len(texts), "chance": chance}
    summary["pairs"] = summary_pairs
    ctx.write_json("results.json", {"summary": summary, "provenance": ctx.provenance(config)})
    _section(ctx, fig, lines, fits)
    return ExperimentResult("test-time-averaging", summary, lines, ctx.folder, list(ctx.files))


def _section(ctx: Context, fig: Any, lines: list[str], fits: Any) -> None:
    ctx.write_report_section(
        "Features averaged over more augmented views of each image and more captions of each item; "
        "mutual kNN of the averaged features (best layer pair) with 95% subsampling intervals, a fitted "
        "saturating curve s(n) = s_inf - (s_inf - s_1) n^(-exponent) per curve, and the shuffled pairing "
        "as a control.",
        lines,
        [
            (
                fig,
                "Alignment against the number of views (left), captions (middle) and both (right) averaged; "
                "points with intervals, lines the fitted saturating curves, dotted the shuffled pairing.",
                "Test-time averaging",
            )
        ],
        [("Saturating fits", fits)],
    )


SPEC = ExperimentSpec(
    name="test-time-averaging",
    title="Test-time averaging over views and captions",
    summary="Cross-modal mutual kNN of features averaged over 1..V image views and 1..M captions, with intervals "
    "and fitted saturating curves.",
    config=AveragingConfig,
    run=run,
    models="effnet-lite0,minilm-l6",
    dataset="openmoji",
    n=256,
    dataset_help="Paired dataset: openmoji (offline; caption variants from emoji annotations) or one with several "
    "captions per item.",
    order=40,
)
