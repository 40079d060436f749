"""The numbers of a run's findings (:mod:`prh.report.findings` puts them into words).

:func:`findings_numbers` reads every figure the findings quote from a run's :class:`~prh.align.Results`: the best
cross-modal pair, chance (:func:`chance_level`: the metric's own null expectation at the run's N and options), the
shuffled-caption control, significance, the language-model groups and the reported-competence trend;
:func:`probe_numbers` what the run's transfer probes measured; :class:`RunTimes` the run's wall times.

One file, slightly over ~450 lines: every number the findings quote is read here from one results folder in one
pass, so a number cannot come from two readings that disagree.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from prh.align.engine import Results
from prh.atomic import atomic_write_text
from prh.competence import CompetenceResults
from prh.errors import InputError
from prh.report.competence import COMPETENCE_PROBE
from prh.report.figures import mean_cross_modal, models_by_modality

#: The run's own record of its wall times, in the results folder (:meth:`RunTimes.save`).
RUN_TIMES_FILE = "run_times.json"

#: Language-model groups compared in the section, by adapter.
LANGUAGE_GROUPS = {"hf-text-encoder": "sentence encoders", "hf-causal-lm": "causal LMs"}

#: Confidence level of the intervals when the provenance does not record one (the engine's bootstrap default).
DEFAULT_CI_LEVEL = 0.95

#: Fewest models with both numbers for which the section quotes a rank correlation.
MIN_MODELS_FOR_RHO = 3


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
    """What the transfer probes of a run measured, read from its competence tables.

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
    does not state its null expectation (:meth:`~prh.metrics.registry.MetricSpec.chance`)."""
    from prh.metrics.registry import spec as metric_spec

    try:
        spec = metric_spec(metric)
    except (KeyError, InputError):
        return None
    options = {**spec.defaults, **(((results.provenance or {}).get("metrics") or {}).get(metric) or {})}
    if k is not None and "k" in spec.options():
        options.setdefault("k", k)
    return spec.chance(n, options)


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


__all__ = [
    "DEFAULT_CI_LEVEL",
    "LANGUAGE_GROUPS",
    "MIN_MODELS_FOR_RHO",
    "RUN_TIMES_FILE",
    "BestPair",
    "Findings",
    "GroupRange",
    "ProbeNumbers",
    "RankTrend",
    "RunTimes",
    "chance_level",
    "findings_numbers",
    "load_competence",
    "probe_numbers",
    "stored_extraction_seconds",
]
