"""Scale out on Ray: the same extraction and alignment pipeline, spread over the GPUs and machines of a Ray cluster.

- :func:`extract_ray` — one Ray task per model, resources from a size estimate, retries when a worker dies, results
  in the same feature store (a path every worker sees); what is already stored is not recomputed.
- :func:`align_ray` — the model-pair grid cut into tiles, one task per tile, each loading its features from the
  store; the merged :class:`~prh.align.Results` equal the local backend's.

Both take the same config as the local backend (:class:`~prh.features.ExtractConfig`,
:class:`~prh.align.AlignConfig`) plus :class:`RayOptions` (cluster address, retries, tiling).

Ray is an optional extra (``pip install prh[ray]``) and is imported only when one of these runs (a missing Ray
raises :class:`~prh.errors.ModelLoadError` saying how to install it). See ``docs/scaling.md`` for clusters and SLURM.
"""

from __future__ import annotations

from prh.distributed.ray_align import align_ray, plan_tiles
from prh.distributed.ray_extract import DatasetRef, extract_ray
from prh.distributed.resources import (
    NodeLimits,
    RayOptions,
    TaskResources,
    TransientTaskError,
    estimate_extract_resources,
    ray_session,
    require_ray,
    weight_bytes,
)

__all__ = [
    "DatasetRef",
    "NodeLimits",
    "RayOptions",
    "TaskResources",
    "TransientTaskError",
    "align_ray",
    "estimate_extract_resources",
    "extract_ray",
    "plan_tiles",
    "ray_session",
    "require_ray",
    "weight_bytes",
]
