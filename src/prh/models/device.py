"""Where and in which precision a model runs: device and dtype names resolved to torch objects."""

from __future__ import annotations

import torch

from prh.errors import InputError

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> ``cuda`` when available, else ``cpu``; anything else is passed to :class:`torch.device`."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} was asked for but CUDA is not available here; use --device cpu.")
    return dev


def resolve_dtype(
    dtype: str | torch.dtype | None = "float32", device: torch.device | None = None
) -> torch.dtype:
    """Map a dtype name to a torch dtype; ``"auto"`` = bfloat16 on a CUDA device that supports it, else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device is not None and device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    key = str(dtype).lower().replace("torch.", "")
    if key not in DTYPES:
        raise InputError(f"dtype={dtype!r} is not supported; use one of float32, float16, bfloat16, auto.")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).replace("torch.", "")
