"""Shared pytest fixtures: deterministic random features."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

#: Independent re-implementations the tests compare prh with (shared with benchmarks/, not part of the package).
ORACLES = Path(__file__).resolve().parents[1] / "oracles"
if str(ORACLES) not in sys.path:
    sys.path.insert(0, str(ORACLES))

#: The paper's eight metrics, in the order prh.metrics registers them (a literal, so tests can catch a change).
REFERENCE_EIGHT = [
    "mutual_knn",
    "cycle_knn",
    "lcs_knn",
    "edit_distance_knn",
    "cka",
    "unbiased_cka",
    "cknna",
    "svcca",
]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def related_pair():
    """Two related (64, D) feature matrices: B is a noisy linear map of A (tie-free inner products)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(64, 32, generator=g)
    b = a @ torch.randn(32, 20, generator=g) + 0.5 * torch.randn(64, 20, generator=g)
    return torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)


@pytest.fixture
def one_thread():
    """Run a test with one torch thread (tiny tensors: avoids thread-pool contention on a shared CPU)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
