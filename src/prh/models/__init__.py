"""Models: a registry of named models and sets, and one adapter per model family that returns per-layer pooled
features.

>>> from prh.models import resolve_models, build_adapter
>>> specs = resolve_models("offline")                      # doctest: +SKIP
>>> result = build_adapter(specs[0]).extract(dataset, 16)  # doctest: +SKIP
"""

from __future__ import annotations

from prh.models._availability import availability
from prh.models.base import Adapter
from prh.models.factory import build_adapter
from prh.models.registry import (
    all_models,
    get_model,
    load_user_config,
    model_names,
    model_set,
    reset_registry,
    resolve_models,
    set_info,
    set_names,
)
from prh.models.result import FeatureResult
from prh.models.spec import ModelSpec

__all__ = [
    "Adapter",
    "FeatureResult",
    "ModelSpec",
    "all_models",
    "availability",
    "build_adapter",
    "get_model",
    "load_user_config",
    "model_names",
    "model_set",
    "reset_registry",
    "resolve_models",
    "set_info",
    "set_names",
]
