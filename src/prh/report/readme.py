"""The README's "What `make demo` shows" section, generated from a saved demo run instead of pasted by hand.

:func:`demo_numbers` reads every figure the section quotes from the demo's :class:`~prh.align.Results` (the table
with its calibration and interval columns, the shuffled-caption control rows and the provenance);
:func:`render_demo_block` turns them into the markdown section; :func:`replace_block` / :func:`write_readme_block`
put it between the ``<!-- DEMO-RESULTS -->`` and ``<!-- /DEMO-RESULTS -->`` markers of a README, atomically.
`prh demo --write-readme README.md` does all three after the run.

Only what the results (or the run itself) measured is written. Wall times come from arguments: the demo passes its
own elapsed time per stage; the time of a whole fresh clone (installs included) cannot be known by the demo and is
written only when given (``fresh_clone_seconds``).
"""

from __future__ import annotations

import math
import os
import platform
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd

from prh.align.engine import Results
from prh.atomic import atomic_write
from prh.errors import InputError
from prh.report.figures import mean_cross_modal, models_by_modality

START_MARKER = "<!-- DEMO-RESULTS -->"
END_MARKER = "<!-- /DEMO-RESULTS -->"

#: How the section names the metrics (others are written as their registry name in backticks).
METRIC_NAMES = {
    "mutual_knn": "mutual kNN",
    "cknna": "CKNNA",
    "unbiased_cka": "unbiased CKA",
    "cka": "CKA",
    "svcca": "SVCCA",
    "cycle_knn": "cycle kNN",
    "lcs_knn": "LCS kNN",
    "edit_distance_knn": "edit-distance kNN",
}

#: Language-model groups compared in the section, by adapter.
LANGUAGE_GROUPS = {"hf-text-encoder": "sentence encoders", "hf-causal-lm": "causal LMs"}

#: Line width of the generated markdown (the README's own wrapping).
WIDTH = 116

#: Confidence level of the intervals when the provenance does not record one (the engine's bootstrap default).
DEFAULT_CI_LEVEL = 0.95


@dataclass(frozen=True)
class BestPair:
    """The best-scoring real cross-modal pair of one metric."""

    model_x: str
    model_y: str
    score: float
    layer_x: int
    layer_y: int
    ci_low: float
    ci_high: float
    times_chance: float


@dataclass(frozen=True)
class GroupRange:
    """The real cross-modal scores of one group of language models (e.g. the sentence encoders)."""

    label: str
    models: tuple[str, ...]
    low: float
    high: float


@dataclass(frozen=True)
class DemoNumbers:
    """Every number the README section quotes, read from one demo run's results.

    Attributes
    ----------
    dataset, n : dataset name and number of pairs N.
    metric : the metric the section is about (``"mutual_knn"``); ``metrics`` all metrics of the run.
    k : neighbours (None for metrics without k); ``chance`` = k/(N-1) for mutual kNN, else None.
    vision, language : model names by modality, smallest first.
    K, B, alpha, ci_level : permutations, subsamples, significance level, interval level (None when off).
    n_cross, n_significant : real cross-modal pairs of ``metric`` and how many have p <= alpha (None: uncalibrated).
    p_min, p_max, p_floor : smallest and largest p of those pairs; 1/(K+1), the smallest a K-permutation test gives.
    calibrated_low, calibrated_high : range of their calibrated scores.
    best : the best real cross-modal pair.
    groups : score ranges of the language-model groups of :data:`LANGUAGE_GROUPS` that the run has.
    control_* : the shuffled-caption control of the cross-modal pairs (None without one): best, mean, number of
        pairs, number significant; ``real_mean`` the mean real score; ``best_over_control`` best real / best control.
    competence_counts : models per alignment-vs-competence panel of the report (panel -> count).
    vision_trend : Spearman rank correlation of the vision models' mean cross-modal score with ImageNet top-1
        (None with fewer than 3 such models).
    created : when the results were computed (provenance).
    """

    dataset: str
    n: int
    metric: str
    metrics: tuple[str, ...]
    k: int | None
    chance: float | None
    vision: tuple[str, ...]
    language: tuple[str, ...]
    K: int | None
    B: int | None
    alpha: float
    ci_level: float
    n_cross: int
    n_significant: int | None
    p_min: float | None
    p_max: float | None
    p_floor: float | None
    calibrated_low: float | None
    calibrated_high: float | None
    best: BestPair
    groups: tuple[GroupRange, ...] = ()
    control_best: float | None = None
    control_mean: float | None = None
    control_pairs: int = 0
    control_significant: int | None = None
    real_mean: float | None = None
    real_low: float | None = None
    best_over_control: float | None = None
    competence_counts: dict = field(default_factory=dict)
    vision_trend: float | None = None
    created: str = ""


def _num(value: object) -> float | None:
    """``value`` as a float, None for missing/NaN."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def demo_numbers(results: Results, metric: str = "mutual_knn") -> DemoNumbers:
    """Read the numbers of the README section from a demo run's results.

    Parameters
    ----------
    results : :class:`~prh.align.Results` of `prh demo` (or ``Results.load(out_dir)``).
    metric : the metric the section reports (default mutual kNN, the paper's main metric).

    Raises
    ------
    InputError
        When the results hold no real cross-modal pair of ``metric``.
    """
    t = results.table
    prov = results.provenance or {}
    if metric not in set(t["metric"]):
        raise InputError(
            f"metric {metric!r} is not in these results (they hold {sorted(set(t['metric']))}); "
            "pass one of those, or rerun `prh demo`."
        )
    rows = t[t["metric"] == metric]
    crossing = rows["modality_x"] != rows["modality_y"]
    cross = rows[crossing & (rows["control"] == "none")]
    control = rows[crossing & (rows["control"] != "none")]
    if cross.empty:
        raise InputError(
            f"these results have no cross-modal {metric} pair (language x vision); the README section needs one. "
            "Run `prh demo` (or `prh align` with models of both modalities)."
        )
    n = int(cross["N"].iloc[0])
    k = _num(cross["k"].iloc[0])
    k = int(k) if k is not None else None
    chance = k / (n - 1) if (metric == "mutual_knn" and k is not None) else None
    alpha = float(prov.get("alpha", 0.05))
    K = int(prov["calibrate_K"]) if prov.get("calibrate_K") else None
    B = int(prov["bootstrap_B"]) if prov.get("bootstrap_B") else None

    top = cross.loc[cross["score"].idxmax()]
    best = BestPair(
        model_x=str(top["model_x"]),
        model_y=str(top["model_y"]),
        score=float(top["score"]),
        layer_x=int(top["best_layer_x"]),
        layer_y=int(top["best_layer_y"]),
        ci_low=_num(top.get("ci_low")),
        ci_high=_num(top.get("ci_high")),
        times_chance=float(top["score"]) / chance if chance else float("nan"),
    )

    p = cross["p_value"].dropna() if "p_value" in cross.columns else pd.Series(dtype=float)
    calibrated = (
        cross["calibrated_score"].dropna() if "calibrated_score" in cross.columns else pd.Series(dtype=float)
    )
    n_significant = int((p <= alpha).sum()) if len(p) else None

    by_modality = models_by_modality(t)
    models_info = prov.get("models") or {}
    groups = []
    for adapter, label in LANGUAGE_GROUPS.items():
        names = [
            m for m in by_modality.get("language", []) if (models_info.get(m) or {}).get("adapter") == adapter
        ]
        scores = cross[cross["model_x"].isin(names) | cross["model_y"].isin(names)]["score"]
        if names and len(scores):
            groups.append(GroupRange(label, tuple(names), float(scores.min()), float(scores.max())))

    control_p = control["p_value"].dropna() if "p_value" in control.columns else pd.Series(dtype=float)
    control_best = float(control["score"].max()) if len(control) else None

    counts = {}
    lang = mean_cross_modal(t, metric, "language")
    vis = mean_cross_modal(t, metric, "vision")
    for panel, df, col in (
        ("language bits-per-byte", lang, "bpb"),
        ("vision ImageNet top-1", vis, "imagenet_top1"),
        ("language parameters", lang, "params"),
        ("vision parameters", vis, "params"),
    ):
        count = int(df[col].notna().sum())
        if count >= 2:  # the report draws a panel from two models on (see figures.competence_plot)
            counts[panel] = count
    rated = vis.dropna(subset=["imagenet_top1"])
    trend = None
    if len(rated) >= 3:
        trend = float(rated["score"].rank().corr(rated["imagenet_top1"].rank()))
        trend = None if math.isnan(trend) else trend

    return DemoNumbers(
        dataset=str((prov.get("dataset") or {}).get("name") or ""),
        n=n,
        metric=metric,
        metrics=tuple(dict.fromkeys(t["metric"])),
        k=k,
        chance=chance,
        vision=tuple(by_modality.get("vision", [])),
        language=tuple(by_modality.get("language", [])),
        K=K,
        B=B,
        alpha=alpha,
        ci_level=float(prov.get("ci_level", DEFAULT_CI_LEVEL)),
        n_cross=len(cross),
        n_significant=n_significant,
        p_min=float(p.min()) if len(p) else None,
        p_max=float(p.max()) if len(p) else None,
        p_floor=1.0 / (K + 1) if K else None,
        calibrated_low=float(calibrated.min()) if len(calibrated) else None,
        calibrated_high=float(calibrated.max()) if len(calibrated) else None,
        best=best,
        groups=tuple(groups),
        control_best=control_best,
        control_mean=float(control["score"].mean()) if len(control) else None,
        control_pairs=len(control),
        control_significant=int((control_p <= alpha).sum()) if len(control_p) else None,
        real_mean=float(cross["score"].mean()),
        real_low=float(cross["score"].min()),
        best_over_control=best.score / control_best if control_best else None,
        competence_counts=counts,
        vision_trend=trend,
        created=str(prov.get("created") or ""),
    )


# ------------------------------------------------------------------------------------------------- rendering


def format_duration(seconds: float) -> str:
    """``694.2`` -> ``"11 min 34 s"``; under a minute ``"8 s"`` (whole seconds, rounded)."""
    total = int(round(float(seconds)))
    minutes, secs = divmod(total, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def describe_machine() -> str:
    """This machine in words, e.g. ``"2-core AMD EPYC 7B13 machine"`` (where the demo ran)."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        cpu = platform.processor()
    return " ".join(filter(None, [f"{os.cpu_count() or '?'}-core", cpu or platform.machine(), "machine"]))


def _names(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _count(count: int, noun: str) -> str:
    """``"16 pairs"``, ``"1 pair"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _span(low: float, high: float) -> str:
    """``"0.082–0.151"``, or one number when both ends agree to 3 decimals."""
    return f"{low:.3f}" if f"{low:.3f}" == f"{high:.3f}" else f"{low:.3f}–{high:.3f}"


def _p_text(p: float, K: int | None) -> str:
    """A p-value as the fraction it is when it is the smallest possible one (1/(K+1)), else 3 significant digits."""
    if K and abs(p - 1.0 / (K + 1)) < 1e-12:
        return f"1/{K + 1}"
    return f"{p:.3g}"


def _intro(num: DemoNumbers, results: Results, source: str) -> str:
    prov = results.provenance or {}
    if "openmoji" in num.dataset:
        data = f"The demo pairs {num.n:,} OpenMoji images with their Unicode names as captions"
    else:
        data = f"The demo pairs {num.n:,} images with captions from `{num.dataset or 'the dataset'}`"
    metric_names = []
    for m in num.metrics:
        name = METRIC_NAMES.get(m, f"`{m}`")
        kw = (prov.get("metrics") or {}).get(m) or {}
        metric_names.append(f"{name} (k = {kw['k']})" if m == num.metric and "k" in kw else name)
    if len(metric_names) > 1:
        metric_text = ", ".join(metric_names[:-1]) + " and " + metric_names[-1]
    else:
        metric_text = metric_names[0]
    parts = [
        f"{data}, extracts every layer of {len(num.vision) + len(num.language)} models (vision: {_names(num.vision)};"
        f" language: {_names(num.language)}), scores all model pairs over all layer pairs with {metric_text}"
    ]
    if num.K:
        parts.append(
            f"calibrates every cross-modal {METRIC_NAMES.get(num.metric, num.metric)} pair with a K = {num.K} "
            "permutation null (maximum over the layer grid, so the layer search is paid for)"
        )
    if num.B:
        parts.append(
            f"gives each a {num.ci_level:.0%} interval from {num.B} half-size subsamples of its best layer pair"
        )
    if num.control_pairs:
        parts.append("repeats the cross-modal pairs with the captions shuffled")
    return ", ".join(parts) + f", and writes `{source}/report.html`."


def _findings(num: DemoNumbers) -> list[str]:
    b = num.best
    name = METRIC_NAMES.get(num.metric, num.metric)
    interval = ""
    if b.ci_low is not None and b.ci_high is not None:
        interval = f"; {num.ci_level:.0%} subsampling interval {b.ci_low:.3f}–{b.ci_high:.3f} at those layers"
    chance = f", {b.times_chance:.1f}× chance" if num.chance else ""
    lines = [
        f"best cross-modal pair: `{b.model_x}` × `{b.model_y}`, {b.score:.3f} (layers {b.layer_x} and "
        f"{b.layer_y}{interval}){chance};"
    ]
    if num.n_significant is not None:
        if num.n_cross == 1:
            verdict = "is" if num.n_significant else "is not"
            head = f"the one vision–language pair {verdict} significant at α = {num.alpha:g}"
        elif num.n_significant == num.n_cross:
            head = f"all {num.n_cross} vision–language pairs are significant at α = {num.alpha:g}"
        else:
            verb = "is" if num.n_significant == 1 else "are"
            head = (
                f"{num.n_significant} of the {num.n_cross} vision–language pairs {verb} significant at "
                f"α = {num.alpha:g}"
            )
        if num.p_floor is not None and num.p_max is not None and abs(num.p_max - num.p_floor) < 1e-12:
            ptext = (
                f"p = {_p_text(num.p_floor, num.K)}{' for every one' if num.n_cross > 1 else ''}, the smallest a "
                f"K = {num.K} test can give"
            )
        else:
            ptext = (
                f"p = {_p_text(num.p_min, num.K)}"
                if num.p_min == num.p_max
                else f"p from {_p_text(num.p_min, num.K)} to {_p_text(num.p_max, num.K)}"
            )
            if num.p_floor is not None:
                ptext += f"; the smallest a K = {num.K} test can give is {_p_text(num.p_floor, num.K)}"
        lines.append(
            f"{head} ({ptext}); calibrated {'scores' if num.n_cross > 1 else 'score'} "
            f"{_span(num.calibrated_low, num.calibrated_high)};"
        )
    if len(num.groups) == 2:
        a, c = num.groups
        if a.low > c.high:
            verb = "better than"
        elif a.high < c.low:
            verb = "worse than"
        else:
            verb = "about as well as (the ranges overlap)"
        lines.append(
            f"the {a.label} ({_names(a.models)}) align with the vision models {verb} the {c.label} "
            f"({_names(c.models)}) do ({_span(a.low, a.high)} vs {_span(c.low, c.high)}, {name} of each pair)."
        )
    if lines[-1].endswith(";"):
        lines[-1] = lines[-1][:-1] + "."
    return lines


def _control(num: DemoNumbers) -> str:
    chance = f" (chance k/(N−1) = {num.chance:.4f})" if num.chance else ""
    text = (
        "The control: the same models with the captions shuffled (row i of the text features no longer describes "
        f"image i). Over {_count(num.control_pairs, 'pair')}{chance} the control gives best {num.control_best:.3f}, "
        f"mean {num.control_mean:.3f}, while the real pairing gives mean {num.real_mean:.3f}: the best real pair is "
        f"{num.best_over_control:.1f}× the best shuffled one."
    )
    if num.control_significant is not None:
        expected = num.alpha * num.control_pairs
        text += (
            f" {num.control_significant} of {_count(num.control_pairs, 'shuffled pair')} "
            f"{'is' if 1 in (num.control_significant, num.control_pairs) else 'are'} significant under the same "
            "permutation test (a "
            f"level-{num.alpha:g} test rejects about {expected:.1f} of {_count(num.control_pairs, 'unrelated pair')} "
            "by chance)."
        )
    if num.control_best < num.real_low:  # every real pair beats every shuffled one
        text += (
            f" Every real pair (lowest {num.real_low:.3f}) scores above every shuffled one: the alignment comes from "
            "the pairing, not from the models or the metric."
        )
    return text


def _timing(
    seconds: Mapping[str, float] | None,
    extraction: Mapping[str, float] | None,
    fresh_clone_seconds: float | None,
    machine: str,
) -> str:
    parts = []
    if fresh_clone_seconds is not None:
        parts.append(
            f"On a fresh clone with nothing but Python, `make demo` took {format_duration(fresh_clone_seconds)} "
            f"on a {machine} (installs included)."
        )
    if seconds and seconds.get("total") is not None:
        stages = [
            f"{key} {format_duration(seconds[key])}"
            for key in ("features", "alignment", "competence", "report")
            if seconds.get(key) is not None
        ]
        detail = f" ({', '.join(stages)})" if stages else ""
        parts.append(
            f"The `prh demo` run behind these numbers took {format_duration(seconds['total'])} on a {machine}"
            f"{detail}; features and alignment results are cached, so a rerun reuses them."
        )
    if extraction:
        slowest = max(extraction, key=extraction.get)
        parts.append(
            f"Extracting the features of the {len(extraction)} models took {format_duration(sum(extraction.values()))}"
            f" in all when they were computed (the feature store's record; slowest `{slowest}`, "
            f"{format_duration(extraction[slowest])})."
        )
    return " ".join(parts)


def stored_extraction_seconds(store, dataset, specs, pool: str | None = None) -> dict[str, float]:
    """Each model's recorded load-and-extract time (seconds) from the feature store's sidecars, by model name.

    Models whose sidecar has no such record are left out. ``pool`` overrides each spec's default pooling.
    """
    metas = store.find_many([s.name for s in specs], {s.name: pool or s.pool for s in specs}, dataset=dataset)
    out = {}
    for name, meta in metas.items():
        value = _num(meta.get("load_and_extract_s"))
        if value is not None:
            out[name] = value
    return out


def _competence(num: DemoNumbers) -> str:
    if not num.competence_counts:
        return ""
    counts = sorted(set(num.competence_counts.values()))
    size = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    text = f"The alignment-vs-competence panels of the report have {size} models each here, too few to read more than a sign"
    if num.vision_trend is not None:
        direction = "rises" if num.vision_trend > 0 else "does *not* rise"
        text += (
            f"; on these pairs the vision models' alignment {direction} with ImageNet accuracy "
            f"(Spearman ρ = {num.vision_trend:.2f})"
        )
    return (
        text + " — the paper's trend needs its larger model families and the WIT pairs (`prh extract`, then "
        "`prh align`, with `--models paper-val --dataset wit_1024`; that needs internet and, in practice, a GPU)."
    )


def render_demo_block(
    results: Results,
    *,
    metric: str = "mutual_knn",
    seconds: Mapping[str, float] | None = None,
    extraction: Mapping[str, float] | None = None,
    fresh_clone_seconds: float | None = None,
    machine: str | None = None,
    figures: str | None = "docs/img",
    source: str = "prh-results",
) -> str:
    """The markdown of the README's demo section (without the markers).

    Parameters
    ----------
    results : the demo run's :class:`~prh.align.Results`.
    metric : the metric the findings are about.
    seconds : wall times of the run that produced ``results``: ``total`` and optionally ``features``,
        ``alignment``, ``competence``, ``report`` (what `prh demo` measured); None leaves the run's time out.
    extraction : each model's extraction time in seconds as recorded when its features were computed
        (:func:`stored_extraction_seconds`); None leaves it out.
    fresh_clone_seconds : time of `make demo` on a fresh clone, installs included (measured outside prh); its
        sentence is written only when given.
    machine : the machine in words (default: :func:`describe_machine` of this machine).
    figures : folder of the figures, relative to the README (None: no figure links).
    source : the results folder named in the generated-by note.

    Returns
    -------
    str : the section, ending with a newline.
    """
    num = demo_numbers(results, metric)
    machine = machine or describe_machine()
    name = METRIC_NAMES.get(num.metric, num.metric)
    wrap = partial(textwrap.fill, width=WIDTH, break_long_words=False, break_on_hyphens=False)
    out = [
        f"<!-- generated from {source} ({num.created or 'unknown date'}) by prh.report.readme, as "
        "`prh demo --write-readme README.md` does; edit that module, not this block -->",
        "### What `make demo` shows",
        "",
        wrap(_intro(num, results, source)),
        "",
    ]
    if figures is not None:
        out += [f"![cross-modal {name}]({figures}/cross_modal_{num.metric}.png)", ""]
    read = (
        "How to read it: each cell is the best score over all layer pairs of a language model (row) and a vision "
        "model (column)"
    )
    if num.chance is not None:
        read += f"; chance is k/(N−1) = {num.chance:.4f}"
    out += [wrap(read + ". Measured in the run that made this figure:"), ""]
    out += [wrap(f"- {line}", subsequent_indent="  ") for line in _findings(num)]
    out.append("")
    if num.control_pairs:
        if figures is not None:
            out += [f"![real vs shuffled captions]({figures}/control_{num.metric}.png)", ""]
        out += [wrap(_control(num)), ""]
    tail = " ".join(
        filter(None, [_timing(seconds, extraction, fresh_clone_seconds, machine), _competence(num)])
    )
    if tail:
        out += [wrap(tail), ""]
    return "\n".join(out).rstrip("\n") + "\n"


# --------------------------------------------------------------------------------------------------- writing


def replace_block(text: str, block: str, where: str = "README") -> str:
    """``text`` with everything between :data:`START_MARKER` and :data:`END_MARKER` replaced by ``block``.

    The marker lines themselves and everything outside them stay byte for byte.

    Raises
    ------
    InputError
        When a marker is missing, repeated, or the end marker comes before the start marker.
    """
    fix = (
        f"put a line `{START_MARKER}` before the demo section of {where} and a line `{END_MARKER}` after it, "
        "then run again"
    )
    for marker in (START_MARKER, END_MARKER):
        count = text.count(marker)
        if count != 1:
            what = "has no" if count == 0 else f"has {count} copies of the"
            raise InputError(f"{where} {what} marker {marker!r}; {fix}.")
    start = text.index(START_MARKER) + len(START_MARKER)
    end = text.index(END_MARKER)
    if end < start:
        raise InputError(f"{where}: {END_MARKER!r} comes before {START_MARKER!r}; {fix}.")
    newline = "\r\n" if "\r\n" in text else "\n"
    body = block.replace("\r\n", "\n").strip("\n").replace("\n", newline)
    return text[:start] + newline + body + newline + text[end:]


def check_readme(readme: str | os.PathLike) -> Path:
    """Raise now, before a long run, unless ``readme`` is a file with one demo block between the two markers.

    Raises
    ------
    InputError
        The file is missing, or a marker is missing, repeated or out of order.
    """
    path = Path(readme)
    if not path.is_file():
        raise InputError(
            f"--write-readme {path}: no such file; give the README that holds the {START_MARKER} block."
        )
    replace_block(path.read_text(encoding="utf-8"), "", where=str(path))
    return path


def write_readme_block(readme: str | os.PathLike, block: str) -> Path:
    """Replace the demo block of the file ``readme`` with ``block``, atomically (see :func:`replace_block`).

    Raises
    ------
    InputError
        When ``readme`` does not exist or lacks the markers (the file is left untouched).
    """
    path = check_readme(readme)
    with open(path, encoding="utf-8", newline="") as fh:
        text = fh.read()
    new = replace_block(text, block, where=str(path))
    if new != text:

        def write(tmp: str) -> None:  # no newline translation: the README keeps its own line endings
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.write(new)

        atomic_write(path, write)
    return path


def write_readme(
    readme: str | os.PathLike,
    results: Results | str | os.PathLike,
    **render_kw,
) -> Path:
    """Render the demo section from ``results`` (a :class:`Results` or a results folder) into ``readme``.

    ``render_kw`` go to :func:`render_demo_block`. Returns the README's path.
    """
    if not isinstance(results, Results):
        render_kw.setdefault("source", str(results))
        results = Results.load(results)
    return write_readme_block(readme, render_demo_block(results, **render_kw))


__all__ = [
    "END_MARKER",
    "START_MARKER",
    "DemoNumbers",
    "check_readme",
    "demo_numbers",
    "describe_machine",
    "format_duration",
    "render_demo_block",
    "replace_block",
    "stored_extraction_seconds",
    "write_readme",
    "write_readme_block",
]
