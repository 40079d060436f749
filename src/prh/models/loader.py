"""The one image loader of every vision adapter: images decoded and transformed in background workers.

:func:`image_batches` wraps a paired dataset and an adapter's :class:`~prh.models.preprocess.ImageTransform` in a
small map-style torch ``Dataset`` and iterates a ``DataLoader`` over consecutive batches of dataset rows
(``collate`` = stack). With ``workers > 0`` the decoding (PIL) and the transform (resize, crop, normalise) of the
next batches run in worker processes while the model computes on the current one, so the forward pass does not
wait for them; on CUDA the batches come in pinned memory and are copied with ``non_blocking=True``.

The transform is deterministic and a batch holds the same rows whatever the number of workers, so the features are
bit-identical with and without workers (tested). A worker's failure (a corrupt image) reaches the caller as the
same :mod:`prh.errors` exception with the same message as without workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from prh import errors
from prh.errors import ExtractionError, InputError
from prh.models.batching import batches
from prh.models.preprocess import ImageTransform

#: The most background workers ``workers="auto"`` starts.
MAX_AUTO_WORKERS = 4
#: ``workers="auto"`` starts no worker for fewer batches than this (starting one costs more than it saves).
MIN_BATCHES_FOR_WORKERS = 4


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


def check_workers(workers: object, name: str = "workers") -> int | str:
    """Validate a worker count: ``"auto"`` or an integer >= 0 (0 = load images in the calling process).

    Raises
    ------
    InputError
        Anything else; the message names ``name`` and the values it accepts.
    """
    if workers == "auto" and isinstance(workers, str):
        return "auto"
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or int(workers) < 0:
        raise InputError(
            f"{name}={workers!r} must be 'auto' or a number of background image workers >= 0 "
            f"(0 = decode images in the main process)."
        )
    return int(workers)


def resolve_workers(
    workers: int | str, n: int, batch_size: int, device: torch.device | str | None = None
) -> int:
    """The number of worker processes to start for ``n`` images in batches of ``batch_size`` on ``device``.

    ``"auto"``: none for fewer than :data:`MIN_BATCHES_FOR_WORKERS` batches (tiny inputs, tests). Otherwise, when
    the model runs on an accelerator (CUDA, ...) and the CPUs are idle during its forward pass,
    ``min(MAX_AUTO_WORKERS, CPUs - 1)``. When it runs on the CPU, its forward pass already keeps
    ``torch.get_num_threads()`` cores busy, and a worker only pays where cores are left over:
    ``min(MAX_AUTO_WORKERS, CPUs - torch threads)``, i.e. none with torch's default of one thread per core (on the
    2-core development machine one worker made EfficientNet-Lite0 extraction 6-11 % slower, see
    docs/extraction.md). An integer is used as given (validated).
    """
    workers = check_workers(workers)
    if workers != "auto":
        return int(workers)
    if n < MIN_BATCHES_FOR_WORKERS * max(1, batch_size):
        return 0
    on_cpu = device is None or torch.device(device).type == "cpu"
    busy = torch.get_num_threads() if on_cpu else 1
    return max(0, min(MAX_AUTO_WORKERS, available_cpus() - busy))


@dataclass(frozen=True)
class ItemFailure:
    """An image that could not be prepared, passed through the loader instead of an exception (a worker's
    exception would reach the caller wrapped in a traceback text; this keeps its type and message)."""

    index: int
    kind: str
    module: str
    message: str
    error: BaseException | None = None  # the exception itself when it happened in the calling process

    def throw(self) -> None:
        """Raise the original exception (same process), the same :mod:`prh.errors` class with the same message
        (a worker), or an :class:`ExtractionError` naming the item and the original error."""
        if self.error is not None:
            raise self.error
        cls = getattr(errors, self.kind, None) if self.module == errors.__name__ else None
        if isinstance(cls, type) and issubclass(cls, errors.PrhError):
            raise cls(self.message)
        raise ExtractionError(
            f"image {self.index} could not be prepared in a loader worker: {self.kind}: {self.message}"
        )


class ImageItems(Dataset):
    """Map-style dataset: item ``i`` is ``transform(dataset.image(i))`` as a (3, H, W) float32 tensor (or an
    :class:`ItemFailure`)."""

    def __init__(self, dataset, transform: ImageTransform) -> None:
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> torch.Tensor | ItemFailure:
        try:
            return torch.from_numpy(self.transform(self.dataset.image(i)))
        except Exception as err:  # noqa: BLE001 - handed to the caller as it was (see ItemFailure)
            in_worker = get_worker_info() is not None
            return ItemFailure(
                index=int(i),
                kind=type(err).__name__,
                module=type(err).__module__,
                message=str(err),
                error=None if in_worker else err,
            )


class StackImages:
    """``collate_fn``: stack B (3, H, W) tensors into (B, 3, H, W), in ``channels_last`` memory format if asked;
    the first :class:`ItemFailure` of the batch instead, if any."""

    def __init__(self, channels_last: bool = False) -> None:
        self.channels_last = channels_last

    def __call__(self, items: list[torch.Tensor | ItemFailure]) -> torch.Tensor | ItemFailure:
        for item in items:
            if isinstance(item, ItemFailure):
                return item
        out = torch.stack(items)  # type: ignore[arg-type]
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out


class ImageBatches:
    """Consecutive batches of transformed images, prepared ahead in background worker processes.

    Iterate it (once) for ``(rows, pixels)`` pairs; use it as a context manager so that the workers stop as soon
    as the loop ends, also when the model raises (see :func:`image_batches`, which builds it).
    """

    def __init__(
        self,
        dataset,
        transform: ImageTransform,
        batch_size: int,
        workers: int = 0,
        device: torch.device | str | None = None,
        channels_last: bool = False,
    ) -> None:
        workers = check_workers(workers)
        if workers == "auto":
            raise InputError(
                "image_batches() needs a number of workers; resolve 'auto' with resolve_workers()."
            )
        self.chunks = list(batches(list(range(len(dataset))), batch_size))
        self.device = None if device is None else torch.device(device)
        self.pin = self.device is not None and self.device.type == "cuda"
        self.workers = int(workers)
        self.loader = DataLoader(
            ImageItems(dataset, transform),
            batch_sampler=self.chunks,
            num_workers=self.workers,
            collate_fn=StackImages(channels_last),
            pin_memory=self.pin,
        )
        self._running = None

    def __iter__(self) -> Iterator[tuple[list[int], torch.Tensor]]:
        self._running = iter(self.loader)
        try:
            for chunk in self.chunks:
                pixels = next(self._running)
                if isinstance(pixels, ItemFailure):
                    pixels.throw()
                if self.device is not None:
                    pixels = pixels.to(self.device, non_blocking=self.pin)
                yield chunk, pixels
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers (dropping the loader's iterator shuts them down); harmless when not running."""
        self._running = None

    def __enter__(self) -> ImageBatches:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def image_batches(
    dataset,
    transform: ImageTransform,
    batch_size: int,
    workers: int = 0,
    device: torch.device | str | None = None,
    channels_last: bool = False,
) -> ImageBatches:
    """Consecutive batches of transformed images, prepared ahead in ``workers`` background processes::

        with image_batches(dataset, transform, 16, workers=2, device=device) as stream:
            for rows, pixels in stream:
                ...  # forward pass

    Parameters
    ----------
    dataset : PairedDataset
        Anything with ``len()`` and ``image(i) -> PIL.Image``.
    transform : ImageTransform
        PIL image -> (3, H, W) float32 array.
    batch_size : int
        Rows per batch (>= 1); batches are ``[0, B), [B, 2B), ...``.
    workers : int, default 0
        Worker processes (0: decode and transform in the calling process, one batch at a time); resolve
        ``"auto"`` first with :func:`resolve_workers`.
    device : torch.device or str, optional
        Where the batches go (None: stay on the CPU). On CUDA they are pinned by the loader and copied with
        ``non_blocking=True``.
    channels_last : bool, default False
        Stack the batches in ``torch.channels_last`` memory format (convolutional models), in the workers.

    Returns
    -------
    ImageBatches
        Yields ``(rows, pixels)``: the batch's dataset rows (list of B ints) and its pixels, a (B, 3, H, W)
        float32 tensor on ``device``.

    Raises
    ------
    InputError, ExtractionError
        While iterating: an image that cannot be read or transformed, as the dataset raised it
        (see :class:`ItemFailure`).
    """
    return ImageBatches(dataset, transform, batch_size, workers, device, channels_last)
