"""The one message for a missing optional extra of the integrations."""

from __future__ import annotations

import importlib
from types import ModuleType

from prh.errors import InputError


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise one line naming ``pip install 'prh[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise InputError(f"{module} is not installed: pip install 'prh[{extra}]'") from err
