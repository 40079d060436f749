"""Downstream scores of language models (the paper's Fig. 4: Hellaswag, GSM8K, ...), read from evaluation files.

Two formats:

- **lm-evaluation-harness results** (``results_<date>.json`` written by ``lm_eval --output_path``, or the dict
  ``simple_evaluate`` returns, saved as JSON): a ``"results"`` object mapping each task to its metrics,
  ``{"hellaswag": {"alias": "hellaswag", "acc,none": 0.41, "acc_stderr,none": 0.005, "acc_norm,none": 0.53, ...}}``.
  A metric key is ``<metric>,<filter>`` (``none`` when no filter applies); ``<metric>_stderr,<filter>`` is its
  standard error. Older files use plain keys (``"acc"``, ``"acc_stderr"``). The model is named by the file's
  ``model_name`` or ``config.model_args`` (``pretrained=...``), or given explicitly.
- **CSV**: columns ``model, task, metric, value`` (optionally ``stderr``), one row per score.

:func:`attach` matches the models' names to prh's model names (registry name, its hub source, or the last part of
a hub id, case-insensitive) and refuses a name that matches nothing. It also refuses, unless forced, scores that
their file says belong elsewhere: an lm-eval file (language benchmarks) given to a model of another modality, a
file renamed with ``MODEL=FILE`` whose own model name is another model, and CSV rows whose optional ``modality``
column disagrees with the model's. The readers record what the file says in ``DataFrame.attrs``
(``file``, ``claimed``: the model names the file itself gives when ``MODEL=`` replaced them, ``modality``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from prh.errors import InputError

#: Columns of a downstream-scores table.
DOWNSTREAM_COLUMNS = ["model", "task", "metric", "value", "stderr", "source"]
_FIX_LM_EVAL = (
    "give the results_<date>.json that `lm_eval --output_path DIR` writes (an object with a 'results' object: "
    "task -> {metric: value}), or a CSV with columns model,task,metric,value"
)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise InputError(
                    f"{where}: the score {value!r} is not a number; give a numeric value."
                ) from None
        else:
            raise InputError(f"{where}: the score {value!r} is not a number; give a numeric value.")
    else:
        number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{where}: the score {value!r} is not a finite number.")
    return number


def _model_from_lm_eval(data: Mapping[str, Any]) -> str | None:
    """The evaluated model's name in an lm-eval results object: ``model_name``, else ``pretrained=`` (or ``model=``,
    ``path=``) of ``config.model_args`` (a string ``k=v,...`` or a dict)."""
    name = data.get("model_name")
    if isinstance(name, str) and name.strip():
        return name.strip()
    args = (data.get("config") or {}).get("model_args") if isinstance(data.get("config"), Mapping) else None
    if isinstance(args, Mapping):
        for key in ("pretrained", "model", "path"):
            if isinstance(args.get(key), str):
                return args[key]
    if isinstance(args, str):
        parts = dict(p.split("=", 1) for p in args.split(",") if "=" in p)
        for key in ("pretrained", "model", "path"):
            if parts.get(key):
                return parts[key].strip()
    return None


def read_lm_eval(path: str | Path, model: str | None = None) -> pd.DataFrame:
    """Scores of an lm-evaluation-harness results file: one row per (task, metric).

    Parameters
    ----------
    path : path
        A results JSON (see the module docstring).
    model : str, optional
        The model's name; default: the file's ``model_name`` / ``config.model_args``.

    Returns
    -------
    DataFrame with :data:`DOWNSTREAM_COLUMNS`
        ``metric`` keeps the filter (``"acc,none"``, ``"exact_match,strict-match"``); ``stderr`` is NaN where the
        file gives none (or ``"N/A"``); ``alias`` and other non-score fields are skipped.

    Raises
    ------
    InputError
        Not JSON, no ``results`` object of task -> {metric: value} (a file of another shape), a non-numeric score,
        or no model name; each names the file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"--downstream {path}: cannot read the file ({err}).") from None
    except ValueError as err:
        raise InputError(f"--downstream {path} is not JSON ({err}); {_FIX_LM_EVAL}.") from None
    results = data.get("results") if isinstance(data, Mapping) else None
    if (
        not isinstance(results, Mapping)
        or not results
        or not all(isinstance(v, Mapping) for v in results.values())
    ):
        shape = sorted(data)[:6] if isinstance(data, Mapping) else type(data).__name__
        raise InputError(
            f"--downstream {path} is not an lm-evaluation-harness results file: it has no 'results' object of "
            f"task -> {{metric: value}} (top level: {shape}); {_FIX_LM_EVAL}."
        )
    name = model or _model_from_lm_eval(data)
    if not name:
        raise InputError(
            f"--downstream {path} does not say which model it evaluated (no 'model_name' or 'config.model_args' "
            f"pretrained=...); name it: --downstream MODEL={path}."
        )
    rows = []
    for task, metrics in results.items():
        for key, value in metrics.items():
            metric, _, filt = str(key).partition(",")
            if metric in ("alias", "name") or metric.endswith("_stderr"):
                continue  # labels and standard errors (read with their metric below)
            score = _number(value, f"--downstream {path}: results.{task}.{key}")
            stderr_key = f"{metric}_stderr,{filt}" if filt else f"{metric}_stderr"
            raw = metrics.get(stderr_key)
            stderr = (
                float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else float("nan")
            )
            rows.append(
                {
                    "model": name,
                    "task": str(task),
                    "metric": str(key),
                    "value": score,
                    "stderr": stderr,
                    "source": f"lm-eval {path.name}",
                }
            )
    if not rows:
        raise InputError(f"--downstream {path}: its 'results' hold no numeric score; {_FIX_LM_EVAL}.")
    frame = pd.DataFrame(rows, columns=DOWNSTREAM_COLUMNS)
    own = _model_from_lm_eval(data)
    claimed = [own] if model is not None and own and own != model else []
    frame.attrs.update(file=str(path), claimed=claimed, modality=["language"] * len(frame))
    return frame


def read_downstream_csv(path: str | Path) -> pd.DataFrame:
    """Scores from a CSV with columns ``model, task, metric, value`` (and optionally ``stderr``, and ``modality``:
    the modality of the row's model, checked by :func:`attach`).

    Raises
    ------
    InputError
        Unreadable file, missing columns, an empty cell, or a value that is not a number (naming the line).
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, ValueError, pd.errors.ParserError) as err:
        raise InputError(f"--downstream {path}: cannot read the CSV file ({err}).") from None
    missing = [c for c in ("model", "task", "metric", "value") if c not in frame.columns]
    if missing:
        raise InputError(
            f"--downstream {path} lacks the column(s) {missing}; a downstream CSV has the header "
            f"model,task,metric,value[,stderr] (found {list(frame.columns)})."
        )
    if frame.empty:
        raise InputError(f"--downstream {path} has no rows; add one row per (model, task, metric).")
    rows, modality = [], []
    for k, row in enumerate(frame.to_dict(orient="records"), start=2):
        modality.append(str(row.get("modality", "")).strip().lower() or None)
        for col in ("model", "task", "metric"):
            if not str(row[col]).strip():
                raise InputError(f"--downstream {path}: line {k} has an empty '{col}'.")
        value = _number(row["value"], f"--downstream {path}: line {k}, column 'value'")
        stderr = row.get("stderr", "")
        rows.append(
            {
                "model": str(row["model"]).strip(),
                "task": str(row["task"]).strip(),
                "metric": str(row["metric"]).strip(),
                "value": value,
                "stderr": _number(stderr, f"--downstream {path}: line {k}, column 'stderr'")
                if str(stderr).strip()
                else float("nan"),
                "source": f"csv {path.name}",
            }
        )
    out = pd.DataFrame(rows, columns=DOWNSTREAM_COLUMNS)
    out.attrs.update(file=str(path), claimed=[], modality=modality)
    return out


def read_downstream(spec: str | Path) -> pd.DataFrame:
    """A downstream file by its command-line spelling: ``FILE`` or ``MODEL=FILE`` (``.csv``: CSV, else lm-eval JSON;
    ``MODEL=`` names the model of an lm-eval file)."""
    text = str(spec)
    model = None
    if "=" in text and not Path(text).exists():
        model, _, text = text.partition("=")
        model = model.strip() or None
    path = Path(text)
    if not path.is_file():
        raise InputError(f"--downstream {spec}: no such file {str(path)!r}.")
    if path.suffix.lower() == ".csv":
        frame = read_downstream_csv(path)
        if model is not None:
            frame.attrs["claimed"] = sorted(set(frame["model"]) - {model})
            frame["model"] = model
        return frame
    return read_lm_eval(path, model=model)


def _aliases(name: str, source: str | None) -> set[str]:
    out = {name.lower()}
    if source:
        src = str(source).lower()
        out.add(src)
        out.add(src.rsplit("/", 1)[-1])
        if src.startswith("zoo:"):
            out.add(src[4:])
    return out


def attach(
    frames: Sequence[pd.DataFrame],
    models: Mapping[str, str | None],
    where: str = "--downstream",
    modalities: Mapping[str, str] | None = None,
    force: bool = False,
) -> pd.DataFrame:
    """Downstream scores with their model names resolved to prh's names.

    Parameters
    ----------
    frames : sequence of DataFrames with :data:`DOWNSTREAM_COLUMNS`
        From :func:`read_lm_eval`, :func:`read_downstream_csv`, :func:`read_downstream`.
    models : mapping of prh model name to its source (hub id, ``zoo:NAME``, path) or None
        The models the scores may belong to.
    modalities : mapping of prh model name to its modality (``"language"``, ``"vision"``, ...), optional
        Checked against what the files say (lm-eval results are language benchmarks; a CSV may have a
        ``modality`` column).
    force : attach scores even where their file says they belong to another model or modality.

    Returns
    -------
    DataFrame with :data:`DOWNSTREAM_COLUMNS`, ``model`` being prh names; a later row for the same
    (model, task, metric) replaces an earlier one.

    Raises
    ------
    InputError
        A model name that matches none of ``models`` (listing them); unless ``force``, scores whose file names
        another model than the one they were given to (``MODEL=FILE``), or whose modality is not the model's.
    """
    if not frames:
        return pd.DataFrame(columns=DOWNSTREAM_COLUMNS)
    lookup: dict[str, str] = {}
    for name, source in models.items():
        for alias in _aliases(name, source):
            lookup.setdefault(alias, name)

    def resolve(raw: object) -> str | None:
        key = str(raw).strip().lower()
        return lookup.get(key) or lookup.get(key.rsplit("/", 1)[-1])

    table = pd.concat(list(frames), ignore_index=True)
    resolved = [resolve(raw) for raw in table["model"]]
    unknown = [str(raw) for raw, hit in zip(table["model"], resolved) if hit is None]
    if unknown:
        raise InputError(
            f"{where}: model name(s) {sorted(set(unknown))} match no model of this run ({sorted(models)}); use prh "
            f"names in the CSV, or name an lm-eval file's model: --downstream MODEL=FILE."
        )
    if not force:
        for frame in frames:
            _check_claims(frame, [resolve(raw) for raw in frame["model"]], resolve, modalities or {}, where)
    table["model"] = resolved
    return table.drop_duplicates(["model", "task", "metric"], keep="last").reset_index(drop=True)


def _check_claims(
    frame: pd.DataFrame,
    names: Sequence[str | None],
    resolve: Any,
    modalities: Mapping[str, str],
    where: str,
) -> None:
    """Refuse a frame whose file says its scores belong to another model or modality (see :func:`attach`)."""
    file = frame.attrs.get("file", "")
    force = "or pass --force-downstream (force=True in Python) if they really belong to it"
    given = sorted({n for n in names if n is not None})
    lm_eval = str(frame["source"].iloc[0]).startswith("lm-eval") if len(frame) else False
    for name, modality in zip(names, frame.attrs.get("modality") or []):
        model_modality = modalities.get(name) if name is not None else None
        if modality and model_modality and str(model_modality).lower() != modality:
            what = (
                "lm-evaluation-harness scores are language benchmarks"
                if lm_eval
                else (f"its rows for {name} say modality {modality!r}")
            )
            raise InputError(
                f"{where} {file}: {what}, but {name} is a {model_modality} model; attach them to a "
                f"{modality} model, {force}."
            )
    for claimed in frame.attrs.get("claimed") or []:
        if resolve(claimed) not in given:
            raise InputError(
                f"{where} {', '.join(given)}={file}: the file says its scores are for {claimed!r}, not "
                f"{', '.join(given)}; check that this is the right file, {force}."
            )
