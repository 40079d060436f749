"""Imported models in an alignment run: their names resolve from the feature store, models-file entries with
``adapter = "imported"`` are imported on the way, and repeated measurements get a noise ceiling per metric."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from prh.align.config import AlignConfig
from prh.errors import InputError
from prh.features import ensure_imported, imported_specs


def resolve_names(models: str | Sequence[str], store: Any = None) -> list[Any]:
    """Model specs for comma-separated registry model / set names, names of models imported into ``store``
    (`prh import`), and the paper's published features (``published``, ``published-language``,
    ``published-vision``, ``platonic``, ``published/<entry>``: :mod:`prh.features.published`); a registered name
    wins over an imported one, the order is kept, duplicates are dropped."""
    from prh.features.published import is_published, published_specs
    from prh.models import resolve_models
    from prh.models.registry import model_names, set_names

    parts = models if isinstance(models, (list, tuple)) else str(models).split(",")
    parts = [p.strip() for p in parts if p and p.strip()]
    if any(is_published(part) for part in parts):
        out_published: dict[str, Any] = {}
        for part in parts:
            found = published_specs(part) if is_published(part) else resolve_names(part, store)
            for spec in found:
                out_published.setdefault(spec.name, spec)
        return list(out_published.values())
    imported = imported_specs(store) if store is not None else {}
    if not parts or not imported:
        return resolve_models(models if isinstance(models, str) else list(models))
    known = set(model_names()) | set(set_names())
    out: dict[str, Any] = {}
    for part in parts:
        specs = [imported[part]] if part in imported and part not in known else resolve_models(part)
        for spec in specs:
            out.setdefault(spec.name, spec)
    return list(out.values())


def import_declared(specs: Sequence[Any], dataset: Any, store: Any) -> None:
    """Import the models-file entries with ``adapter = "imported"`` that are missing from ``store`` (or whose files
    changed); needs the dataset itself (its item ids), not only its name."""
    declared = [s for s in specs if getattr(s, "adapter", None) == "imported" and s.source]
    if not declared:
        return
    if dataset is None:
        missing = [s.name for s in declared if not store.entries() or s.name not in imported_specs(store)]
        if missing:
            raise InputError(
                f"imported model(s) {missing} are not in the store and the dataset cannot be opened here to match "
                f"their rows; run `prh import` where it can."
            )
        return
    ensure_imported(declared, dataset, store)


def noise_ceilings(features: Sequence[Any], config: AlignConfig) -> dict[str, dict[str, dict]]:
    """``{model: {metric: NoiseCeiling.to_dict()}}`` for every model with repeated measurements (see
    :func:`prh.stats.noise_ceiling`), on the items the run uses and with the run's ``q``, ``k`` and ``seed``."""
    from prh.stats import noise_ceiling

    out: dict[str, dict[str, dict]] = {}
    for f in features:
        if len(getattr(f, "repeats", ())) < 2:
            continue
        stacked = torch.stack(list(f.repeats))
        out[f.name] = {
            metric: noise_ceiling(stacked, metric, seed=config.seed, q=config.q, k=config.k).to_dict()
            for metric in config.metrics
        }
    return out


__all__ = ["import_declared", "noise_ceilings", "resolve_names"]
