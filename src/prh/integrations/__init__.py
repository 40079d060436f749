"""Alignment while training: trainer callbacks that score the training model against reference models.

* :class:`AlignmentMonitor` / :class:`MonitorConfig` — framework-free: ``monitor.measure(model, tokenizer)``
  returns ``{"alignment/<reference>/<metric>": score, ...}`` for any training loop;
* :mod:`prh.integrations.hf` — ``AlignmentCallback`` for ``transformers.Trainer`` (extra ``hf``);
* :mod:`prh.integrations.lightning` — ``AlignmentCallback`` for Lightning (extra ``lightning``).

The callbacks import their framework only when their module is imported. See docs/training.md.
"""

from __future__ import annotations

from prh.integrations._monitor import AlignmentMonitor, MonitorConfig, infer_adapter

__all__ = ["AlignmentMonitor", "MonitorConfig", "infer_adapter"]
