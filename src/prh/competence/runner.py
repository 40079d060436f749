"""Probe stored features of model sets: :func:`run_competence` -> :class:`CompetenceResults` (tables + provenance).

Each model's result is also kept in the feature store, next to the features it was computed on
(``<store>/<dataset>-n<N>/competence/<model>__<pool>.json``), keyed by the features' write id, the labels'
fingerprint and the whole :class:`ProbeConfig`: a later run with the same inputs reads it back instead of
recomputing, and a re-extraction (new write id) or other labels or options recompute it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from prh.atomic import atomic_write_group, atomic_write_text
from prh.competence.config import ProbeConfig
from prh.competence.downstream import DOWNSTREAM_COLUMNS
from prh.competence.labels import Labels
from prh.competence.layers import input_layers
from prh.competence.probes import probe_layers
from prh.errors import InputError

#: Columns of the probe table: one row per (model, probe, layer choice).
PROBE_COLUMNS = [
    "model",
    "modality",
    "family",
    "params",
    "labels",
    "n_items",
    "n",
    "n_classes",
    "probe",
    "layer_choice",
    "layer",
    "layer_name",
    "layers_selected",
    "n_layers",
    "accuracy",
    "ci_low",
    "ci_high",
    "balanced_accuracy",
    "balanced_ci_low",
    "balanced_ci_high",
    "control_accuracy",
    "control_ci_low",
    "control_ci_high",
    "control_balanced_accuracy",
    "control_balanced_ci_low",
    "control_balanced_ci_high",
    "chance_balanced",
    "majority_rate",
]
#: Columns of the per-layer k-NN table.
LAYER_COLUMNS = [
    "model",
    "modality",
    "layer",
    "layer_name",
    "input_layer",
    "knn_accuracy",
    "knn_ci_low",
    "knn_ci_high",
    "knn_balanced_accuracy",
    "control_knn_accuracy",
]
FILES = ("probes.csv", "layers.csv", "downstream.csv", "competence.json")
#: Version of the cached per-model records; bump when the probes' numbers change for the same inputs.
RECORD_VERSION = 1


@dataclass
class CompetenceResults:
    """Measured competence of a set of models.

    Attributes
    ----------
    table : DataFrame
        :data:`PROBE_COLUMNS`, one row per model x probe (``knn``, ``linear``) x layer choice (``last``, ``best``).
    layers : DataFrame
        :data:`LAYER_COLUMNS`, the k-NN accuracy of every layer of every model.
    downstream : DataFrame
        :data:`~prh.competence.downstream.DOWNSTREAM_COLUMNS`, attached downstream scores (may be empty).
    provenance : dict
        Dataset (name, fingerprint, n), labels (source, coverage, class counts, classes left out), the probe
        config (folds, seed, ...), the models (write ids, layer names, input layers, cached or computed), versions.
    """

    table: pd.DataFrame
    layers: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=LAYER_COLUMNS))
    downstream: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=DOWNSTREAM_COLUMNS))
    provenance: dict = field(default_factory=dict)

    def competence(
        self, probe: str = "linear", layer_choice: str = "best", column: str = "accuracy"
    ) -> dict[str, float]:
        """``{model: value}`` of one probe, layer choice and column (e.g. the linear probe's best-layer accuracy)."""
        t = self.table
        sub = t[(t["probe"] == probe) & (t["layer_choice"] == layer_choice)]
        return {str(m): float(v) for m, v in zip(sub["model"], sub[column])}

    @property
    def config(self) -> ProbeConfig:
        """The probe options of this run."""
        return ProbeConfig.from_dict(self.provenance.get("config") or {})

    def with_downstream(self, frame: pd.DataFrame) -> CompetenceResults:
        """A copy with ``frame`` (resolved by :func:`~prh.competence.downstream.attach`) as the downstream scores."""
        return CompetenceResults(self.table, self.layers, frame.reset_index(drop=True), dict(self.provenance))

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write probes.csv, layers.csv, downstream.csv and competence.json to ``out_dir`` (all or none)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.provenance, indent=2, default=str)
        atomic_write_group(
            {
                out / "probes.csv": lambda p: self.table.to_csv(p, index=False),
                out / "layers.csv": lambda p: self.layers.to_csv(p, index=False),
                out / "downstream.csv": lambda p: self.downstream.to_csv(p, index=False),
                out / "competence.json": lambda p: Path(p).write_text(text, encoding="utf-8"),
            }
        )
        return out

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> CompetenceResults:
        """Read what :meth:`save` wrote.

        Raises
        ------
        InputError
            No probes.csv in ``out_dir``, or a file that cannot be parsed (naming it).
        """
        out = Path(out_dir)
        if not (out / "probes.csv").is_file():
            raise InputError(
                f"{out} holds no competence results (probes.csv is missing); run `prh competence`."
            )
        fix = "run `prh competence --out DIR` again to rewrite it"
        frames = {}
        for name, columns in (
            ("probes.csv", PROBE_COLUMNS),
            ("layers.csv", LAYER_COLUMNS),
            ("downstream.csv", DOWNSTREAM_COLUMNS),
        ):
            path = out / name
            if not path.is_file():
                frames[name] = pd.DataFrame(columns=columns)
                continue
            try:
                frames[name] = pd.read_csv(path)
            except (OSError, ValueError, pd.errors.ParserError) as err:
                raise InputError(f"{path} is not a readable CSV table ({err}); {fix}.") from None
            except pd.errors.EmptyDataError:
                frames[name] = pd.DataFrame(columns=columns)
                continue
            missing = [c for c in columns if c not in frames[name].columns]
            if missing:
                raise InputError(f"{path} lacks the column(s) {missing}; {fix}.")
        provenance: dict = {}
        if (out / "competence.json").is_file():
            try:
                provenance = json.loads((out / "competence.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise InputError(f"{out / 'competence.json'} is not readable JSON ({err}); {fix}.") from None
        return cls(frames["probes.csv"], frames["layers.csv"], frames["downstream.csv"], provenance)


def _record_key(write_id: str | None, labels: Labels, config: ProbeConfig, pool: str) -> str:
    blob = json.dumps(
        {
            "write_id": write_id,
            "labels": labels.fingerprint(),
            "config": config.to_dict(),
            "pool": pool,
            "version": RECORD_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _record_path(store: Any, dataset: Any, model: str, pool: str) -> Path:
    features = Path(store.path(dataset, model, pool))
    return features.parent / "competence" / f"{features.stem}.json"


def _read_record(path: Path, key: str) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("key") != key:
        return None
    if not isinstance(record.get("rows"), list) or not isinstance(record.get("curve"), list):
        return None
    return record


def run_competence(
    models: Sequence[Any],
    store: Any,
    dataset: Any,
    labels: Labels,
    config: ProbeConfig | Mapping[str, Any] | None = None,
    *,
    log: Callable[[str], None] | None = None,
    cache: bool = True,
) -> CompetenceResults:
    """k-NN and linear probes (with the label-shuffled control) of every model's stored features.

    Parameters
    ----------
    models : sequence of ModelSpec
        Registry entries (:func:`prh.models.resolve_models`): name, modality, family, params, default pooling.
    store : FeatureStore
        Where the features are (``prh extract`` puts them there).
    dataset : PairedDataset
        The data the features were extracted on (its fingerprint is checked, its ids join the labels). A dataset
        whose ``has_captions`` is False (a labelled image set without captions) probes only vision models.
    labels : Labels
        One class per item (:func:`~prh.competence.labels.emoji_labels`, :func:`labels_from_file`, or the labels
        of a :mod:`~prh.competence.datasets` set); they must cover the dataset's items.
    config : ProbeConfig, optional
        Folds, k, C, shuffles, seed, ... (a mapping of its fields is accepted).
    log : callable, optional
        Receives one line per model.
    cache : bool, default True
        Read and write each model's result in the feature store (see the module docstring).

    Returns
    -------
    CompetenceResults
    """
    from prh.align import load_features

    config = ProbeConfig.coerce(config)
    say = log or (lambda _msg: None)
    if not models:
        raise InputError("models is empty; give at least one model.")
    labels = labels.aligned_to(dataset.ids, where=f"labels {labels.name!r}")
    used = labels.for_probe(config.class_minimum, config.folds)
    coverage = labels.coverage()
    start = time.perf_counter()
    rows: list[dict] = []
    curves: list[dict] = []
    info: dict[str, dict] = {}
    skipped: dict[str, str] = {}
    captions = bool(getattr(dataset, "has_captions", True))
    for spec in models:
        if spec.modality == "language" and not captions:
            skipped[spec.name] = "the dataset has no captions (images and labels only)"
            say(f"{spec.name}: skipped -- {skipped[spec.name]}")
            continue
        pool = spec.pool
        meta = store.find_many([spec.name], {spec.name: pool}, dataset=dataset)[spec.name]  # sidecar only
        names = list(meta.get("layer_names") or [])
        key = _record_key(meta.get("write_id"), labels, config, pool)
        record_path = _record_path(store, dataset, spec.name, pool)
        record = _read_record(record_path, key) if cache else None
        cached = record is not None
        if record is None:
            (features,) = load_features(
                [spec.name], store, dataset=dataset, pools={spec.name: pool}, q=config.q
            )
            names = list(
                features.info.get("layer_names") or [f"layer.{i}" for i in range(len(features.layers))]
            )
            outcome = probe_layers([layer[used.rows] for layer in features.layers], used.y, config, names)
            record = {
                "key": key,
                "model": spec.name,
                "pool": pool,
                "write_id": meta.get("write_id"),
                "labels": labels.name,
                "layer_names": names,
                "rows": outcome.rows,
                "curve": outcome.curve,
                "info": outcome.info,
            }
            if cache:
                try:
                    record_path.parent.mkdir(parents=True, exist_ok=True)
                    atomic_write_text(record_path, json.dumps(record, indent=1, default=float))
                except OSError:
                    pass  # a read-only store: the result is still returned
        base = {
            "model": spec.name,
            "modality": spec.modality,
            "family": spec.family,
            "params": spec.params if spec.params is not None else meta.get("params"),
            "labels": labels.name,
            "n_items": len(dataset),
            "n": record["info"]["n"],
            "n_classes": record["info"]["n_classes"],
            "n_layers": len(names),
            "chance_balanced": record["info"]["chance_balanced"],
            "majority_rate": record["info"]["majority_rate"],
        }
        rows += [{**base, **row} for row in record["rows"]]
        curves += [{"model": spec.name, "modality": spec.modality, **row} for row in record["curve"]]
        info[spec.name] = {
            "modality": spec.modality,
            "family": spec.family,
            "source": spec.source,
            "pool": pool,
            "write_id": meta.get("write_id"),
            "layer_names": names,
            "input_layers": input_layers(names),
            "cached": cached,
            "probe_info": record["info"],
        }
        best = next(r for r in record["rows"] if r["probe"] == "linear" and r["layer_choice"] == "best")
        say(
            f"{spec.name}: linear probe {best['accuracy']:.3f} (best layer {best['layer_name']}), shuffled control "
            f"{best['control_balanced_accuracy']:.3f} balanced{' (cached)' if cached else ''}"
        )
    table = pd.DataFrame(rows, columns=PROBE_COLUMNS)
    layers = pd.DataFrame(curves, columns=LAYER_COLUMNS)
    provenance = _provenance(dataset, labels, used, coverage, config)
    provenance.update(models=info, skipped=skipped, wall_time_s=round(time.perf_counter() - start, 3))
    return CompetenceResults(table, layers, pd.DataFrame(columns=DOWNSTREAM_COLUMNS), provenance)


def _provenance(dataset: Any, labels: Labels, used: Any, coverage: dict, config: ProbeConfig) -> dict:
    from prh._provenance import run_stamp

    return {
        **run_stamp(("torch", "sklearn")),
        "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint(), "n": len(dataset)},
        "labels": {
            **coverage,
            "n_used": int(len(used.rows)),
            "used_classes": used.counts,
            "dropped_classes": used.dropped,
            "fingerprint": labels.fingerprint(),
        },
        "config": config.to_dict(),
        "views": {"reference_vision": None},
    }


def coverage_lines(results: CompetenceResults) -> list[str]:
    """Plain sentences on the labels: how many items have one, the classes used and left out, the balance."""
    lab = results.provenance.get("labels") or {}
    if not lab:
        return []
    used = lab.get("used_classes") or {}
    dropped = lab.get("dropped_classes") or {}
    lines = [
        f"Labels {lab.get('name')}: {lab.get('n_labelled')} of {lab.get('n_items')} items have one "
        f"({lab.get('source')}); {lab.get('n_used')} items in {len(used)} classes are probed."
    ]
    if used:
        counts = sorted(used.values())
        lines.append(
            "Class balance: "
            + ", ".join(f"{c} {n}" for c, n in sorted(used.items(), key=lambda kv: -kv[1]))
            + f" (smallest/largest = {counts[0] / counts[-1]:.2f})."
        )
    if dropped:
        lines.append(
            "Left out (fewer items than folds): " + ", ".join(f"{c} {n}" for c, n in dropped.items()) + "."
        )
    return lines
