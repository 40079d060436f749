"""The findings of a run in words, with their numbers: the "Findings" section of every report.

:func:`findings_numbers` reads every figure the section quotes from a run's :class:`~prh.align.Results` (the table
with its calibration and interval columns, the shuffled-caption control rows and the provenance): the best
cross-modal pair, chance (the metric's own null expectation, :attr:`prh.metrics.registry.MetricSpec.null_expectation`,
at the run's N and options), the control, significance, and the reported-competence trend. :func:`render_findings`
turns them into markdown paragraphs; :func:`findings_section` gives the report its section (markdown and HTML)
for a results folder. The numbers are read in :mod:`prh.report._findings_numbers`; this module writes the words.

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
import math
import os
import re
import textwrap
from collections.abc import Mapping
from functools import partial
from pathlib import Path

from prh.align.engine import Results
from prh.competence import CompetenceResults
from prh.errors import InputError
from prh.report._findings_numbers import (
    MIN_MODELS_FOR_RHO,
    RUN_TIMES_FILE,
    Findings,
    ProbeNumbers,
    RankTrend,
    RunTimes,
    chance_level,
    findings_numbers,
    load_competence,
    probe_numbers,
    stored_extraction_seconds,
)
from prh.report.competence import COMPETENCE_DIR

#: Lines that enclose the section in report.md (the start line names the metric the findings are about), so that
#: other tools can copy it (scripts/update_readme.py puts the demo's into the README).
START_MARKER = "<!-- findings metric={metric} -->"
END_MARKER = "<!-- /findings -->"

#: Line width of the generated markdown.
WIDTH = 116

#: How the section names the labels of the probes (others are written as their name in backticks).
LABEL_NAMES = {"emoji-group": "Unicode emoji group", "emoji-subgroup": "Unicode emoji subgroup"}


# ------------------------------------------------------------------------------------------------- rendering


def format_duration(seconds: float) -> str:
    """``694.2`` -> ``"11 min 34 s"``; under a minute ``"8 s"`` (whole seconds, rounded)."""
    total = int(round(float(seconds)))
    minutes, secs = divmod(total, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _metric_name(metric: str, unknown: str | None = None) -> str:
    """How the text names ``metric``: its spec's ``display_name`` (``"mutual kNN"``); else ``unknown`` (default:
    the registry name)."""
    from prh.metrics.registry import spec as metric_spec

    try:
        shown = metric_spec(metric).display_name
    except (KeyError, InputError):
        shown = ""
    return shown or (unknown if unknown is not None else metric)


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
        name = _metric_name(m, f"`{m}`")
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
            f"calibrates every cross-modal {_metric_name(num.metric)} pair with a K = {num.K} "
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
    name = _metric_name(num.metric)
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
    """The paragraph on the run's measured competence (transfer probes)."""
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
        f"{_metric_name(num.metric)} with its linear-probe accuracy): "
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
