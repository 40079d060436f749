"""Memory estimates at the boundary: refuse a computation that cannot fit *before* allocating it.

A request that would need more memory than the machine has must end in one clear :class:`~prh.errors.InputError`
that states the estimate and the option that avoids it — never in a raw ``DefaultCPUAllocator`` error or a
``MemoryError`` from deep inside torch or numpy, and never after minutes of work.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

import torch

from prh.errors import InputError

#: Fraction of the available memory a single request may claim (the rest is for everything else in flight).
HEADROOM = 0.8


def available_bytes(device: torch.device | str | None = None) -> int | None:
    """Free memory for new allocations on ``device`` in bytes, or None when it cannot be told.

    CPU: ``MemAvailable`` of ``/proc/meminfo`` (Linux), else ``psutil`` when installed. CUDA: ``mem_get_info``.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(dev)
            return int(free)
        except (RuntimeError, AssertionError):
            return None
    if dev.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


def format_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'`` (binary units, 3 significant digits)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def require_memory(need: float, what: str, fix: str, device: torch.device | str | None = None) -> None:
    """Raise :class:`InputError` when ``need`` bytes would not fit in :data:`HEADROOM` of the free memory.

    Parameters
    ----------
    need : estimated bytes of the allocation(s) about to be made.
    what : the request, e.g. ``"caching 4 layers of 'vit' for unbiased_cka (4 x N^2 float64 kernels, N=65536)"``.
    fix : the option that avoids it, e.g. ``"use path='features'"``.
    device : where the memory would be allocated.

    The environment variable ``PRH_MEMORY_LIMIT`` (bytes, e.g. ``8e9``) caps the budget below what the machine
    reports (for shared machines and for tests).
    """
    budget = available_bytes(device)
    limit = os.environ.get("PRH_MEMORY_LIMIT")
    if limit:
        try:
            cap = int(float(limit))
        except ValueError:
            raise InputError(
                f"PRH_MEMORY_LIMIT={limit!r} must be a number of bytes (e.g. 8e9); unset it to use all memory."
            ) from None
        budget = cap if budget is None else min(budget, cap)
    if budget is None:
        return
    if need > HEADROOM * budget:
        raise InputError(
            f"{what} needs about {format_bytes(need)}, but only {format_bytes(budget)} of memory is available"
            f"{' on ' + str(device) if device is not None and torch.device(device).type != 'cpu' else ''}; {fix}."
        )


def _libc_trim():
    """glibc's ``malloc_trim`` or None (another C library, or no C library found)."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


_TRIM = _libc_trim()


def release_freed_memory() -> None:
    """Give memory that was freed back to the operating system.

    A streamed run frees each model's features before reading the next, but glibc keeps freed blocks of a few MiB
    to a few tens of MiB (a layer's float32 copy) in its heap, so the resident size would grow with every model
    read and reach several GiB over a large grid although the live data stays small. ``malloc_trim(0)`` after each
    model returns those pages (a no-op where the C library has no such call).
    """
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
