"""Batches and their results: consecutive chunks of a sample order, progress reporting, and the in-order
per-layer result buffer every adapter fills."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from prh.errors import ExtractionError, InputError

#: A progress sink: called with the number of samples finished (or a tqdm-like object with ``update``), or None.
Progress = Callable[[int], object] | None


def call_progress(progress: Progress, n: int) -> None:
    """Report ``n`` finished samples to a callable or a tqdm-like object with ``update``."""
    if progress is None:
        return
    update = getattr(progress, "update", None)
    if callable(update):
        update(n)
    else:
        progress(n)


class LayerBuffer:
    """Preallocated (N, D_l) float32 CPU tensors filled batch by batch at the batch's dataset indices.

    Batches may come in any order (length-sorted); rows end up in dataset order.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.layers: list[torch.Tensor] | None = None
        self.filled = torch.zeros(n, dtype=torch.bool)

    def put(self, index: torch.Tensor | list[int], pooled: list[torch.Tensor]) -> None:
        """Store pooled layer outputs (each (B, D_l)) for dataset rows ``index`` (length B)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        if self.layers is None:
            self.layers = [torch.zeros(self.n, p.shape[-1], dtype=torch.float32) for p in pooled]
        if len(pooled) != len(self.layers):
            raise ExtractionError(
                f"the model returned {len(pooled)} layers for one batch, {len(self.layers)} before"
            )
        for buf, p in zip(self.layers, pooled, strict=True):
            buf[idx] = p.detach().to("cpu", torch.float32)
        self.filled[idx] = True

    def result(self) -> list[torch.Tensor]:
        """The filled tensors; raises if a row was never written or a value is not finite."""
        if self.layers is None or not bool(self.filled.all()):
            missing = int((~self.filled).sum())
            raise ExtractionError(f"{missing} of {self.n} samples were not extracted (internal error).")
        for i, t in enumerate(self.layers):
            if not bool(torch.isfinite(t).all()):
                bad = torch.nonzero(~torch.isfinite(t).all(dim=1)).flatten()[:5].tolist()
                raise ExtractionError(
                    f"layer {i} has NaN/Inf features (rows {bad}); try --dtype float32 or another pooling."
                )
        return self.layers


def batches(order: list[int], batch_size: int) -> Iterator[list[int]]:
    """Consecutive chunks of ``order`` of at most ``batch_size`` items."""
    if batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size}.")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
