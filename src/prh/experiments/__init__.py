"""The paper's other experiments, one module each, run by `prh experiment NAME`.

Each experiment composes datasets, the feature store, the alignment engine, statistics and the report's building
blocks, and writes into the results folder: ``<out>/experiments/<name>/`` (results.json, CSV tables, figures) and
its report section ``<out>/sections/<order>-<name>.html`` (+ ``.md``), which :func:`prh.report.build_report`
includes without importing this package.

- ``colors`` (:mod:`.colors`) — kernels over named colours from CIELAB, pixel co-occurrence, language and vision
  models agree (the paper's colour study);
- ``caption-density`` (:mod:`.caption_density`) — denser captions align better with vision models (Appendix E);
- ``test-time-averaging`` (:mod:`.averaging`) — averaging features over more views and captions raises
  cross-modal alignment along a saturating curve (VideoPRH).
- ``gallery-size`` (:mod:`.gallery_size`) — cross-modal alignment (raw, calibrated, chance) against the size of the
  gallery, one-to-one and many-to-many (Koepke et al. 2026).

Adding one: write ``prh/experiments/<module>.py`` with a frozen config dataclass, ``run(context, config)`` and
``SPEC = ExperimentSpec(...)`` (see :mod:`.base`), and add one line to :data:`EXPERIMENTS`; the command line and the
report pick it up.

>>> from prh.experiments import RunOptions, run
>>> result = run("colors", RunOptions(models="minilm-l6,effnet-lite0"), {"permutations": 200})
>>> result.summary["vs_cielab"]["minilm-l6"]["mutual_knn"]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from prh.errors import InputError

if TYPE_CHECKING:
    from prh.experiments.base import Context, ExperimentResult, ExperimentSpec, RunOptions

#: Every experiment: command-line name -> module defining ``SPEC``. One line per experiment.
EXPERIMENTS: dict[str, str] = {
    "colors": "prh.experiments.colors",
    "caption-density": "prh.experiments.caption_density",
    "test-time-averaging": "prh.experiments.averaging",
    "gallery-size": "prh.experiments.gallery_size",
    "blind-match": "prh.experiments.blind_match",
}

__all__ = [
    "EXPERIMENTS",
    "Context",
    "ExperimentResult",
    "ExperimentSpec",
    "RunOptions",
    "get",
    "names",
    "run",
    "spec",
]


_BASE_NAMES = ("Context", "ExperimentResult", "ExperimentSpec", "RunOptions")


def __getattr__(name: str):
    """The building blocks of :mod:`.base`, imported on first use (so that listing the experiments loads no torch)."""
    if name in _BASE_NAMES:
        from prh.experiments import base

        return getattr(base, name)
    raise AttributeError(f"module 'prh.experiments' has no attribute {name!r}")


def names() -> list[str]:
    """The registered experiments' names."""
    return list(EXPERIMENTS)


def spec(name: str) -> ExperimentSpec:
    """The :class:`ExperimentSpec` of experiment ``name`` (its config class, ``run`` and description).

    Raises
    ------
    InputError
        Unknown name; the message suggests the closest and lists them all.
    """
    from prh._validation import suggest

    if name not in EXPERIMENTS:
        raise InputError(
            f"unknown experiment {name!r}.{suggest(str(name), EXPERIMENTS)} The experiments are: "
            f"{', '.join(EXPERIMENTS)}."
        )
    found = importlib.import_module(EXPERIMENTS[name]).SPEC
    if found.name != name:  # pragma: no cover - a registry typo
        raise InputError(
            f"experiment module {EXPERIMENTS[name]} defines {found.name!r}, registered as {name!r}."
        )
    return found


#: ``get(name)``: the registry verb shared with metrics, models and the zoo; here the spec itself (it runs).
get = spec


def run(
    name: str,
    options: RunOptions | Mapping[str, Any] | None = None,
    config: Any = None,
    log: Callable[[str], object] | None = None,
) -> ExperimentResult:
    """Run experiment ``name`` and write its results, figures and report section.

    Parameters
    ----------
    name : str
        One of :func:`names`.
    options : RunOptions or mapping, optional
        Models, dataset, N, store, output folder, device, seed (each None = the experiment's default).
    config : the experiment's config, a mapping of its fields, or None (defaults)
    log : callable, optional
        Receives one line per event (skipped models, cached features).

    Returns
    -------
    ExperimentResult
    """
    from prh.experiments.base import Context, RunOptions

    found = spec(name)
    options = RunOptions.coerce(options)
    config = found.config.coerce(config)
    return found.run(Context(found, options, log), config)
