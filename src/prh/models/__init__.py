"""Models: a registry of named models and sets, and one adapter per model family that returns per-layer pooled
features.

Registry verbs (shared with :mod:`prh.metrics`, :mod:`prh.experiments` and :mod:`prh.zoo`): ``names()``,
``get(name)`` (the :class:`ModelSpec`); ``spec(name)`` is :func:`prh.models.registry.spec`, since
``prh.models.spec`` is the module defining :class:`ModelSpec`.

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
    get,
    get_model,
    load_user_config,
    model_names,
    model_set,
    names,
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
    "get",
    "get_model",
    "load_user_config",
    "model_names",
    "model_set",
    "names",
    "reset_registry",
    "resolve_models",
    "set_info",
    "set_names",
]
