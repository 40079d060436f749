"""Features: the extraction loop (:func:`extract`, configured by one :class:`ExtractConfig`) and the feature store.

:func:`extract_and_save`, :func:`summary_row`, :func:`check_pools` and :func:`are_specs` are the steps of that loop
that other backends (:mod:`prh.distributed`) reuse.

Pooling and bits per byte belong to the adapters that compute them (:mod:`prh.models.pooling`,
:mod:`prh.models.bpb`); they are re-exported here for convenience.

:func:`import_features` (configured by :class:`ImportConfig`) stores embeddings computed elsewhere (API models,
another framework, neural recordings) like extracted features, matched to the items by id.

``FeatureStore`` / ``StoredFeatures`` are re-exported lazily from :mod:`prh.features.store`.
"""

from __future__ import annotations

from prh.features._extract import (
    ExtractConfig,
    are_specs,
    check_pools,
    extract,
    extract_and_save,
    summary_row,
)
from prh.features._import import (
    ImportConfig,
    ImportReport,
    ensure_imported,
    import_features,
    imported_specs,
    shared_items,
)
from prh.models.bpb import bits_per_byte, sequence_bpb, token_nll
from prh.models.pooling import last_token, masked_mean, pool_any, pool_tokens, spatial_mean

__all__ = [
    "ExtractConfig",
    "FeatureStore",
    "ImportConfig",
    "ImportReport",
    "StoredFeatures",
    "are_specs",
    "bits_per_byte",
    "check_pools",
    "extract",
    "extract_and_save",
    "ensure_imported",
    "import_features",
    "imported_specs",
    "shared_items",
    "last_token",
    "masked_mean",
    "pool_any",
    "pool_tokens",
    "sequence_bpb",
    "spatial_mean",
    "summary_row",
    "token_nll",
]


def __getattr__(name: str):
    if name in ("FeatureStore", "StoredFeatures"):
        from prh.features import store

        return getattr(store, name)
    raise AttributeError(f"module 'prh.features' has no attribute {name!r}")
