"""`prh experiment colors`: kernels over colours from perception, pixels and language agree (the paper's Section 4
colour study, Fig. 8; Appendix D).

Over a vocabulary of named colours (the XKCD colour-survey names or the CSS4 names matplotlib ships, or your own
list), four kinds of kernel:

- **CIELAB** (perceptual): ΔE distances (CIE76, the Euclidean distance in L*a*b*, or CIEDE2000) of the sRGB values
  converted with scikit-image's ``rgb2lab`` (D65);
- **pixels (PMI)**: every pixel of natural images (offline: the photographs scikit-image ships, plus any folder or
  prh dataset) is quantised to the nearest vocabulary colour in L*a*b*; pairs of pixels within ``radius`` of each
  other are counted, and the kernel is their pointwise mutual information, log p(a, b) / (p(a) p(b)) (counts + a
  smoothing constant);
- **language**: every language model's features of a short prompt per colour name (``"the color {name}"``), every
  layer, extracted through prh's adapters into the feature store;
- **vision (swatches)**: every vision model's features of a solid swatch of each colour, every layer.

Each kernel is compared with CIELAB and with each other (mutual kNN and Spearman correlation of the distance
matrices, layer-maximised, with label-permutation p-values and a label-shuffled control: :mod:`.kernels`), and drawn
as a 2-D MDS embedding with every point in its own colour. Colours that the images barely show (fewer than
``min_pixels`` pixels) have no co-occurrence statistics; with the pixel kernel on, every kernel uses the colours
that the images cover.

The parts live in private modules by job: the vocabulary (:mod:`._color_vocabulary`), colour science (sRGB ->
CIELAB, ΔE: :mod:`._color_science`) and the pixel statistics (quantisation, co-occurrence, PMI:
:mod:`._color_pixels`); this module holds the config, the swatch dataset, the run and its report section, and
re-exports the parts' public functions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from prh._validation import ConfigFields, check_bool, check_choice, check_float, check_int, check_str
from prh.data.base import PairedDataset
from prh.errors import InputError
from prh.experiments._color_pixels import (
    IMAGE_SUFFIXES,
    MAX_SIDE,
    SKIMAGE_PHOTOS,
    cooccurrence,
    load_images,
    pmi,
    quantize,
)
from prh.experiments._color_science import DELTA_E, lab_distances, srgb_to_lab
from prh.experiments._color_vocabulary import (
    MIN_COLORS,
    VOCABULARIES,
    Vocabulary,
    load_vocabulary,
    parse_color,
)
from prh.experiments.base import Context, ExperimentResult, ExperimentSpec

__all__ = [
    "DELTA_E",
    "IMAGE_SUFFIXES",
    "MAX_SIDE",
    "MIN_COLORS",
    "SKIMAGE_PHOTOS",
    "SPEC",
    "SWATCH_SIZE",
    "VOCABULARIES",
    "ColorDataset",
    "ColorsConfig",
    "Vocabulary",
    "cooccurrence",
    "lab_distances",
    "load_images",
    "load_vocabulary",
    "parse_color",
    "pmi",
    "quantize",
    "run",
    "srgb_to_lab",
]

#: Side of the solid swatches shown to vision models (each adapter resizes them to its input size).
SWATCH_SIZE = 64


@dataclass(frozen=True)
class ColorsConfig(ConfigFields):
    """Options of the colour experiment (frozen, validated when built)."""

    vocabulary: str = field(
        default="xkcd",
        metadata={
            "help": "Colour names: xkcd (949 colour-survey names, most common first), css4, or a CSV/JSON file "
            "of name + sRGB (hex '#rrggbb' or r,g,b in 0..255)."
        },
    )
    prompt: str = field(
        default="the color {name}",
        metadata={"help": "Text shown to language models; {name} is the colour name."},
    )
    pixels: bool = field(
        default=True, metadata={"help": "Build the pixel co-occurrence (PMI) kernel from natural images."}
    )
    images: str | None = field(
        default=None,
        metadata={"help": "A folder of images to add to --dataset for the co-occurrence counts."},
    )
    max_images: int = field(
        default=256, metadata={"help": "At most this many images of a prh dataset given as --dataset."}
    )
    radius: int = field(
        default=1, metadata={"help": "Pixels within this many rows/columns of each other co-occur (>= 1)."}
    )
    min_pixels: int = field(
        default=100, metadata={"help": "A colour needs this many pixels in the images to enter the kernels."}
    )
    smoothing: float = field(
        default=1.0, metadata={"help": "Added to every co-occurrence count before the PMI (> 0)."}
    )
    delta_e: str = field(
        default="cie76", metadata={"help": "Perceptual distance: cie76 (Euclidean in CIELAB) or ciede2000."}
    )
    k: int = field(default=10, metadata={"help": "Neighbours of the mutual kNN score."})
    permutations: int = field(
        default=1000, metadata={"help": "Label permutations of the null of each kernel vs CIELAB (p-values)."}
    )
    pair_permutations: int = field(
        default=200, metadata={"help": "Label permutations of the comparisons between the other kernels."}
    )
    alpha: float = field(default=0.05, metadata={"help": "Level of the null threshold (calibrated score)."})
    q: float = field(
        default=0.95, metadata={"help": "Outlier clamp quantile of prh.prepare for model features."}
    )

    def __post_init__(self) -> None:
        from prh._validation import check_quantile

        if not isinstance(self.prompt, str) or "{name}" not in self.prompt:
            raise InputError(f"prompt={self.prompt!r} must contain '{{name}}', e.g. 'the color {{name}}'.")
        try:
            self.prompt.format(name="red")
        except (KeyError, IndexError, ValueError) as err:
            raise InputError(
                f"prompt={self.prompt!r} may only use the field {{name}} (write other braces as {{{{ }}}})."
            ) from err
        clean: dict[str, Any] = {
            "vocabulary": check_str(self.vocabulary, "vocabulary", allow_empty=False),
            "pixels": check_bool(self.pixels, "pixels"),
            "images": None
            if self.images is None
            else check_str(str(self.images), "images", allow_empty=False),
            "max_images": check_int(self.max_images, "max_images", minimum=1),
            "radius": check_int(
                self.radius, "radius", minimum=1, maximum=16, hint="a neighbourhood in pixels"
            ),
            "min_pixels": check_int(self.min_pixels, "min_pixels", minimum=1),
            "smoothing": check_float(self.smoothing, "smoothing", 0.0, None, inclusive=(False, True)),
            "delta_e": check_choice(self.delta_e, "delta_e", DELTA_E),
            "k": check_int(self.k, "k", minimum=1, hint="neighbours of mutual kNN"),
            "permutations": check_int(self.permutations, "permutations", minimum=1, hint="e.g. 1000"),
            "pair_permutations": check_int(
                self.pair_permutations, "pair_permutations", minimum=1, hint="e.g. 200"
            ),
            "alpha": check_float(self.alpha, "alpha", 0.0, 1.0, inclusive=(False, False)),
            "q": check_quantile(self.q, "q"),
        }
        for name, value in clean.items():
            object.__setattr__(self, name, value)


# -- the dataset of prompts and swatches ----------------------------------------------------------------------
class ColorDataset(PairedDataset):
    """One item per colour: the caption is the prompt with the colour's name, the image a solid swatch of it."""

    def __init__(self, names: list[str], rgb: np.ndarray, prompt: str, source: str) -> None:
        self.rgb = np.asarray(rgb, dtype=np.uint8)
        captions = [[prompt.format(name=name)] for name in names]
        digest = hashlib.sha256(
            json.dumps([list(names), self.rgb.tolist(), prompt]).encode("utf-8")
        ).hexdigest()[:10]
        super().__init__(f"colors-{source}-{digest}", list(names), captions)

    def _load_image(self, i: int):
        from PIL import Image

        return Image.new("RGB", (SWATCH_SIZE, SWATCH_SIZE), tuple(int(c) for c in self.rgb[i]))

    def _image_bytes(self, i: int) -> bytes:
        return f"swatch|{SWATCH_SIZE}|".encode() + bytes(int(c) for c in self.rgb[i])


# -- the experiment -------------------------------------------------------------------------------------------
def _coverage(vocab: Vocabulary, lab: np.ndarray, config: ColorsConfig, ctx: Context) -> dict:
    """Quantise the images, count co-occurrences; which colours have statistics."""
    images = load_images(ctx.dataset, config.images, config.max_images)
    if not images:
        raise InputError(
            "no images for the pixel co-occurrence kernel: give --dataset skimage (the photographs scikit-image "
            "ships), a prh dataset, or --images DIR; or turn the kernel off with --no-pixels."
        )
    bar = ctx.bar(len(images), "colours: quantising images")
    maps = []
    for _, img in images:
        maps.append(quantize(img, lab))
        bar.update(1)
    bar.close()
    pixels, counts = cooccurrence(maps, len(vocab), config.radius)
    covered = np.nonzero(pixels >= config.min_pixels)[0]
    if len(covered) < max(MIN_COLORS, config.k + 2):
        raise InputError(
            f"the {len(images)} image(s) ({int(pixels.sum()):,} pixels) give co-occurrence statistics for only "
            f"{len(covered)} of the {len(vocab)} colours (>= {config.min_pixels} pixels each); the kernels need at "
            f"least {max(MIN_COLORS, config.k + 2)}. Add images (--images DIR, or a larger --dataset) or lower "
            f"--min-pixels."
        )
    return {"images": [name for name, _ in images], "pixels": pixels, "counts": counts, "covered": covered}


def _select(vocab: Vocabulary, coverage: dict | None, n: int | None) -> np.ndarray:
    order = coverage["covered"] if coverage is not None else np.arange(len(vocab))
    if n is not None:
        if n > len(order):
            what = "covered by the images" if coverage is not None else f"in vocabulary {vocab.source!r}"
            raise InputError(f"--n {n}: only {len(order)} colours are {what}; use --n {len(order)} or less.")
        if n < MIN_COLORS:
            raise InputError(f"--n {n} is too few colours; use --n {MIN_COLORS} or more.")
        order = order[:n]
    return np.asarray(order)


def _model_kernels(ctx: Context, config: ColorsConfig, dataset: ColorDataset) -> list:
    from prh.experiments.kernels import feature_kernel

    usable = ctx.usable_models()
    kernels = []
    for modality in ("language", "vision"):
        specs = ctx.extract(usable[modality], dataset)
        for feats in ctx.features(specs, dataset, q=config.q):
            kernels.append(feature_kernel(feats.name, modality, feats.layers))
    return kernels


def run(ctx: Context, config: ColorsConfig) -> ExperimentResult:
    """Build every kernel, compare them, draw the embeddings; write results, figures and the section."""
    import pandas as pd

    from prh.experiments.kernels import Kernel, compare, embed_2d

    vocab = load_vocabulary(config.vocabulary)
    lab_all = srgb_to_lab(vocab.rgb)
    coverage = _coverage(vocab, lab_all, config, ctx) if config.pixels else None
    chosen = _select(vocab, coverage, ctx.n)
    if config.k >= len(chosen) - 1:
        raise InputError(f"k={config.k} must be below N-1={len(chosen) - 1} colours; lower --k or raise --n.")
    names = [vocab.names[i] for i in chosen]
    rgb = vocab.rgb[chosen]
    lab = lab_all[chosen]
    n = len(chosen)
    ctx.log(f"colours: {n} of the {len(vocab)} in {vocab.source!r}")

    dist = torch.from_numpy(lab_distances(lab, config.delta_e))
    cielab = Kernel("CIELAB", "perceptual", [-dist], [dist])
    kernels: list[Kernel] = []
    if coverage is not None:
        sub = coverage["counts"][np.ix_(chosen, chosen)]
        table = torch.from_numpy(pmi(sub, config.smoothing))
        off = table.clone()
        off.fill_diagonal_(float("-inf"))
        d = (off.max() - table).clamp_min(0.0)
        d.fill_diagonal_(0.0)
        kernels.append(Kernel("pixels (PMI)", "pixels", [table], [d]))
    dataset = ColorDataset(names, rgb, config.prompt, vocab.source)
    kernels += _model_kernels(ctx, config, dataset)

    everything = [cielab] + kernels
    pairs = [(kern, cielab) for kern in kernels]
    pairs += [(a, b) for i, a in enumerate(kernels) for b in kernels[i + 1 :]]
    bar = ctx.bar(len(pairs), "colours: comparing kernels")
    comparisons = []
    for a, b in pairs:
        perms = config.permutations if b is cielab else config.pair_permutations
        comparisons.append(
            compare(a, b, k=config.k, permutations=perms, alpha=config.alpha, seed=ctx.options.seed)
        )
        bar.update(1)
    bar.close()
    vs_lab = {c.a: c for c in comparisons if c.b == "CIELAB"}

    # 2-D embeddings: CIELAB first, every other kernel at its layer that agrees best with CIELAB, rotated onto it
    ref = embed_2d(cielab.distances[0], seed=ctx.options.seed)
    embeddings = {"CIELAB": (ref, None)}
    for kern in kernels:
        layer = vs_lab[kern.name].layers_knn[0]
        xy = embed_2d(kern.distances[layer], seed=ctx.options.seed, reference=ref)
        embeddings[kern.name] = (xy, layer if len(kern.layers) > 1 else None)

    table = pd.DataFrame([c.row() for c in comparisons])
    ctx.write_csv("comparisons.csv", table)
    colors = pd.DataFrame(
        {
            "name": names,
            "hex": [vocab.hex(int(i)) for i in chosen],
            "L": lab[:, 0],
            "a": lab[:, 1],
            "b": lab[:, 2],
            "pixels": coverage["pixels"][chosen] if coverage is not None else np.nan,
        }
    )
    ctx.write_csv("colors.csv", colors)
    emb_rows = []
    for kname, (xy, layer) in embeddings.items():
        for i, name in enumerate(names):
            emb_rows.append({"kernel": kname, "layer": layer, "name": name, "x": xy[i, 0], "y": xy[i, 1]})
    ctx.write_csv("embeddings.csv", pd.DataFrame(emb_rows))

    from prh.experiments import plots

    hexes = list(colors["hex"])
    fig_mds = ctx.figure_path("colors_mds.png")
    plots.color_embeddings(embeddings, hexes, vs_lab, fig_mds)
    fig_bars = ctx.figure_path("colors_vs_cielab.png")
    plots.agreement_bars(list(vs_lab.values()), fig_bars)
    fig_matrix = ctx.figure_path("colors_kernel_matrix.png")
    plots.kernel_matrix([k.name for k in everything], comparisons, fig_matrix)

    lines = [
        f"{n} colours ({vocab.source}), k={config.k}, K={config.permutations} label permutations; "
        f"chance k/(N-1) = {config.k / (n - 1):.3f}."
    ]
    for c in vs_lab.values():
        lines.append(
            f"{c.a} ({c.kind_a}) vs CIELAB: mutual kNN {c.mutual_knn:.3f} ("
            + (f"layer {c.layers_knn[0]}; " if c.kind_a in ("language", "vision") else "")
            + f"null mean "
            f"{c.null_mean_knn:.3f}, p = {c.p_knn:.3g}), Spearman {c.spearman:.3f} (p = {c.p_spearman:.3g}); "
            f"shuffled labels {c.control_knn:.3f} / {c.control_spearman:.3f} (p = {c.control_p_knn:.2g})."
        )
    summary = {
        "n_colors": n,
        "vocabulary": vocab.source,
        "k": config.k,
        "permutations": config.permutations,
        "chance_knn": config.k / (n - 1),
        "vs_cielab": {
            c.a: {
                "kind": c.kind_a,
                "mutual_knn": c.mutual_knn,
                "layer": c.layers_knn[0],
                "p_knn": c.p_knn,
                "spearman": c.spearman,
                "p_spearman": c.p_spearman,
                "null_mean_knn": c.null_mean_knn,
                "calibrated_knn": c.calibrated_knn,
                "control_knn": c.control_knn,
                "control_spearman": c.control_spearman,
                "control_p_knn": c.control_p_knn,
            }
            for c in vs_lab.values()
        },
    }
    ctx.write_json(
        "results.json",
        {
            "summary": summary,
            "comparisons": [c.row() for c in comparisons],
            "colors": colors.to_dict(orient="records"),
            "images": coverage["images"] if coverage is not None else [],
            "dropped_duplicates": list(vocab.dropped),
            "provenance": ctx.provenance(config),
        },
    )
    _section(ctx, config, table, lines, (fig_mds, fig_bars, fig_matrix))
    return ExperimentResult("colors", summary, lines, ctx.folder, list(ctx.files))


def _section(ctx: Context, config: ColorsConfig, table: Any, lines: list[str], figs: tuple) -> None:
    cols = ["a", "b", "mutual_knn", "layers_knn", "p_knn", "spearman", "p_spearman", "control_knn"]
    ctx.write_report_section(
        "Kernels over named colours from perception (CIELAB ΔE), from pixel co-occurrence in natural images "
        "(PMI), from language models (a prompt per colour name) and from vision models (solid swatches), "
        "compared by mutual kNN and by the Spearman correlation of their distance matrices; p-values from "
        f"{config.permutations} label permutations with the maximum over layers taken each time.",
        lines,
        [
            (
                figs[0],
                "2-D MDS embedding of each kernel, every colour drawn in its own colour; models at the layer "
                "that agrees best with CIELAB, each panel rotated onto the CIELAB panel.",
                "Colour embeddings",
            ),
            (
                figs[1],
                "Agreement of each kernel with CIELAB (best layer), the permutation null's mean of the "
                "layer-maximised score, and the label-shuffled control.",
                "Agreement with perception",
            ),
            (figs[2], "Mutual kNN between every pair of kernels.", "All kernels"),
        ],
        [("Every comparison", table[cols])],
    )


SPEC = ExperimentSpec(
    name="colors",
    title="Colours: perception, pixels and language",
    summary="Kernels over named colours from CIELAB, pixel co-occurrence (PMI), language and vision models: "
    "agreement with p-values, and MDS embeddings drawn in colour.",
    config=ColorsConfig,
    run=run,
    models="offline",
    dataset="skimage",
    n=None,
    dataset_help="Images for the pixel co-occurrence kernel: skimage (the photographs scikit-image ships), any "
    "prh dataset (its first --max-images images), or none (only --images).",
    order=20,
)
