"""The findings of a run in words, with their numbers: the "Findings" section of every report.

:func:`findings_numbers` reads every figure the section quotes from a run's :class:`~prh.align.Results` (the table
with its calibration and interval columns, the shuffled-caption control rows and the provenance): the best
cross-modal pair, chance (the metric's own null expectation, :attr:`prh.metrics.registry.MetricSpec.null_expectation`,
at the run's N and options), the control, significance, and the reported-competence trend. :func:`render_findings`
turns them into markdown paragraphs; :func:`findings_section` gives the report its section (markdown and HTML)
for a results folder.

When the run also measured competence (transfer probes, ``<out>/competence/``, read with
:class:`~prh.competence.CompetenceResults`), :func:`probe_numbers` reads what the probes found and the section gets a
paragraph on them: what was probed, each model's best-layer probe accuracy, the label-shuffled control, and how the
models' cross-modal alignment ranks against their measured accuracy.

Only what the run measured is written. Wall times come from :class:`RunTimes`: the run's own record
(``<out>/run_times.json``, written by `prh demo` with its time per stage and each model's extraction time from the
feature store), else the alignment's wall time in the provenance.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pandas as pd

from prh.align.engine import Results
from prh.atomic import atomic_write_text
from prh.competence import CompetenceResults
from prh.errors import InputError
from prh.report.competence import COMPETENCE_DIR, COMPETENCE_PROBE
from prh.report.figures import mean_cross_modal, models_by_modality

#: Lines that enclose the section in report.md (the start line names the metric the findings are about), so that
#: other tools (the README's demo block) can copy it.
START_MARKER = "<!-- findings metric={metric} -->"
END_MARKER = "<!-- /findings -->"

#: The run's own record of its wall times, in the results folder (:meth:`RunTimes.save`).
RUN_TIMES_FILE = "run_times.json"

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

#: Line width of the generated markdown.
WIDTH = 116

#: Confidence level of the intervals when the provenance does not record one (the engine's bootstrap default).
DEFAULT_CI_LEVEL = 0.95

#: Fewest models with both numbers for which the section quotes a rank correlation.
MIN_MODELS_FOR_RHO = 3

#: How the section names the labels of the probes (others are written as their name in backticks).
LABEL_NAMES = {"emoji-group": "Unicode emoji group", "emoji-subgroup": "Unicode emoji subgroup"}


@dataclass(frozen=True)
class RunTimes:
    """The wall times the section quotes (all optional; what is None is left out).

    Attributes
    ----------
    seconds : wall times of the run that produced the results: ``total`` and optionally ``features``,
        ``alignment``, ``competence``, ``report`` (what `prh demo` measured).
    extraction : each model's extraction time in seconds as recorded when its features were computed
        (:func:`stored_extraction_seconds`).
    machine : the machine the run used, in words (:func:`prh._provenance.describe_machine`); None leaves it out.
    created : the ``created`` time of the results these times belong to (their provenance), so that times left in a
        folder by an earlier run are not quoted for a later one.
    """

    seconds: Mapping[str, float] | None = None
    extraction: Mapping[str, float] | None = None
    machine: str | None = None
    created: str | None = None

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write these times to ``<out_dir>/run_times.json`` (atomically) for the report to quote."""
        data = {"seconds": dict(self.seconds or {}), "extraction": dict(self.extraction or {})}
        data.update(machine=self.machine, created=self.created)
        return atomic_write_text(Path(out_dir) / RUN_TIMES_FILE, json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> RunTimes | None:
        """The times :meth:`save` wrote to ``out_dir``; None when there are none (or the file is unreadable)."""
        try:
            data = json.loads((Path(out_dir) / RUN_TIMES_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict):
            return None
        return cls(
            data.get("seconds") or None,
            data.get("extraction") or None,
            data.get("machine"),
            data.get("created"),
        )

    @classmethod
    def of(cls, results: Results, out_dir: str | os.PathLike | None = None) -> RunTimes:
        """The run's recorded times (:meth:`load` from ``out_dir``, when they belong to ``results``: same
        ``created``), else the alignment's wall time from the provenance of ``results``."""
        saved = cls.load(out_dir) if out_dir is not None else None
        if saved is not None and saved.created == (results.provenance or {}).get("created"):
            return saved
        wall = _num((results.provenance or {}).get("wall_time_s"))
        return cls(seconds={"alignment": wall}) if wall is not None else cls()


@dataclass(frozen=True)
class RankTrend:
    """Spearman rank correlation, over the models of one modality, of mean cross-modal alignment with measured
    probe accuracy; ``rho`` is None with fewer than :data:`MIN_MODELS_FOR_RHO` models (or when a column is
    constant)."""

    modality: str
    n_models: int
    rho: float | None


@dataclass(frozen=True)
class ProbeNumbers:
    """What the demo's transfer probes measured, read from its competence tables.

    Attributes
    ----------
    labels : name of the labels (``"emoji-group"``).
    n_items, n_labelled : items of the dataset and how many of them have a label (None: not recorded).
    n, n_classes : items and classes the probes used (classes smaller than the folds are left out).
    k, folds, level : k of the k-NN probe, cross-validation folds, level of the intervals.
    linear, knn : each model's best-layer accuracy (linear and k-NN probe), in the tables' order.
    majority : majority-class rate of the probed items.
    beat_control : the models whose best-layer linear-probe interval lies wholly above the interval of their
        label-shuffled control (accuracy, as the report's findings compare them).
    chance : 1/C, the expectation of the control's balanced accuracy.
    control_low, control_high : range of the control's balanced accuracy over all (model, probe, layer) rows.
    control_rows, control_at_chance : those rows, and how many of them have chance inside the control's interval.
    trends : :class:`RankTrend` of the vision and the language models.
    """

    labels: str
    n_items: int
    n_labelled: int | None
    n: int
    n_classes: int
    k: int
    folds: int
    level: float
    linear: dict[str, float]
    knn: dict[str, float]
    majority: float
    beat_control: tuple[str, ...]
    chance: float
    control_low: float
    control_high: float
    control_rows: int
    control_at_chance: int
    trends: tuple[RankTrend, ...]


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
class Findings:
    """Every number the findings section quotes, read from one run's results.

    Attributes
    ----------
    dataset, n : dataset name and number of pairs N.
    metric : the metric the section is about (``"mutual_knn"``); ``metrics`` all metrics of the run.
    k : neighbours (None for metrics without k).
    chance : the metric's expected score for unrelated inputs at this N and the run's options
        (:attr:`~prh.metrics.registry.MetricSpec.null_expectation`); None when the metric does not know it.
    vision, language : model names by modality, smallest first.
    K, B, alpha, ci_level : permutations, subsamples, significance level, interval level (None when off).
    n_cross, n_significant : real cross-modal pairs of ``metric`` and how many have p <= alpha (None: uncalibrated).
    p_min, p_max, p_floor : smallest and largest p of those pairs; 1/(K+1), the smallest a K-permutation test gives.
    calibrated_low, calibrated_high : range of their calibrated scores.
    best : the best real cross-modal pair (``times_chance`` is NaN when chance is unknown or zero).
    groups : score ranges of the language-model groups of :data:`LANGUAGE_GROUPS` that the run has.
    control_* : the shuffled-caption control of the cross-modal pairs (None without one): best, mean, number of
        pairs, number significant; ``real_mean`` the mean real score; ``best_over_control`` best real / best control.
    competence_counts : models per alignment-vs-competence panel of the report drawn from the reported figures
        (panel -> count); the section quotes them only without measured competence.
    vision_trend : Spearman rank correlation of the vision models' mean cross-modal score with the catalogue's
        ImageNet top-1 (None with fewer than 3 such models); ``vision_rated`` those models.
    created : when the results were computed (provenance).
    probes : what the transfer probes measured (:func:`probe_numbers`); None when the run has no competence tables.
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
    vision_rated: int = 0
    created: str = ""
    probes: ProbeNumbers | None = None


def _num(value: object) -> float | None:
    """``value`` as a float, None for missing/NaN."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _spearman(a: pd.Series, b: pd.Series) -> float | None:
    """Spearman's rank correlation of two aligned series (average ranks for ties); None when undefined."""
    rho = float(a.rank().corr(b.rank()))
    return None if math.isnan(rho) else rho


def load_competence(competence: CompetenceResults | str | os.PathLike | None) -> CompetenceResults | None:
    """``competence`` as :class:`~prh.competence.CompetenceResults`: a loaded object as is, a competence folder
    (``<out>/competence``) read with :meth:`CompetenceResults.load`; None (no paragraph) for None, a missing folder
    or one without probes.csv (the demo skips the probes when the emoji labels are missing)."""
    if competence is None or isinstance(competence, CompetenceResults):
        return competence
    folder = Path(competence)
    return CompetenceResults.load(folder) if (folder / "probes.csv").is_file() else None


def probe_numbers(
    results: Results, measured: CompetenceResults, metric: str = "mutual_knn"
) -> ProbeNumbers | None:
    """What the transfer probes of ``measured`` found, and how ``results``' alignment ranks against it.

    The accuracies are the report's competence figure (:data:`prh.report.competence.COMPETENCE_PROBE`: the linear
    probe at its best layer) and the k-NN probe at its best layer; the alignment of a model is its mean best-layer
    ``metric`` score against the models of the other modality (as in the report's alignment-vs-competence panels).
    None when the tables hold no best-layer linear-probe row, or when they were measured on other data than the
    alignment (the dataset fingerprints of the two provenances differ: a competence folder left from another run).
    """
    t = measured.table
    best = t[(t["probe"] == "linear") & (t["layer_choice"] == "best")]
    probed_on = (measured.provenance.get("dataset") or {}).get("fingerprint")
    aligned_on = ((results.provenance or {}).get("dataset") or {}).get("fingerprint")
    if best.empty or (probed_on and aligned_on and probed_on != aligned_on):
        return None
    probe, choice, column = COMPETENCE_PROBE
    linear = measured.competence(probe, choice, column)
    knn = measured.competence("knn", choice, column)
    beat = tuple(str(r["model"]) for _, r in best.iterrows() if r["ci_low"] > r["control_ci_high"])
    chance = float(best["chance_balanced"].iloc[0])
    inside = (t["control_balanced_ci_low"] <= chance) & (chance <= t["control_balanced_ci_high"])
    trends = []
    for modality in ("vision", "language"):
        df = mean_cross_modal(results.table, metric, modality)
        df["measured"] = df["model"].map(linear)
        both = df.dropna(subset=["score", "measured"])
        rho = _spearman(both["score"], both["measured"]) if len(both) >= MIN_MODELS_FOR_RHO else None
        trends.append(RankTrend(modality, len(both), rho))
    labels = measured.provenance.get("labels") or {}
    cfg = measured.config
    n_labelled = labels.get("n_labelled")
    return ProbeNumbers(
        labels=str(labels.get("name") or best["labels"].iloc[0]),
        n_items=int(labels.get("n_items") or best["n_items"].iloc[0]),
        n_labelled=int(n_labelled) if n_labelled is not None else None,
        n=int(best["n"].iloc[0]),
        n_classes=int(best["n_classes"].iloc[0]),
        k=cfg.k,
        folds=cfg.folds,
        level=cfg.level,
        linear=linear,
        knn=knn,
        majority=float(best["majority_rate"].iloc[0]),
        beat_control=beat,
        chance=chance,
        control_low=float(t["control_balanced_accuracy"].min()),
        control_high=float(t["control_balanced_accuracy"].max()),
        control_rows=len(t),
        control_at_chance=int(inside.sum()),
        trends=tuple(trends),
    )


def chance_level(results: Results, metric: str, n: int, k: int | None = None) -> float | None:
    """The expected score of ``metric`` for unrelated inputs of ``n`` items, with the options the run recorded in
    its provenance (``k`` from the table when the provenance has none); None when the metric is unknown here or
    does not state its null expectation."""
    from prh.metrics.registry import spec as metric_spec

    try:
        spec = metric_spec(metric)
    except (KeyError, InputError):
        return None
    if spec.null_expectation is None:
        return None
    options = {**spec.defaults, **(((results.provenance or {}).get("metrics") or {}).get(metric) or {})}
    if k is not None and "k" in spec.options():
        options.setdefault("k", k)
    return float(spec.null_expectation(n, options))


def findings_numbers(
    results: Results, metric: str = "mutual_knn", competence: CompetenceResults | None = None
) -> Findings:
    """Read the numbers of the findings section from a run's results.

    Parameters
    ----------
    results : :class:`~prh.align.Results` of a run (``Results.load(out_dir)``).
    metric : the metric the section reports (default mutual kNN, the paper's main metric).
    competence : the run's measured competence (its transfer probes), or None.

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
            f"these results have no cross-modal {metric} pair (language x vision); the findings need one. "
            "Run `prh demo` (or `prh align` with models of both modalities)."
        )
    n = int(cross["N"].iloc[0])
    k = _num(cross["k"].iloc[0])
    k = int(k) if k is not None else None
    chance = chance_level(results, metric, n, k)
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
        times_chance=float(top["score"]) / chance if chance and chance > 0 else float("nan"),
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
    trend = _spearman(rated["score"], rated["imagenet_top1"]) if len(rated) >= MIN_MODELS_FOR_RHO else None

    return Findings(
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
        vision_rated=len(rated),
        created=str(prov.get("created") or ""),
        probes=probe_numbers(results, competence, metric) if competence is not None else None,
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


def _intro(num: Findings, results: Results, source: str) -> str:
    prov = results.provenance or {}
    data = f"The run pairs {num.n:,} images with captions from `{num.dataset or 'the dataset'}`"
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


def _findings(num: Findings) -> list[str]:
    b = num.best
    name = METRIC_NAMES.get(num.metric, num.metric)
    interval = ""
    if b.ci_low is not None and b.ci_high is not None:
        interval = f"; {num.ci_level:.0%} subsampling interval {b.ci_low:.3f}–{b.ci_high:.3f} at those layers"
    chance = f", {b.times_chance:.1f}× chance" if not math.isnan(b.times_chance) else ""
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


def _control(num: Findings) -> str:
    chance = f" (chance {num.chance:.4f})" if num.chance is not None else ""
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


def _timing(times: RunTimes) -> str:
    seconds, extraction = times.seconds, times.extraction
    machine = f" on a {times.machine}" if times.machine else ""
    parts = []
    if seconds and seconds.get("total") is None and seconds.get("alignment") is not None:
        parts.append(
            f"The alignment behind these numbers took {format_duration(seconds['alignment'])}{machine}."
        )
    if seconds and seconds.get("total") is not None:
        stages = [
            f"{key} {format_duration(seconds[key])}"
            for key in ("features", "alignment", "competence", "report")
            if seconds.get(key) is not None
        ]
        detail = f" ({', '.join(stages)})" if stages else ""
        parts.append(
            f"The run behind these numbers took {format_duration(seconds['total'])}{machine}"
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


def _models_range(values: Mapping[str, float]) -> str:
    """``"0.412 (`b`) to 0.689 (`a`)"``: the lowest and the highest value with their models."""
    low = min(values, key=values.get)
    high = max(values, key=values.get)
    if f"{values[low]:.3f}" == f"{values[high]:.3f}":
        return f"{values[high]:.3f} for every model"
    return f"{values[low]:.3f} (`{low}`) to {values[high]:.3f} (`{high}`)"


def _trend_text(trend: RankTrend) -> str:
    models = _count(trend.n_models, f"{trend.modality} model")
    if trend.n_models < MIN_MODELS_FOR_RHO:
        return f"too few {trend.modality} models for a rank correlation ({trend.n_models}; {MIN_MODELS_FOR_RHO} needed)"
    if trend.rho is None:
        return f"no rank correlation over the {models} (one of the two columns is constant)"
    return f"ρ = {trend.rho:.2f} over the {models}"


def _probes(num: Findings) -> str:
    """The paragraph on the demo's measured competence (transfer probes)."""
    pr = num.probes
    what = LABEL_NAMES.get(pr.labels, f"`{pr.labels}` label")
    have = f"{pr.n_labelled:,} of the {pr.n_items:,} items have one; " if pr.n_labelled is not None else ""
    classes = f"{what}s" if pr.labels in LABEL_NAMES else "classes"
    text = (
        f"Measured competence: k-NN (k = {pr.k}) and linear (logistic-regression) probes of every model's stored "
        f"features predict each item's {what} ({have}{pr.n:,} items in {pr.n_classes} {classes} are probed, "
        f"{pr.folds}-fold cross-validation, the best layer chosen inside each training fold). "
        f"Best-layer linear-probe accuracy runs from {_models_range(pr.linear)} over the "
        f"{_count(len(pr.linear), 'model')}"
    )
    if pr.knn:
        text += f"; k-NN {_span(min(pr.knn.values()), max(pr.knn.values()))}"
    text += f" (majority-class rate {pr.majority:.3f}). "
    n_models, n_beat = len(pr.linear), len(pr.beat_control)
    interval = f"{pr.level:.0%} linear-probe interval"
    if n_beat == n_models:
        head = f"All {n_models} models beat" if n_models > 1 else "The model beats"
        text += f"{head} their label-shuffled control (the {interval} lies above the control's)"
    else:
        missed = [m for m in pr.linear if m not in pr.beat_control]
        verb = "does" if len(missed) == 1 else "do"
        text += (
            f"{n_beat} of the {n_models} models beat their label-shuffled control (the {interval} lies above the "
            f"control's; {_names(missed)} {verb} not)"
        )
    rows = _count(pr.control_rows, "(model, probe, layer) row")
    if pr.control_at_chance == pr.control_rows:
        text += (
            f", and the control sits at chance: its balanced accuracy is {_span(pr.control_low, pr.control_high)} "
            f"against 1/C = {pr.chance:.3f}, and its interval holds chance in all {rows}. "
        )
    else:
        text += (
            f"; the control's balanced accuracy is {_span(pr.control_low, pr.control_high)} against chance "
            f"1/C = {pr.chance:.3f}, its interval holding chance in {pr.control_at_chance} of {rows} (about "
            f"{(1 - pr.level) * pr.control_rows:.1f} misses expected at that level). "
        )
    text += (
        f"Alignment against measured competence (Spearman rank correlation of a model's mean cross-modal "
        f"{METRIC_NAMES.get(num.metric, num.metric)} with its linear-probe accuracy): "
        + "; ".join(_trend_text(t) for t in pr.trends)
    )
    if any(t.rho is not None for t in pr.trends):
        text += " — with this few models, read the sign, not the decimals"
    return text + "."


def _competence(num: Findings) -> str:
    paper = (
        "the paper's trend needs its larger model families and the WIT pairs (`prh extract`, then "
        "`prh align`, with `--models paper-val --dataset wit_1024`; that needs internet and, in practice, a GPU)."
    )
    if num.probes is not None:  # measured competence is the main view; the reported figure is a side remark
        if num.vision_trend is None:
            return "Testing " + paper.replace(" needs ", " itself needs ", 1)
        direction = "rises" if num.vision_trend > 0 else "does *not* rise"
        return (
            f"Against the catalogue's reported ImageNet top-1 instead of measured accuracy, the vision models' "
            f"alignment {direction} (Spearman ρ = {num.vision_trend:.2f} over {_count(num.vision_rated, 'model')}); "
            + paper
        )
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
    return f"{text} — {paper}"


def render_findings(
    results: Results,
    *,
    metric: str = "mutual_knn",
    times: RunTimes | None = None,
    competence: CompetenceResults | str | os.PathLike | None = None,
    source: str = "the results folder",
) -> str:
    """The findings in markdown: paragraphs and one bullet list, wrapped at :data:`WIDTH` (no heading).

    Parameters
    ----------
    results : the run's :class:`~prh.align.Results`.
    metric : the metric the findings are about.
    times : the wall times to quote (:class:`RunTimes`); None leaves them out.
    competence : the run's measured competence: its competence folder (``<out>/competence``) or the loaded
        :class:`~prh.competence.CompetenceResults`; with it there is a paragraph on the transfer probes.
        None, or a folder without probes.csv, leaves that paragraph out.
    source : the results folder, as the text names it.

    Returns
    -------
    str : the markdown, ending with a newline.

    Raises
    ------
    InputError
        When the results hold no real cross-modal pair of ``metric``.
    """
    num = findings_numbers(results, metric, load_competence(competence))
    wrap = partial(textwrap.fill, width=WIDTH, break_long_words=False, break_on_hyphens=False)
    out = [wrap(_intro(num, results, source)), ""]
    read = (
        "How to read it: each cell of the cross-modal figure is the best score over all layer pairs of a language "
        "model (row) and a vision model (column)"
    )
    if num.chance is not None:
        read += f"; chance (the metric's expected score for unrelated inputs) is {num.chance:.4f}"
    out += [wrap(read + ". Measured in this run:"), ""]
    out += [wrap(f"- {line}", subsequent_indent="  ") for line in _findings(num)]
    out.append("")
    if num.control_pairs:
        out += [wrap(_control(num)), ""]
    if num.probes is not None:
        out += [wrap(_probes(num)), ""]
    tail = " ".join(filter(None, [_timing(times or RunTimes()), _competence(num)]))
    if tail:
        out += [wrap(tail), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _inline_html(text: str) -> str:
    """One paragraph of the findings' markdown as HTML: escaped, with `code` and *emphasis*."""
    text = html.escape(" ".join(text.split()), quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)


def markdown_to_html(markdown: str) -> str:
    """The findings' markdown (paragraphs and ``- `` bullet lists, no other markup) as HTML."""
    out = []
    for block in re.split(r"\n\s*\n", markdown.strip()):
        if block.startswith("- "):
            items = re.split(r"\n(?=- )", block)
            out.append("<ul>" + "".join(f"<li>{_inline_html(i[2:])}</li>" for i in items) + "</ul>")
        elif block.strip():
            out.append(f"<p>{_inline_html(block)}</p>")
    return "\n".join(out)


def findings_section(
    results: Results, out_dir: str | os.PathLike, metric: str = "mutual_knn"
) -> tuple[str, str] | None:
    """The report's "Findings" section of the results folder ``out_dir``: ``(markdown, html)``.

    The markdown sits between :data:`START_MARKER` and :data:`END_MARKER` lines; the competence tables
    (``<out_dir>/competence``) and the run's times (:meth:`RunTimes.of`) are read from the folder. None when the
    results hold no cross-modal pair of ``metric`` (nothing to find across modalities).
    """
    out = Path(out_dir)
    try:
        text = render_findings(
            results,
            metric=metric,
            times=RunTimes.of(results, out),
            competence=out / COMPETENCE_DIR,
            source=str(out_dir),
        )
    except InputError:
        return None
    markdown = f"{START_MARKER.format(metric=metric)}\n{text}{END_MARKER}\n"
    return markdown, markdown_to_html(text)


__all__ = [
    "END_MARKER",
    "RUN_TIMES_FILE",
    "START_MARKER",
    "Findings",
    "ProbeNumbers",
    "RankTrend",
    "RunTimes",
    "chance_level",
    "findings_numbers",
    "findings_section",
    "format_duration",
    "load_competence",
    "markdown_to_html",
    "probe_numbers",
    "render_findings",
    "stored_extraction_seconds",
]
