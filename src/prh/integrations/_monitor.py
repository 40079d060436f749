"""The framework-free core of the trainer callbacks: extract a live model's features on the reference items with
prh's own adapters and score them against reference models with :class:`prh.Alignment`.

:class:`AlignmentMonitor` is what :mod:`prh.integrations.hf` and :mod:`prh.integrations.lightning` call; it can
be used directly from any training loop (``monitor.measure(model, tokenizer)`` returns the dict to log).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from prh._validation import ConfigFields, check_choice, check_int, check_names, check_quantile
from prh.errors import InputError

#: The key prefix of everything the callbacks log: ``alignment/<reference>/<metric>`` and its ``/layer``,
#: ``/reference_layer`` and ``/p_value`` companions, plus ``alignment/seconds``.
PREFIX = "alignment"

#: Adapters a live model can be run through (a model already in memory: no weights are loaded).
LIVE_ADAPTERS = ("hf-causal-lm", "hf-text-encoder", "hf-vision")


def _names(value: object, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise InputError(
            f"{name} must be one or more names (a list or a comma-separated string), got {value!r}."
        )
    return tuple(value)


@dataclass(frozen=True)
class MonitorConfig(ConfigFields):
    """What an alignment callback measures and how often (frozen, validated when built).

    Parameters
    ----------
    references : tuple of str
        Reference models: registry names or sets whose features are in ``store`` (``prh extract`` first), or,
        with ``subset="wit_1024"``, the paper's published features (``prh fetch-reference --list``).
    dataset : str, default ``"openmoji"``
        The paired dataset the references were extracted on; its items are what the training model reads
        (``"minhuh/prh"`` with ``subset``).
    n : int or None
        Number of items the references were extracted on (their N).
    store : str, default ``"prh-cache/features"``
        Feature store folder of the references.
    subset : str or None
        ``"wit_1024"`` to score against the published features.
    metrics : tuple of str, default ``("mutual_knn",)``
        Metrics to log (:func:`prh.metrics.names`).
    k : int, default 10
        Neighbours of the metrics that take k.
    every_n_steps : int, default 100
        Measure every this many optimiser steps (and once at the end of training).
    calibrate : int, default 0
        K > 0 adds a layer-aggregated permutation null of K permutations and logs its p-value (K >= 19).
    adapter : str or None
        How to run the training model: ``"hf-causal-lm"``, ``"hf-text-encoder"`` or ``"hf-vision"``; None infers
        it from the model (pixel inputs -> vision, an LM head -> causal LM, else text encoder).
    pool : str or None
        Pooling of the training model's hidden states (``"mean"``, ``"last"``, ``"cls"``); None: the adapter's
        natural default (mean for text, cls for vision).
    batch_size : int, default 32
        Items per forward pass of the extraction.
    q : float, default 0.95
        Outlier clamp quantile of :func:`prh.prepare`, for the training model and the references alike.
    seed : int, default 0
        Seed of the calibration's permutations.
    """

    references: tuple[str, ...] = ()
    dataset: str = "openmoji"
    n: int | None = None
    store: str = "prh-cache/features"
    subset: str | None = None
    metrics: tuple[str, ...] = ("mutual_knn",)
    k: int = 10
    every_n_steps: int = 100
    calibrate: int = 0
    adapter: str | None = None
    pool: str | None = None
    batch_size: int = 32
    q: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        from prh.metrics import names as metric_names
        from prh.models.spec import POOLS
        from prh.stats import min_permutations

        if not isinstance(self.dataset, str) or not self.dataset:
            raise InputError(f"dataset must be a dataset name, got {self.dataset!r}.")
        if not isinstance(self.store, str):
            object.__setattr__(self, "store", str(self.store))
        clean: dict[str, Any] = {
            "references": _names(self.references, "references"),
            "n": None if self.n is None else check_int(self.n, "n", minimum=2),
            "subset": None if self.subset is None else check_choice(self.subset, "subset", ["wit_1024"]),
            "metrics": check_names(self.metrics, "metrics", metric_names()),
            "k": check_int(self.k, "k", minimum=1, hint="neighbours of the kNN metrics and cknna"),
            "every_n_steps": check_int(self.every_n_steps, "every_n_steps", minimum=1),
            "calibrate": check_int(self.calibrate, "calibrate", minimum=0, hint="permutations K; 0 = off"),
            "adapter": None if self.adapter is None else check_choice(self.adapter, "adapter", LIVE_ADAPTERS),
            "pool": None if self.pool is None else check_choice(self.pool, "pool", POOLS),
            "batch_size": check_int(self.batch_size, "batch_size", minimum=1),
            "q": check_quantile(self.q, "q"),
            "seed": check_int(self.seed, "seed"),
        }
        if 0 < clean["calibrate"] < min_permutations(0.05):
            raise InputError(
                f"calibrate={clean['calibrate']}: a permutation p-value needs K >= {min_permutations(0.05)} "
                "permutations to reach 0.05; use 0 to turn it off."
            )
        for name, value in clean.items():
            object.__setattr__(self, name, value)


def infer_adapter(model: torch.nn.Module) -> str:
    """The live adapter for a Hugging Face model: vision for pixel inputs (or a two-tower model's vision
    tower), causal LM when it has an LM head, else a text encoder. Anything else must name ``adapter``."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "main_input_name"):
        raise InputError(
            f"cannot tell how to run a {type(model).__name__}: the callbacks run Hugging Face models "
            f"(transformers.PreTrainedModel); wrap yours or give adapter= one of {list(LIVE_ADAPTERS)}."
        )
    if model.main_input_name == "pixel_values" or getattr(config, "vision_config", None) is not None:
        return "hf-vision"
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    causal = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    head = getattr(model, "get_output_embeddings", lambda: None)()
    if head is not None and (type(model).__name__ in causal or type(model).__name__.endswith("ForCausalLM")):
        return "hf-causal-lm"
    return "hf-text-encoder"


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module, tokenizer: Any) -> Iterator[None]:
    """Eval mode and the tokenizer's padding settings for the extraction; both restored after, even on error."""
    was_training = model.training
    saved = None
    if tokenizer is not None:
        saved = (getattr(tokenizer, "padding_side", None), getattr(tokenizer, "pad_token", None))
    try:
        yield
    finally:
        model.train(was_training)
        if saved is not None:
            side, pad = saved
            if side is not None:
                tokenizer.padding_side = side
            if pad is None and getattr(tokenizer, "pad_token", None) is not None:
                tokenizer.pad_token = None
            elif pad is not None:
                tokenizer.pad_token = pad


def _best(entry: Any) -> tuple[float, tuple[int, int], float | None]:
    """(score, (i_model, j_reference), p-value or None) of one reference's :meth:`prh.Alignment.score` entry."""
    if isinstance(entry, dict):
        return float(entry["score"]), tuple(entry["layers"]), entry.get("p_value")
    return float(entry.score), tuple(entry.layers), entry.p_value


class AlignmentMonitor:
    """Measures a live model's alignment with fixed reference models.

    The references' features are loaded and their per-layer caches built once (on the first call), so each
    :meth:`measure` costs one forward pass over the N reference items (batched, ``torch.no_grad``, eval mode;
    the model's training mode and the tokenizer's padding are restored after) plus one layer sweep per
    reference and metric.

    Parameters
    ----------
    config : :class:`MonitorConfig` (or a mapping of its options).
    """

    def __init__(self, config: MonitorConfig | dict) -> None:
        self.config = MonitorConfig.coerce(config)
        self._alignment = None
        self.history: list[dict[str, float]] = []

    @classmethod
    def from_options(cls, config: MonitorConfig | None, references: Any, options: dict) -> AlignmentMonitor:
        """The monitor of a callback: a ready ``config``, or ``references`` and keyword ``options`` of
        :class:`MonitorConfig` (not both)."""
        if config is not None and (options or references):
            raise InputError("give either config= or references and options, not both.")
        return cls(config if config is not None else MonitorConfig(references=references, **options))

    @property
    def alignment(self):
        """The :class:`prh.Alignment` over the references (built on first use)."""
        if self._alignment is None:
            from prh.align.alignment import Alignment

            c = self.config
            kwargs: dict[str, Any] = {
                "dataset": c.dataset,
                "models": list(c.references),
                "n": c.n,
                "store": c.store,
                "q": c.q,
            }
            if c.subset is not None:
                kwargs["subset"] = c.subset
            self._alignment = Alignment(**kwargs)
            if self._alignment.dataset is None:  # published references: open their items now
                self._alignment.get_data("text")
        return self._alignment

    def features(
        self, model: torch.nn.Module, tokenizer: Any = None, image_transform: Any = None
    ) -> list[torch.Tensor]:
        """Every layer's pooled features of ``model`` on the reference items: a list of (N, D_l) float32 tensors.

        Parameters
        ----------
        model : a Hugging Face model (causal LM, text encoder or vision model), on any device and dtype.
        tokenizer : its tokenizer (language models).
        image_transform : a :class:`prh.models.preprocess.ImageTransform` (vision models; default: the model's
            ``image_size``, resized exactly, no normalisation).
        """
        from prh.models.device import dtype_name
        from prh.models.factory import adapter_class
        from prh.models.spec import ADAPTER_MODALITY, ADAPTER_POOLS, ModelSpec

        if not isinstance(model, torch.nn.Module):
            raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}.")
        name = self.config.adapter or infer_adapter(model)
        modality = ADAPTER_MODALITY[name]
        if modality == "language" and tokenizer is None:
            raise InputError(
                f"a {name} model needs its tokenizer: pass tokenizer= (the trainer's processing_class)."
            )
        pool = self.config.pool or ADAPTER_POOLS[name][0]
        spec = ModelSpec(
            name="training-model", source="(in memory)", adapter=name, modality=modality, pool=pool
        )
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        extra = {"tokenizer": tokenizer} if modality == "language" else {"transform": image_transform}
        with _evaluating(model, tokenizer), torch.no_grad():
            adapter = adapter_class(name)(
                spec, device=str(device), dtype=dtype_name(dtype), model=model, **extra
            )
            result = adapter.extract(self.alignment.dataset, self.config.batch_size, pool, workers=0)
        return [layer.float() for layer in result.layers]

    def measure(
        self, model: torch.nn.Module, tokenizer: Any = None, image_transform: Any = None
    ) -> dict[str, float]:
        """Extract ``model``'s features and score them against every reference with every metric.

        Returns
        -------
        dict of floats: ``alignment/<reference>/<metric>`` (best score over layer pairs),
        ``.../layer`` (the training model's best layer), ``.../reference_layer``, ``.../p_value`` (with
        ``calibrate``) and ``alignment/seconds`` (the wall time of this call). Also appended to :attr:`history`.
        """
        start = time.perf_counter()
        feats = self.features(model, tokenizer, image_transform)
        c = self.config
        out: dict[str, float] = {}
        for metric in c.metrics:
            from prh.metrics import spec as metric_spec

            kw = {"k": c.k} if metric_spec(metric).uses_k else {}
            scores = self.alignment.score(feats, metric=metric, calibrate=c.calibrate, seed=c.seed, **kw)
            for ref, entry in scores.items():
                score, (i, j), p_value = _best(entry)
                key = f"{PREFIX}/{ref}/{metric}"
                out[key] = score
                out[f"{key}/layer"] = float(i)
                out[f"{key}/reference_layer"] = float(j)
                if p_value is not None:
                    out[f"{key}/p_value"] = float(p_value)
        out[f"{PREFIX}/seconds"] = time.perf_counter() - start
        self.history.append(dict(out))
        return out
