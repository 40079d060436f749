"""Score your own model against reference models, like the reference's ``platonic.Alignment``.

Against the paper's published WIT-1024 features (a drop-in for ``platonic.Alignment``; the files are fetched into
the feature store on first use, safely: see :mod:`prh.features.reference`):

>>> import prh
>>> platonic = prh.Alignment(dataset="minhuh/prh", subset="wit_1024", models=["dinov2_g", "clip_h"])  # doctest: +SKIP
>>> texts = platonic.get_data("text")             # the 1,024 WIT captions, in the features' order
>>> platonic.score(my_llm_features(texts), metric="mutual_knn", topk=10)                            # doctest: +SKIP
{'dinov2_g': (0.16, (23, 39)), 'clip_h': (0.17, (22, 31))}

Against features prh extracted itself (``prh extract`` first):

>>> platonic = prh.Alignment(dataset="openmoji", models="minilm-l6,mpnet-base", n=1024)   # doctest: +SKIP
>>> platonic.score(feats, metric="mutual_knn", k=10)
{'minilm-l6': {'score': 0.41, 'layers': (5, 3)}, ...}

The references' per-layer caches are built once per metric and options and reused for every call of
:meth:`Alignment.score`, so it is cheap enough inside a training loop.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from prh._prepare import prepare
from prh._sweep import LayerCaches, Sweep, as_layers, cache_layers, sweep_caches
from prh._validation import (
    check_bool,
    check_choice,
    check_int,
    check_models_arg,
    check_path_arg,
    check_quantile,
    check_str,
)
from prh.align._imported import import_declared, resolve_names
from prh.align.engine import ModelFeatures, load_features
from prh.align.pipeline import open_dataset
from prh.errors import InputError
from prh.metrics import spec as metric_spec

#: dtype names :meth:`Alignment.score` takes for ``dtype=`` (rounding of the clamped features, as the reference's
#: ``dtype`` argument does; arithmetic stays float32/float64).
DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ReferenceScore(tuple):
    """One reference model's result, the same type in both modes of :meth:`Alignment.score` (frozen).

    It unpacks and compares like the reference's ``(score, (i, j))`` tuple (``score, (i, j) = result["dinov2_l"]``);
    ``i`` indexes the scored features' layers and ``j`` the reference model's. The keys of the older dict form
    still read: ``result["score"]``, ``result["layers"]``, ``result["p_value"]``, ``result["calibrated"]``.

    Attributes
    ----------
    score : float, the best score over all layer pairs.
    layers : (i, j), the best layer pair (the first one on ties; also when every score is <= 0, where the reference
        returns None).
    sweep : :class:`prh._sweep.Sweep`, the whole (L_feats, L_reference) grid.
    calibration : :class:`prh.stats._calibrate.CalibrationResult` when ``calibrate=K`` was asked, else None.
    p_value : the calibration's permutation p-value (max over the layer grid), or None.
    calibrated : the calibrated score of the best layer pair, or None without calibration.
    """

    #: the string keys the result answers (the dict form :meth:`Alignment.score` returned for store references)
    KEYS = ("score", "layers", "p_value", "calibrated")

    def __new__(cls, sweep: Sweep, calibration: Any = None) -> ReferenceScore:
        obj = super().__new__(cls, (sweep.best, sweep.best_layers))
        object.__setattr__(obj, "sweep", sweep)
        object.__setattr__(obj, "calibration", calibration)
        return obj

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ReferenceScore is frozen; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ReferenceScore is frozen; cannot delete {name!r}")

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            if key not in self.KEYS:
                raise KeyError(f"{key!r}: a ReferenceScore has {list(self.KEYS)} (or index it as a tuple)")
            return getattr(self, key)
        return super().__getitem__(key)

    @property
    def score(self) -> float:
        return tuple.__getitem__(self, 0)

    @property
    def layers(self) -> tuple[int, int]:
        return tuple.__getitem__(self, 1)

    @property
    def p_value(self) -> float | None:
        return None if self.calibration is None else float(self.calibration.p_value)

    @property
    def calibrated(self) -> float | None:
        return None if self.calibration is None else float(self.calibration.calibrated)

    def __getnewargs__(self):  # copy/deepcopy rebuild from the sweep
        return (self.sweep, self.calibration)


def _dtype(value: object) -> torch.dtype | None:
    if value is None:
        return None
    if isinstance(value, torch.dtype):
        value = str(value).replace("torch.", "")
    name = check_choice(value, "dtype", list(DTYPES))
    return DTYPES[name]


def _prepare_like_reference(
    layers: list[torch.Tensor], per_layer: bool, q: float, normalize: bool, dtype: torch.dtype | None
) -> list[torch.Tensor]:
    """The reference's ``Alignment.score`` preprocessing of (N, D_l) ``layers``: clamp |x| at its exact q-quantile
    -- one threshold over all layers (the reference's (N, L, D) tensors) or one per layer (``per_layer``: its lists
    of layers) --, optionally round to ``dtype``, then L2-normalise each row."""
    layers = [layer.float() for layer in layers]
    if q < 1.0:
        if per_layer:
            layers = [prepare(layer, q=q, normalize=False) for layer in layers]
        else:
            layers = prepare(layers, q=q, normalize=False)
    if dtype is not None:
        layers = [layer.to(dtype).float() for layer in layers]
    if normalize:
        layers = [F.normalize(layer, p=2, dim=-1) for layer in layers]
    return layers


class Alignment:
    """Reference models' features on one paired dataset, ready to score new features against.

    Two kinds of references:

    - the paper's published features (``dataset="minhuh/prh", subset="wit_1024"``, ``models`` = their names, e.g.
      ``["dinov2_l", "llama_7b"]``; ``prh fetch-reference --list`` shows all): like ``platonic.Alignment``. Missing
      ones are fetched into ``store`` first (from ``$PRH_REFERENCE_URL`` or the authors' server; checked, never
      unpickled);
    - features prh extracted itself (no ``subset``; ``models`` = registry names or sets, run ``prh extract`` first).

    In both, :meth:`score` returns ``{model: ReferenceScore}``: the reference's ``(score, (i, j))`` tuple with
    ``.score``, ``.layers``, ``.p_value``, ``.calibrated`` and ``.sweep``.

    Parameters
    ----------
    dataset : dataset name the references were extracted on (``"minhuh/prh"`` with ``subset``; otherwise
        ``"openmoji"``, ``"wit_1024"``, a folder, ...).
    models : published feature names (a list or a comma-separated string) with ``subset``; otherwise
        comma-separated registry model and/or set names (see `prh models`), e.g. ``"offline"``.
    n : number of items the features were extracted on (with ``subset``: the published set's, 1024, if given).
    store : feature store folder (default ``prh-cache/features``).
    modality : keep only the references of one modality label (``"language"``, ``"vision"``, or an imported
        model's label such as ``"brain"``; default: all).
    q : outlier clamp quantile of :func:`prh.prepare` (0 < q <= 1, default 0.95; the same field as
        :attr:`prh.align.AlignConfig.q`), applied to references and to scored features alike.
    device : where to compute (default CPU; ``"cuda"`` keeps caches on the GPU).
    subset : the published features' subset, ``"wit_1024"`` (as in ``platonic.Alignment``).
    """

    def __init__(
        self,
        dataset: str = "openmoji",
        models: str | Sequence[str] = "offline",
        n: int | None = None,
        store: str | os.PathLike = "prh-cache/features",
        modality: str | None = None,
        q: float = 0.95,
        device: str = "cpu",
        *,
        subset: str | None = None,
    ) -> None:
        q = check_quantile(q, "q")  # the same check as AlignConfig.q, before anything is loaded
        models = check_models_arg(models)
        store = check_path_arg(store, "store", "the feature store folder")
        if n is not None:
            n = check_int(n, "n", minimum=1, hint="the number of items the features were extracted on")
        device = check_str(device, "device", allow_empty=False)
        if subset is not None:
            subset = check_str(subset, "subset", allow_empty=False)
        if modality is not None:
            modality = check_str(
                modality, "modality", allow_empty=False
            )  # a label: language, vision, brain, ...
        self.q = q
        self.device = device
        self.subset = subset
        self.catalogue = None
        self._caches: dict[tuple, list[tuple[str, LayerCaches]]] = {}
        self.item_mask: torch.Tensor | None = None
        if subset is not None:
            self._init_published(dataset, subset, models, n, store, modality)
            return
        from prh.features.store import FeatureStore

        if not isinstance(models, str):
            models = ",".join(models)
        specs = resolve_names(models, FeatureStore(store))  # registry names, sets and imported models
        if modality is not None:
            specs = [s for s in specs if s.modality == modality]
            if not specs:
                raise InputError(f"none of the models {models!r} is a {modality} model.")
        self.dataset = open_dataset(dataset, n)
        self._dataset_args = (
            dataset,
            n,
        )  # get_data() reopens it, to raise load_dataset's own (offline) error
        import_declared(specs, self.dataset, FeatureStore(store))  # models-file entries adapter = "imported"
        self.references: list[ModelFeatures] = load_features(
            [s.name for s in specs],
            FeatureStore(store),
            dataset=self.dataset,
            dataset_name=None if self.dataset is not None else dataset,
            n=n,
            pools={s.name: s.pool for s in specs},
            q=q,
        )
        self.models = [ref.name for ref in self.references]
        #: (N,) bool mask of the items every reference has (imported with --subset), else None
        self.item_mask = self.references[0].info.get("item_mask")
        self.n = (
            self.references[0].layers[0].shape[0] if self.item_mask is None else int(self.item_mask.numel())
        )

    # -- the paper's published features ---------------------------------------------------------------------
    def _init_published(
        self,
        dataset: str,
        subset: str,
        models: str | Sequence[str],
        n: int | None,
        store: str | os.PathLike,
        modality: str | None,
    ) -> None:
        from prh.features.reference import fetch_reference, load_catalogue, load_published, stored_published
        from prh.features.store import FeatureStore

        catalogue = load_catalogue()
        published = catalogue.dataset
        if dataset != published.repo:
            raise InputError(
                f"dataset={dataset!r} with subset={subset!r}: published features exist for "
                f"dataset={published.repo!r} only; leave subset out to score against features in your store."
            )
        if subset != published.revision:
            raise InputError(
                f"subset={subset!r} is not a published subset of {published.repo}; available: "
                f"[{published.revision!r}]."
            )
        if n is not None and n != published.n:
            raise InputError(f"n={n}: the published {published.name} features have N={published.n} items.")
        if models == "offline":
            raise InputError(
                "models: name the published features to score against, e.g. models=['dinov2_l', 'llama_7b'] "
                "(`prh fetch-reference --list` shows them)."
            )
        entries = catalogue.select(models, "models")
        if modality is not None:
            entries = [e for e in entries if e.modality == modality]
            if not entries:
                raise InputError(f"none of the published features {models!r} is a {modality} model.")
        names = [e.name for e in entries]
        feature_store = FeatureStore(store)
        missing = [name for name in names if name not in stored_published(feature_store, catalogue)]
        if missing:  # like platonic.Alignment: download what is missing, but safely
            fetch_reference(missing, feature_store, catalogue=catalogue)
        stored = load_published(names, feature_store, catalogue)
        self.catalogue = catalogue
        self.dataset = None  # opened by get_data() only: scoring needs no hub
        self.models = names
        self.n = published.n
        #: name -> (stored layers, clamped layer by layer (the file's feats was a list), sidecar)
        self._published = {
            name: (
                feats.layers,
                (feats.meta.get("published") or {}).get("feats_layout") == "list",
                feats.meta,
            )
            for name, feats in stored.items()
        }
        self._prepared: dict[tuple, list[ModelFeatures]] = {}
        self.references = self._published_references(True, None)

    def _published_references(self, normalize: bool, dtype: torch.dtype | None) -> list[ModelFeatures]:
        key = (normalize, dtype)
        if key not in self._prepared:
            self._prepared[key] = [
                ModelFeatures(
                    name,
                    _prepare_like_reference(layers, per_layer, self.q, normalize, dtype),
                    {**meta, "model": name},
                )
                for name, (layers, per_layer, meta) in self._published.items()
            ]
        return self._prepared[key]

    def _check_fingerprint(self) -> None:
        """The opened dataset must be the one the published features are bound to (when they are bound to a
        fingerprint, not only by name)."""
        from prh.features.reference import UNKNOWN_FINGERPRINT

        fingerprint = self.dataset.fingerprint()
        for name, (_, _, meta) in self._published.items():
            bound = (meta.get("dataset") or {}).get("fingerprint")
            if bound not in (None, UNKNOWN_FINGERPRINT) and bound != fingerprint:
                raise InputError(
                    f"the published features of {name!r} were bound to {self.catalogue.dataset.name} with fingerprint "
                    f"{bound[:16]}..., but the dataset opened now has {fingerprint[:16]}...: its rows may not be the "
                    f"features' rows. Fetch them again (`prh fetch-reference {name} --force --bind-dataset`)."
                )

    # -- data ----------------------------------------------------------------------------------------------
    def get_data(self, modality: str) -> list[Any]:
        """The paired inputs in the references' row order: captions (``"text"``, the first caption of each item,
        as the reference) or PIL images (``"image"``)."""
        modality = check_choice(modality, "modality", ["text", "image"])
        if self.dataset is None:
            from prh.data import load_dataset

            if self.catalogue is not None:
                published = self.catalogue.dataset
                self.dataset = load_dataset(published.revision, n=published.n)  # OfflineError says why not
                self._check_fingerprint()
            else:
                self.dataset = load_dataset(self._dataset_args[0], n=self._dataset_args[1])
        if modality == "text":
            return self.dataset.texts()
        return [self.dataset.image(i) for i in range(len(self.dataset))]

    # -- scoring -------------------------------------------------------------------------------------------
    def _reference_caches(
        self, refs: list[ModelFeatures], metric: str, kw: dict, key: tuple
    ) -> list[tuple[str, LayerCaches]]:
        key = (metric, tuple(sorted(kw.items())), *key)
        if key not in self._caches:
            self._caches[key] = [
                (ref.name, cache_layers(ref.layers, metric, name=ref.name, device=self.device, **kw))
                for ref in refs
            ]
        return self._caches[key]

    @staticmethod
    def _metric_options(metric: str, topk: object, metric_kw: dict) -> dict:
        """``topk`` (the reference's name) becomes ``k`` for metrics with neighbours and is ignored by the others,
        as the reference's ``compute_score`` does."""
        if topk is None:
            return metric_kw
        if not metric_spec(metric).uses_k:
            return metric_kw
        if "k" in metric_kw and metric_kw["k"] != topk:
            raise InputError(f"topk={topk!r} and k={metric_kw['k']!r} disagree; give one of them.")
        return {**metric_kw, "k": topk}

    def score(
        self,
        feats: Any,
        metric: str = "mutual_knn",
        prepare_features: bool = True,
        *,
        calibrate: int = 0,
        dtype: str | torch.dtype | None = None,
        seed: int = 0,
        **metric_kw: Any,
    ) -> dict[str, ReferenceScore]:
        """Best-layer alignment of ``feats`` with every reference model.

        Parameters
        ----------
        feats : (N, L, D) or (N, D) tensor/array, or a list of (N, D_l) layers, rows in :meth:`get_data` order.
        metric : metric name (:func:`prh.metrics.names`); ``**metric_kw`` its options (e.g. ``k=10``). The
            reference's ``topk=`` is accepted as ``k`` (and ignored by metrics without neighbours, as there), its
            ``normalize=False`` skips the L2 normalisation (the clamp stays).
        prepare_features : clamp outliers and L2-normalise ``feats`` (same q as the references) first; False: use
            them as given.
        calibrate : K > 0 adds a layer-aggregated permutation null of K permutations to every result
            (:func:`prh.stats.calibrate_sweep`): ``p_value`` and the calibrated score.
        dtype : ``"bfloat16"`` / ``"float16"`` rounds the clamped features (yours and the references') to that
            dtype first, like the reference's default ``dtype=torch.bfloat16``; the metrics still compute in
            float32/float64. Default None: no rounding.
        seed : seed of the permutations (with ``calibrate``).

        Returns
        -------
        dict of str to ReferenceScore
            One per reference model, in both modes: the reference's ``(score, (i_feats, j_reference))`` tuple with
            ``.score``, ``.layers``, ``.sweep`` (the whole grid), ``.calibration``, ``.p_value`` and
            ``.calibrated`` (None without ``calibrate``); ``result["score"]`` etc. read as well.

        The published references are preprocessed as the reference does: one outlier threshold per model for an
        (N, L, D) tensor, one per layer for a list of layers (also for ``feats`` given as a list).
        """
        topk = metric_kw.pop("topk", None)
        normalize = check_bool(metric_kw.pop("normalize", True), "normalize")
        prepare_features = check_bool(prepare_features, "prepare_features")
        calibrate = check_int(calibrate, "calibrate", minimum=0, hint="number of permutations; 0 = off")
        rounding = _dtype(dtype)
        metric_kw = self._metric_options(metric, topk, metric_kw)
        published = self.catalogue is not None
        if not published and (rounding is not None or not normalize):
            raise InputError(
                "dtype= and normalize=False apply to the published references (subset=...) only; features from "
                "your store are kept clamped and normalised in float32."
            )
        if self.item_mask is not None:  # references restricted to shared items: score feats on the same items
            layers = as_layers(feats, "feats")
            if layers[0].shape[0] != self.n:
                raise InputError(
                    f"feats has N={layers[0].shape[0]} rows but the dataset has N={self.n}; use get_data() items."
                )
            feats = [t[self.item_mask.to(t.device)] for t in layers]
        if not prepare_features:
            x: Any = feats
            if rounding is not None:
                x = [t.float().to(rounding).float() for t in as_layers(feats, "feats")]
        elif published:
            per_layer = isinstance(feats, (list, tuple))
            x = _prepare_like_reference(as_layers(feats, "feats"), per_layer, self.q, normalize, rounding)
        else:
            x = prepare(feats, q=self.q)
        rows = as_layers(x, "feats")[0].shape[0]
        if rows != self.n and self.item_mask is None:
            raise InputError(
                f"feats has N={rows} rows but the references have N={self.n}; use get_data() items."
            )
        mine = cache_layers(x, metric, name="feats", device=self.device, **metric_kw)
        refs = self._published_references(normalize, rounding) if published else self.references
        out: dict[str, ReferenceScore] = {}
        for name, ref in self._reference_caches(refs, metric, mine.params, (normalize, rounding)):
            result = sweep_caches(mine, ref)
            calibration = None
            if calibrate:
                from prh.stats import calibrate_sweep

                calibration = calibrate_sweep(mine, ref, metric, K=calibrate, seed=seed, observed=result)
            out[name] = ReferenceScore(result, calibration)
        return out
