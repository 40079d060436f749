"""Score your own model against reference models, like the reference's ``platonic.Alignment``.

>>> import prh
>>> platonic = prh.Alignment(dataset="openmoji", models="minilm-l6,mpnet-base", n=1024)   # doctest: +SKIP
>>> texts = platonic.get_data("text")             # the captions, in the reference features' order
>>> feats = my_language_model_features(texts)     # (N, L, D) tensor or a list of (N, D_l) layers
>>> platonic.score(feats, metric="mutual_knn", k=10)
{'minilm-l6': {'score': 0.41, 'layers': (5, 3)}, ...}

Reference features come from the feature store (run `prh extract` first); their per-layer caches are built once
per metric and reused for every call of :meth:`Alignment.score`, so it is cheap enough inside a training loop.
"""

from __future__ import annotations

import os
from typing import Any

from prh._validation import check_choice, check_quantile
from prh.align.engine import ModelFeatures, load_features
from prh.align.pipeline import open_dataset, resolve
from prh.errors import InputError
from prh.prepare import prepare
from prh.sweep import LayerCaches, as_layers, cache_layers, sweep_caches


class Alignment:
    """Reference models' stored features on one paired dataset, ready to score new features against.

    Parameters
    ----------
    dataset : dataset name the references were extracted on (``"openmoji"``, ``"wit_1024"``, a folder, ...).
    models : comma-separated model and/or set names (see `prh models`), e.g. ``"offline"``.
    n : number of items the features were extracted on.
    store : feature store folder (default ``prh-cache/features``).
    modality : keep only ``"language"`` or ``"vision"`` references (default: all).
    q : outlier clamp quantile of :func:`prh.prepare` (0 < q <= 1, default 0.95; the same field as
        :attr:`prh.align.AlignConfig.q`), applied to references and to scored features alike.
    device : where to compute (default CPU; ``"cuda"`` keeps caches on the GPU).
    """

    def __init__(
        self,
        dataset: str = "openmoji",
        models: str = "offline",
        n: int | None = None,
        store: str | os.PathLike = "prh-cache/features",
        modality: str | None = None,
        q: float = 0.95,
        device: str = "cpu",
    ) -> None:
        from prh.features.store import FeatureStore

        q = check_quantile(q, "q")  # the same check as AlignConfig.q, before anything is loaded
        specs = resolve(models)
        if modality is not None:
            modality = check_choice(modality, "modality", ["language", "vision"])
            specs = [s for s in specs if s.modality == modality]
            if not specs:
                raise InputError(f"none of the models {models!r} is a {modality} model.")
        self.dataset = open_dataset(dataset, n)
        self.q = q
        self.device = device
        self.references: list[ModelFeatures] = load_features(
            [s.name for s in specs],
            FeatureStore(store),
            dataset=self.dataset,
            dataset_name=None if self.dataset is not None else dataset,
            n=n,
            pools={s.name: s.pool for s in specs},
            q=q,
        )
        self.n = self.references[0].layers[0].shape[0]
        self._caches: dict[tuple[str, tuple], list[tuple[str, LayerCaches]]] = {}

    def get_data(self, modality: str) -> list[Any]:
        """The paired inputs in the references' row order: captions (``"text"``) or PIL images (``"image"``)."""
        modality = check_choice(modality, "modality", ["text", "image"])
        if self.dataset is None:
            raise InputError(
                "the dataset cannot be opened here (offline?), so its items are unavailable; "
                "scoring stored features still works."
            )
        if modality == "text":
            return self.dataset.texts()
        return [self.dataset.image(i) for i in range(len(self.dataset))]

    def _reference_caches(self, metric: str, kw: dict) -> list[tuple[str, LayerCaches]]:
        key = (metric, tuple(sorted(kw.items())))
        if key not in self._caches:
            self._caches[key] = [
                (ref.name, cache_layers(ref.layers, metric, name=ref.name, device=self.device, **kw))
                for ref in self.references
            ]
        return self._caches[key]

    def score(
        self, feats: Any, metric: str = "mutual_knn", prepare_features: bool = True, **metric_kw: Any
    ) -> dict:
        """Best-layer alignment of ``feats`` with every reference model.

        Parameters
        ----------
        feats : (N, L, D) or (N, D) tensor/array, or a list of (N, D_l) layers, rows in :meth:`get_data` order.
        metric : metric name; ``**metric_kw`` its options (e.g. ``k=10``).
        prepare_features : apply :func:`prh.prepare` (same q as the references) first.

        Returns
        -------
        ``{reference name: {"score": float, "layers": (i_feats, j_reference)}}``
        """
        x = prepare(feats, q=self.q) if prepare_features else feats
        rows = as_layers(x, "feats")[0].shape[0]
        if rows != self.n:
            raise InputError(
                f"feats has N={rows} rows but the references have N={self.n}; use get_data() items."
            )
        mine = cache_layers(x, metric, name="feats", device=self.device, **metric_kw)
        out = {}
        for name, ref in self._reference_caches(metric, mine.params):
            result = sweep_caches(mine, ref)
            out[name] = {"score": result.best, "layers": result.best_layers}
        return out
