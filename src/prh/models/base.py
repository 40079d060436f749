"""The adapter base class: runs one model over a dataset, validates the call and adds the provenance every
adapter reports. The jobs adapters share live beside it: :mod:`prh.models.device` (device/dtype),
:mod:`prh.models.guards` (error translation at load and forward time), :mod:`prh.models.batching` (batches,
progress, the in-order result buffer)."""

from __future__ import annotations

import time

import torch

from prh._validation import check_int
from prh.errors import InputError
from prh.models.batching import Progress
from prh.models.device import dtype_name
from prh.models.loader import resolve_workers
from prh.models.result import FeatureResult
from prh.models.spec import ModelSpec


def check_pool(spec: ModelSpec, pool: str | None) -> str:
    """Return the pooling to use for ``spec`` (its default when ``pool`` is None); raise if unsupported."""
    from prh.models.adapters import families

    pool = pool or spec.pool
    info = families().get(spec.adapter)
    allowed = info.pools if info is not None else ("mean",)
    if pool not in allowed:
        raise InputError(
            f"pool={pool!r} is not supported by model {spec.name!r} (adapter {spec.adapter}); "
            f"it supports {', '.join(allowed)}."
        )
    return pool


def count_params(module: torch.nn.Module) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters()))


class Adapter:
    """Base class: runs one model over a :class:`~prh.data.PairedDataset` and returns per-layer pooled features.

    Subclasses implement :meth:`_extract` and set ``self.spec``, ``self.device``, ``self.dtype``,
    ``self.n_params``.
    """

    spec: ModelSpec
    device: torch.device
    dtype: torch.dtype
    n_params: int | None = None
    #: Background image workers of the running :meth:`extract` call (``workers`` resolved for its dataset).
    workers: int = 0

    def extract(
        self,
        dataset,
        batch_size: int = 16,
        pool: str | None = None,
        progress: Progress = None,
        workers: int | str = "auto",
    ) -> FeatureResult:
        """Extract per-layer pooled features for every item of ``dataset``.

        Parameters
        ----------
        dataset : PairedDataset
            Language models read ``dataset.texts(0)``, vision models ``dataset.image(i)``.
        batch_size : int
            Samples per forward pass (the features do not depend on it).
        pool : str or None
            Pooling (None: the spec's default); the poolings its adapter declares (:func:`prh.models.adapters.register_adapter`).
        progress : callable or tqdm-like, optional
            Called with the number of samples finished after each batch.
        workers : int or "auto", default "auto"
            Vision models: processes that decode and transform the next images while the model runs (0: none;
            ``"auto"``: none for a few batches, else ``min(4, CPUs - 1)`` on an accelerator and
            ``min(4, CPUs - torch threads)`` on the CPU; see :func:`prh.models.loader.resolve_workers`). The
            features do not depend on it.

        Returns
        -------
        FeatureResult
            L layers of shape (N, D_l), float32, CPU, in dataset order.
        """
        batch_size = check_int(batch_size, "batch_size", minimum=1, hint="samples per forward pass")
        pool = check_pool(self.spec, pool)
        if len(dataset) == 0:
            raise InputError(f"dataset {getattr(dataset, 'name', '?')!r} is empty; nothing to extract.")
        self.workers = resolve_workers(workers, len(dataset), batch_size, self.device)
        start = time.perf_counter()
        result = self._extract(dataset, batch_size, pool, progress)
        wall = time.perf_counter() - start
        n = len(dataset)
        meta = {
            "model": self.spec.name,
            "source": self.spec.source,
            "revision": self.spec.revision,
            "adapter": self.spec.adapter,
            "modality": self.spec.modality,
            "family": self.spec.family,
            "pool": pool,
            "dtype": dtype_name(self.dtype),
            "device": str(self.device),
            "params": self.n_params if self.n_params is not None else self.spec.params,
            "competence": dict(self.spec.competence),
            "batch_size": batch_size,
            "wall_time_s": round(wall, 4),
            "samples_per_s": round(n / wall, 3) if wall > 0 else None,
            "n_layers": len(result.layers),
            "dims": [int(t.shape[1]) for t in result.layers],
        }
        if self.spec.modality == "vision":
            meta["image_workers"] = self.workers
        if "bpb" in result.per_sample:
            meta["bits_per_byte"] = float(result.per_sample["bpb"].mean())
        meta.update(result.meta)
        result.meta = meta
        return result

    def _extract(self, dataset, batch_size: int, pool: str, progress: Progress) -> FeatureResult:
        raise NotImplementedError
