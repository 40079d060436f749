"""Optional dependencies: one way to import them and one way to say how to install them.

Every "install the extra" message of prh comes from :func:`install_hint`, and every import of an optional package
that must fail with such a message goes through :func:`optional_import`. Nothing here imports an optional package
at import time; :func:`missing_modules` checks without importing.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from prh.errors import ModelLoadError, PrhError


def install_hint(extra: str, packages: str = "") -> str:
    """The pip command that installs the optional extra ``extra`` of prh, e.g. ``pip install 'prh[onnx]'``.

    Parameters
    ----------
    extra : str
        The extra's name in ``pyproject.toml`` (``"onnx"``, ``"timm"``, ``"zoo"``, ``"ray"``, ...).
    packages : str, optional
        The packages of the extra that matter here, appended in parentheses (``"gguf, accelerate"``).
    """
    hint = f"pip install 'prh[{extra}]'"
    return f"{hint} ({packages})" if packages else hint


def missing_modules(modules: tuple[str, ...] | list[str]) -> list[str]:
    """The names of ``modules`` that are not installed (found without importing them), in order, once each."""
    out = []
    for name in dict.fromkeys(modules):
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a parent package missing or broken
            found = False
        if not found:
            out.append(name)
    return out


def optional_import(
    module: str,
    extra: str,
    *,
    purpose: str,
    package: str = "",
    instead: str = "",
    error: type[PrhError] = ModelLoadError,
) -> ModuleType:
    """Import the optional module ``module`` or raise ``error`` saying which extra of prh provides it.

    Parameters
    ----------
    module : str
        The dotted module name (``"onnxruntime"``).
    extra : str
        The extra of prh that installs it (``"onnx"``); the message says ``pip install 'prh[onnx]'``.
    purpose : str
        What needs it, the subject of the message (``"ONNX models"``, ``"the Ray backend"``).
    package : str, optional
        The pip package(s) to install directly instead (``"ray>=2.9"``); named after the extra as an alternative.
    instead : str, optional
        What works without it, appended to the message (``"use --backend local"``).
    error : PrhError subclass, default ModelLoadError
        The exception raised (``InputError`` where the missing package follows from an option the user chose).

    Raises
    ------
    error
        ``"<purpose>: install the optional extra with `pip install 'prh[<extra>]'` (or ...). Importing
        <module> failed: <reason>"``. Any failure of the import counts (a package built for another torch can raise more
        than ImportError); the original exception is chained.
    """
    try:
        return importlib.import_module(module)
    except Exception as err:  # noqa: BLE001 - ImportError, or a package that fails while importing
        alt = f" (or `pip install {package}`)" if package else ""
        other = f"; or {instead}" if instead else ""
        raise error(
            f"{purpose}: install the optional extra with `{install_hint(extra)}`{alt}{other}. "
            f"Importing {module} failed: {type(err).__name__}: {err}"
        ) from err
