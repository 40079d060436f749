"""The metric registry: one :class:`MetricSpec` per alignment metric.

A metric is defined by two pure functions so that a single pair and a whole layer sweep share one implementation:

* ``layer_cache(x, **kw)`` does all per-layer work once (neighbour lists, centred Gram matrices, SVD bases);
* ``grid(caches_x, caches_y, **kw)`` scores every (x layer, y layer) pair from the caches -> (Lx, Ly) float64.

``prh.metrics.<name>(A, B)`` is ``grid([cache(A)], [cache(B)])[0, 0]``; ``prh.sweep`` calls ``layer_cache`` once
per layer and ``grid`` once.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from prh._validation import suggest
from prh.errors import InputError
from prh.memory import require_memory
from prh.metrics.kernels import fit_scale
from prh.metrics.properties import MetricProperties


@dataclass(frozen=True)
class MetricSpec:
    """Everything the toolkit needs to know about one metric.

    Attributes
    ----------
    name : registry name, e.g. ``"mutual_knn"``.
    func : the public function ``func(A, B, **kw) -> float``.
    layer_cache : ``(x: (N, D) tensor, **kw) -> cache`` per-layer precomputation.
    grid : ``(caches_x, caches_y, **kw) -> (Lx, Ly) float64 tensor``.
    check_kwargs : ``(n: int, **kw) -> dict`` validates options for N samples and fills defaults.
    value_range : (low, high) of possible scores; 1.0 means identical.
    symmetric : whether ``f(A, B) == f(B, A)``.
    uses_k : whether the metric takes a neighbour count ``k``.
    bounded : whether 1.0 is the maximum (used by calibration: s_max = 1).
    null_expectation : ``(n, kw) -> float`` expected score of independent inputs, or None if unknown.
    description : one line for ``prh score --help`` and the docs.
    layer_caches : optional ``(layers, **kw) -> list of caches``, the same caches as ``layer_cache`` built for many
        layers at once (e.g. all Gram matrices of a chunk first, see :func:`prh.metrics.kernels.map_grams`).
    permute_cache : optional ``(cache, perm, inv) -> cache``, the cache of ``Y[perm]`` re-indexed from the cache of
        ``Y`` (``inv`` the inverse permutation); lets permutation nulls skip recomputing caches.
    null_engine : optional ``(xs, ys, params) -> NullEngine | None``, a batched null-grid engine
        (:class:`prh.metrics.null.NullEngine`) for the caches ``xs``, ``ys``; None when it does not fit in memory.
    gram_cache : optional ``(gram, **kw) -> cache | None``, the layer cache built from the layer's linear Gram
        matrix ``x @ x.T`` (lets row subsamples reuse one Gram matrix per layer); None when these options need the
        features themselves.
    cache_bytes : optional ``(n, d, params) -> bytes`` of one layer's cache plus the transient memory of building
        it (N samples, D features, checked options); :func:`prh._sweep.cache_layers` refuses a request that cannot
        fit before allocating anything.
    memory_hint : what to do when the caches would not fit (e.g. "use path='features'"), for that error.
    cache_info : optional ``(cache) -> dict`` of diagnostics a sweep reports next to its scores (e.g. the measured
        recall of approximate neighbour lists).
    display_name : how reports and figures name the metric (``"mutual kNN"``); default ``name``.
    properties : the metric's documented properties (:class:`prh.metrics.properties.MetricProperties`: definition,
        range, invariances, behaviour under independence, cost, when to prefer it), its row of the docs/metrics.md
        table and of :data:`prh.metrics.PROPERTIES`; its ``name`` is filled in by :func:`register`.
    scale_free : optional ``(params) -> bool``: whether, with these checked options, the score is unchanged when
        either input is multiplied by a positive constant. Such metrics get features whose inner products would
        overflow or underflow rescaled by a power of two (:func:`prh.metrics.kernels.fit_scale`); the others get a
        clear error for them. None: the score depends on the scale.
    """

    name: str
    func: Callable[..., float]
    layer_cache: Callable[..., Any]
    grid: Callable[..., torch.Tensor]
    check_kwargs: Callable[..., dict]
    value_range: tuple[float, float]
    symmetric: bool
    uses_k: bool
    bounded: bool = True
    null_expectation: Callable[[int, dict], float] | None = None
    description: str = ""
    defaults: dict = field(default_factory=dict)
    layer_caches: Callable[..., list] | None = None
    permute_cache: Callable[[Any, torch.Tensor, torch.Tensor], Any] | None = None
    null_engine: Callable[..., Any] | None = None
    gram_cache: Callable[..., Any] | None = None
    cache_bytes: Callable[[int, int, dict], float] | None = None
    memory_hint: str = "use fewer samples (rows) or fewer layers at once"
    cache_info: Callable[[Any], dict] | None = None
    display_name: str = ""
    properties: MetricProperties | None = None
    scale_free: Callable[[dict], bool] | None = None

    @property
    def label(self) -> str:
        """The name reports and figures show: ``display_name``, else ``name``."""
        return self.display_name or self.name

    def chance(self, n: int, params: dict | None = None) -> float | None:
        """The expected score of independent inputs at ``n`` samples and options ``params`` (the chance level a
        report draws), or None when the metric has no closed form (``null_expectation`` is None)."""
        if self.null_expectation is None:
            return None
        return float(self.null_expectation(int(n), dict(params or {})))

    def __post_init__(self) -> None:
        if not getattr(self.check_kwargs, "_checks_names", False):
            object.__setattr__(self, "check_kwargs", _named_options(self.name, self.check_kwargs))

    def options(self) -> dict[str, Any]:
        """Every option ``check_kwargs`` accepts, with its default (``defaults`` lists the commonly set ones)."""
        params = list(inspect.signature(self.check_kwargs).parameters.values())[1:]  # after n
        return {p.name: p.default for p in params if p.kind is p.POSITIONAL_OR_KEYWORD}

    def check_memory(self, layers: list[torch.Tensor], params: dict, name: str) -> None:
        """Refuse (:class:`InputError`) caching ``layers`` when their caches would not fit in memory."""
        if self.cache_bytes is None or not layers:
            return
        n = layers[0].shape[0]
        need = sum(self.cache_bytes(n, layer.shape[-1], params) for layer in layers)
        require_memory(
            need,
            f"caching {len(layers)} layer(s) of {name} for {self.name} at N={n} {params}",
            self.memory_hint,
            layers[0].device,
        )

    def fit_scale(self, layers: list[torch.Tensor], params: dict) -> list[torch.Tensor]:
        """``layers`` with any whose inner products would overflow or underflow rescaled (scale-free metrics) or
        refused (:func:`prh.metrics.kernels.fit_scale`); ordinary layers are returned as they are."""
        free = self.scale_free is not None and bool(self.scale_free(params))
        return [fit_scale(x, free) for x in layers]

    def caches(self, layers: list[torch.Tensor], **kw: Any) -> list:
        """``[layer_cache(x, **kw) for x in layers]``, through the metric's batched form when it has one (layers of
        extreme magnitude first rescaled or refused, see :meth:`fit_scale`)."""
        layers = self.fit_scale(layers, kw)
        if self.layer_caches is not None:
            return self.layer_caches(layers, **kw)
        return [self.layer_cache(layer, **kw) for layer in layers]


def _named_options(metric: str, check: Callable[..., dict]) -> Callable[..., dict]:
    """``check`` that first refuses an option it does not take with an :class:`InputError` naming the metric, the
    option, the closest known option and all of them (instead of Python's TypeError)."""
    import functools

    params = list(inspect.signature(check).parameters.values())[1:]
    known = [p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]

    @functools.wraps(check)
    def checked(n: int, **kw: Any) -> dict:
        unknown = [key for key in kw if key not in known]
        if unknown:
            raise InputError(
                f"{unknown[0]!r} is not an option of metric {metric!r}.{suggest(unknown[0], known)} "
                f"Its options: {known or 'none'}."
            )
        return check(n, **kw)

    checked._checks_names = True  # type: ignore[attr-defined]
    return checked


def _keyword_checked(metric: str, func: Callable[..., float]) -> Callable[..., float]:
    """``func`` refusing a keyword it does not take with an :class:`InputError` that names it and suggests the
    closest one (instead of Python's TypeError); everything else is passed through unchanged."""
    import functools

    params = inspect.signature(func).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return func
    known = [name for name, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][2:]

    @functools.wraps(func)
    def checked(*args: Any, **kw: Any) -> float:
        unknown = [key for key in kw if key not in params]
        if unknown:
            raise InputError(
                f"{metric}() got the unknown keyword {unknown[0]!r}.{suggest(unknown[0], known)} "
                f"Its keywords: {known or 'none'}."
            )
        return func(*args, **kw)

    checked._checks_names = True  # type: ignore[attr-defined]
    return checked


def any_scale(params: dict) -> bool:
    """``MetricSpec.scale_free`` of a metric that no option makes depend on the scale of its inputs."""
    return True


_REGISTRY: dict[str, MetricSpec] = {}

#: The metric used when none is named (the paper's main metric); statistics code takes its default from here.
DEFAULT_METRIC = "mutual_knn"


def register(spec: MetricSpec) -> MetricSpec:
    """Add a metric to the registry (names are unique); returns the spec as registered: its properties row named
    after it, and its function (also rebound in its module) refusing unknown keywords with an InputError."""
    if spec.name in _REGISTRY:
        raise ValueError(f"metric {spec.name!r} is already registered")
    if not getattr(spec.func, "_checks_names", False):
        # the public function refuses an unknown keyword with an InputError; rebound in its module, so that
        # ``prh.metrics.<name>`` and ``get(name)`` are the same checked function
        checked = _keyword_checked(spec.name, spec.func)
        module = sys.modules.get(spec.func.__module__)
        if module is not None and getattr(module, spec.func.__name__, None) is spec.func:
            setattr(module, spec.func.__name__, checked)
        spec = dataclasses.replace(spec, func=checked)
    if spec.properties is not None and spec.properties.name != spec.name:
        if spec.properties.name:
            raise ValueError(f"metric {spec.name!r}: its properties row is named {spec.properties.name!r}")
        spec = dataclasses.replace(spec, properties=dataclasses.replace(spec.properties, name=spec.name))
    _REGISTRY[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a metric added with :func:`register` (tests, notebooks); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def specs() -> list[MetricSpec]:
    """The :class:`MetricSpec` of every registered metric, in registration order."""
    return list(_REGISTRY.values())


def names() -> list[str]:
    """Names of all registered metrics, in registration order."""
    return list(_REGISTRY)


def spec(name: str) -> MetricSpec:
    """The :class:`MetricSpec` of ``name``; unknown names raise :class:`InputError` with the closest names."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise InputError(f"unknown metric {name!r}.{suggest(str(name), _REGISTRY)} Known metrics: {names()}.")
    return _REGISTRY[name]


def get(name: str) -> Callable[..., float]:
    """The public function of metric ``name`` (``f(A, B, **kw) -> float``)."""
    return spec(name).func
