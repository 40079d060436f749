"""What an adapter returns: :class:`FeatureResult`, the per-layer pooled features of one model on one dataset.

A plain record with no dependency on model specs or registries, so the feature store can build its own record
type (:class:`prh.features.store.StoredFeatures`) on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class FeatureResult:
    """Per-layer pooled features of one model on one dataset, in dataset order.

    Attributes
    ----------
    layers : list of torch.Tensor
        L tensors of shape (N, D_l), float32 on CPU; row i belongs to dataset item i whatever the batching.
    layer_names : list of str
        L names (``"embeddings"``, ``"layer.0"``, ``"_blocks.3"``, ...).
    per_sample : dict of str to torch.Tensor
        Per-item figures of shape (N,), e.g. ``{"bpb": ...}`` (bits per UTF-8 byte) for causal LMs.
    meta : dict
        JSON-serialisable provenance: adapter, pool, dtype, device, params, bits_per_byte (mean), wall_time_s, ...
    """

    layers: list[torch.Tensor]
    layer_names: list[str]
    per_sample: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Number of samples N."""
        return int(self.layers[0].shape[0]) if self.layers else 0

    @property
    def dims(self) -> list[int]:
        """Feature dimension D_l of every layer."""
        return [int(t.shape[1]) for t in self.layers]
