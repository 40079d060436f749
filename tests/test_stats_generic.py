"""stats/ does statistics only: it never names a metric or a metric's cache class (the MetricSpec is the only
place a metric is defined)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

import prh

STATS = Path(prh.__file__).parent / "stats"


def _cache_class_names() -> set[str]:
    x = torch.nn.functional.normalize(torch.randn(12, 5, generator=torch.Generator().manual_seed(0)), dim=1)
    names = set()
    for name in prh.metrics.names():
        spec = prh.metrics.spec(name)
        params = spec.check_kwargs(12, **({"k": 3} if spec.uses_k else {"dim": 3} if name == "svcca" else {}))
        names.add(type(spec.layer_cache(x, **params)).__name__)
    return names


def test_stats_names_no_metric_and_no_cache_class():
    words = set(prh.metrics.names()) | _cache_class_names()
    assert "KnnCache" in words and "CenteredKernel" in words  # the probe itself works
    found = []
    for path in sorted(STATS.glob("*.py")):
        text = path.read_text()
        for word in sorted(words):
            for match in re.finditer(rf"\b{re.escape(word)}\b", text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{path.name}:{line}: {word}")
    assert not found, "stats/ must work through MetricSpec alone:\n" + "\n".join(found)
