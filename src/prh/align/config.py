"""One frozen, validated set of every option that changes the numbers of an alignment run.

:class:`AlignConfig` is shared by the Python API (:func:`~prh.align.run_alignment`, :class:`~prh.align.PairGrid`),
the command line (`prh align`, `prh demo` build one from their flags) and the Ray backend
(:func:`prh.distributed.align_ray` and its tasks receive it). It is validated once, when it is built; its content
(:meth:`AlignConfig.to_dict`) is the options part of the result-cache key (:func:`~prh.align.results_key`), so a
cached result can never be reused for a run with another option.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prh._sweep import SELECT_RULES
from prh._validation import (
    ConfigFields,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_names,
    check_quantile,
)
from prh.errors import InputError
from prh.metrics.knn import NEIGHBORS
from prh.models.spec import POOLS

#: How the CKA-family metrics compute (``path`` of :func:`prh.metrics.cka`): ``auto`` picks ``features`` for the
#: linear kernel above 4096 samples, else ``gram``.
PATHS = ("auto", "gram", "features")


@dataclass(frozen=True)
class AlignConfig(ConfigFields):
    """Every option that changes the numbers of an alignment run (frozen; validated when built).

    ``to_dict()`` / ``from_dict()`` give a round trip through plain JSON values, ``replace(**changes)`` a validated
    copy, ``AlignConfig.coerce(None | config | mapping)`` the config an API was given.

    Parameters
    ----------
    metrics : tuple of str, default ``("mutual_knn", "cknna", "unbiased_cka")``
        Metric names (see :func:`prh.metrics.names`), each once; at least one. A comma-separated string is
        accepted too (``"mutual_knn,cknna"``).
    k : int, default 10
        Neighbours for the metrics that take ``k`` (the kNN metrics, cknna); >= 1 (and < N, checked on the data).
    calibrate : int, default 0
        Permutations K of the permutation null (0 = off). When on, K must reach ``alpha``:
        K >= ceil(1/alpha) - 1 (e.g. 19 for alpha=0.05). Adds ``tau``, ``p_value``, ``calibrated_score``.
    calibrate_metrics : tuple of str or None, default None
        The metrics that get statistics (calibration and bootstrap); None = all of ``metrics``, others get NaN.
    calibrate_within : bool, default True
        Statistics also for pairs of the same modality (False: cross-modal pairs and controls only).
    bootstrap : int, default 0
        Subsamples B for a confidence interval of each best score (0 = off, else >= 2). Adds ``ci_low``,
        ``ci_high``.
    alpha : float, default 0.05
        Significance level of the calibration, 0 < alpha < 1.
    seed : int, default 0
        Seed of the permutations, the subsamples and the shuffled control; results are deterministic for a seed.
    q : float, default 0.95
        Outlier clamp quantile of :func:`prh.prepare`, 0 < q <= 1 (1 = no clamp), applied to stored features
        when they are loaded.
    pool : str or None, default None
        Pooling the features were stored with (``"mean"``, ``"last"``, ``"cls"``); None = each model's default.
    shuffle_control : bool, default False
        Also score every cross-modal pair with the language model's rows shuffled (one fixed permutation from
        ``seed``): the chance level of each score.
    select : str, default ``"same-items"``
        Layer selection: ``"same-items"`` reports the best layer pair scored on the items that chose it (biased
        upward); ``"held-out"`` also chooses the best pair on one random half of the items and scores it on the
        other, over ``select_splits`` splits (see :func:`prh._sweep.held_out_selection`; adds ``held_out``,
        ``held_out_low``, ``held_out_high``, ``same_items_half``, ``held_out_layer_x``, ``held_out_layer_y``,
        ``held_out_share``).
    select_splits : int, default 20
        Random half splits S of held-out selection (>= 1).
    neighbors : str, default ``"exact"``
        Neighbour search of the metrics that take ``neighbors`` (the kNN metrics): ``"exact"``, or
        ``"approximate"`` (FAISS HNSW, for large N; its measured recall is reported). Passed only to those metrics;
        at least one of ``metrics`` must take it when it is not the default.
    path : str, default ``"auto"``
        How the metrics that take ``path`` (cka, unbiased_cka, debiased_cka, rv) compute: ``"gram"`` ((N, N)
        kernels), ``"features"`` (feature-space products, no (N, N) matrix; linear kernel) or ``"auto"`` (each
        metric's own choice by N). Same numbers to float rounding; at least one of ``metrics`` must take it when it
        is not ``"auto"``.

    Raises
    ------
    InputError
        A value of the wrong type or out of range; the message names the field and the values it accepts.

    Examples
    --------
    >>> from prh.align import AlignConfig
    >>> config = AlignConfig(metrics="mutual_knn,cknna", k=5, calibrate=1000)
    >>> config.metrics, config.k
    (('mutual_knn', 'cknna'), 5)
    >>> AlignConfig(k=0)
    Traceback (most recent call last):
    ...
    prh.errors.InputError: k=0 must be at least 1 (neighbours of the kNN metrics and cknna).
    """

    #: the metrics of a run when none are given: the paper's three (the first is :data:`prh.metrics.DEFAULT_METRIC`)
    metrics: tuple[str, ...] = ("mutual_knn", "cknna", "unbiased_cka")
    k: int = 10
    calibrate: int = 0
    calibrate_metrics: tuple[str, ...] | None = None
    calibrate_within: bool = True
    bootstrap: int = 0
    alpha: float = 0.05
    seed: int = 0
    q: float = 0.95
    pool: str | None = None
    shuffle_control: bool = False
    select: str = "same-items"
    select_splits: int = 20
    neighbors: str = "exact"
    path: str = "auto"

    def __post_init__(self) -> None:
        from prh.metrics import names as metric_names
        from prh.stats import min_permutations

        known = metric_names()
        clean: dict[str, Any] = {
            "metrics": check_names(self.metrics, "metrics", known),
            "k": check_int(self.k, "k", minimum=1, hint="neighbours of the kNN metrics and cknna"),
            "calibrate": check_int(
                self.calibrate, "calibrate", minimum=0, hint="a number of permutations K; 0 = off"
            ),
            "calibrate_metrics": (
                None
                if self.calibrate_metrics is None
                else check_names(self.calibrate_metrics, "calibrate_metrics", known, allow_empty=True)
            ),
            "calibrate_within": check_bool(self.calibrate_within, "calibrate_within"),
            "bootstrap": check_int(
                self.bootstrap, "bootstrap", minimum=0, hint="a number of subsamples B; 0 = off, else >= 2"
            ),
            "alpha": check_float(
                self.alpha,
                "alpha",
                0.0,
                1.0,
                inclusive=(False, False),
                hint="a significance level strictly between 0 and 1",
            ),
            "seed": check_int(self.seed, "seed"),
            "q": check_quantile(self.q, "q"),
            "pool": None if self.pool is None else check_choice(self.pool, "pool", POOLS),
            "shuffle_control": check_bool(self.shuffle_control, "shuffle_control"),
            "select": check_choice(self.select, "select", SELECT_RULES),
            "select_splits": check_int(
                self.select_splits,
                "select_splits",
                minimum=1,
                hint="random half splits of held-out selection",
            ),
            "neighbors": check_choice(self.neighbors, "neighbors", NEIGHBORS),
            "path": check_choice(self.path, "path", PATHS),
        }
        _check_applies(clean, "neighbors", "exact")
        _check_applies(clean, "path", "auto")
        if clean["bootstrap"] == 1:
            raise InputError(
                "bootstrap=1 is too few subsamples for an interval; use bootstrap >= 2 (0 = off)."
            )
        need = min_permutations(clean["alpha"])
        if 0 < clean["calibrate"] < need:
            raise InputError(
                f"calibrate={clean['calibrate']} permutations cannot reach alpha={clean['alpha']}: the smallest "
                f"possible p-value is 1/(K+1). Use calibrate >= {need} (e.g. 1000), or calibrate=0 to turn it off."
            )
        for (
            name,
            value,
        ) in clean.items():  # the normalised values (tuples, ints, floats) on the frozen instance
            object.__setattr__(self, name, value)


def _check_applies(clean: dict[str, Any], option: str, default: str) -> None:
    """A non-default ``option`` must be an option of at least one of the run's metrics (else it would be ignored)."""
    from prh.metrics import names as metric_names
    from prh.metrics import spec as metric_spec

    if clean[option] == default:
        return
    if any(option in metric_spec(m).options() for m in clean["metrics"]):
        return
    takers = [m for m in metric_names() if option in metric_spec(m).options()]
    raise InputError(
        f"{option}={clean[option]!r} applies to none of the metrics {list(clean['metrics'])}: it is an option of "
        f"{takers}. Add one of them to metrics, or leave {option} at {default!r}."
    )


def metric_options(config: AlignConfig, metric: str) -> dict[str, Any]:
    """The options ``config`` gives ``metric``: ``k`` when the metric has a ``k`` default, and ``neighbors`` /
    ``path`` when they are not the defaults and the metric takes them (defaults stay implicit, as in
    :func:`prh.sweep`)."""
    from prh.metrics import spec as metric_spec

    spec = metric_spec(metric)
    out: dict[str, Any] = {"k": config.k} if "k" in spec.defaults else {}
    accepted = spec.options()
    if config.neighbors != "exact" and "neighbors" in accepted:
        out["neighbors"] = config.neighbors
    if config.path != "auto" and "path" in accepted:
        out["path"] = config.path
    return out
