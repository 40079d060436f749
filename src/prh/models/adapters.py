"""The adapter families, each declared in its own module with :func:`register_adapter`.

An adapter module says, next to its class, everything the rest of prh needs to know about it::

    @register_adapter(
        "onnx",
        pools=("cls", "mean"),
        requires=(Requirement("onnx", ("onnx", "onnxruntime")),),
        check=onnx_file_check,
    )
    class OnnxAdapter(Adapter): ...

The adapter names of ``[[model]]`` entries, the poolings each allows, the modality it implies, the optional
modules it needs (and the pip extra that installs them), the availability check of ``prh models`` and the factory
(:func:`prh.models.build_adapter`) all come from these declarations (:func:`adapter_names`, :func:`adapter_info`).
The modules of :mod:`prh.models` are imported on the first such question, so a new family is one new module in
``src/prh/models/`` (see CONTRIBUTING.md); code outside prh registers its own with the same decorator.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prh._optional import install_hint
from prh._validation import suggest
from prh.errors import InputError

if TYPE_CHECKING:
    from prh.models.spec import ModelSpec

#: What ``check`` returns: ``(usable, why)``, or None to fall through to the hub cache check.
Verdict = tuple[bool, str]


@dataclass(frozen=True)
class Requirement:
    """Optional Python modules an adapter needs, the extra of prh that provides them and how to install them.

    Parameters
    ----------
    name : str
        The requirement's key; a model entry's ``extra = "<name>"`` asks for it explicitly.
    modules : tuple of str
        Importable module names, checked without importing them (:func:`prh._optional.missing_modules`).
    hint : str, optional
        How to install them; default ``pip install 'prh[<name>]'``.
    when : callable, optional
        ``when(spec) -> bool``: the requirement applies only to such specs (e.g. GGUF weights); default always.
    """

    name: str
    modules: tuple[str, ...]
    hint: str = ""
    when: Callable[[ModelSpec], bool] | None = None

    def install(self) -> str:
        """The install hint (``hint``, or ``pip install 'prh[<name>]'``)."""
        return self.hint or install_hint(self.name)

    def applies(self, spec: ModelSpec) -> bool:
        """Whether ``spec`` needs these modules."""
        return self.when is None or bool(self.when(spec))


@dataclass(frozen=True)
class AdapterInfo:
    """One adapter family as its module declared it (see :func:`register_adapter`)."""

    name: str
    cls: type
    pools: tuple[str, ...]
    modality: str | None = None
    requires: tuple[Requirement, ...] = ()
    check: Callable[[ModelSpec], Verdict | None] | None = None
    description: str = ""
    module: str = ""
    load_options: tuple[str, ...] = field(default=())

    def needs(self, spec: ModelSpec) -> list[Requirement]:
        """The requirements that apply to ``spec``."""
        return [req for req in self.requires if req.applies(spec)]


_FAMILIES: dict[str, AdapterInfo] = {}
_DISCOVERED = False
#: Keyword options of :func:`prh.models.build_adapter` passed on to the constructors that name them.
LOAD_OPTIONS = ("device_map", "trust_remote_code")


def register_adapter(
    name: str,
    *,
    pools: tuple[str, ...],
    modality: str | None = None,
    requires: tuple[Requirement, ...] = (),
    check: Callable[[ModelSpec], Verdict | None] | None = None,
    description: str = "",
) -> Callable[[type], type]:
    """Class decorator declaring an adapter family (timm's ``@register_model`` pattern).

    Parameters
    ----------
    name : str
        The ``adapter`` value of ``[[model]]`` entries (``"hf-vision"``); unique.
    pools : tuple of str
        The poolings it supports (from ``prh.models.spec.POOLS``); the first is the default.
    modality : str or None
        ``"language"`` or ``"vision"`` when the adapter implies it; None when entries must say.
    requires : tuple of Requirement
        Optional modules it (or some of its entries) needs, with the extra that installs them.
    check : callable, optional
        ``check(spec) -> (usable, why) | None``: the availability check of ``prh models`` for entries that are
        neither zoo packages nor local paths (e.g. "the ONNX file does not exist"); None falls through to the
        Hugging Face cache check of ``spec.source``.
    description : str
        One line for listings; default the class docstring's first line.

    Returns
    -------
    The decorator; it registers the class and returns it unchanged. The class's constructor takes
    ``(spec, device=..., dtype=...)``, and ``device_map`` / ``trust_remote_code`` when it names them.
    """
    from prh.models.spec import MODALITIES, POOLS

    if not isinstance(name, str) or not name or ":" in name:
        raise InputError(f"adapter name {name!r} must be a non-empty string without ':'.")
    pools = tuple(pools)
    bad = [p for p in pools if p not in POOLS]
    if not pools or bad:
        raise InputError(f"adapter {name!r}: pools={pools!r} must be a non-empty tuple of {list(POOLS)}.")
    if modality is not None and modality not in MODALITIES:
        raise InputError(
            f"adapter {name!r}: modality={modality!r} must be one of {list(MODALITIES)} or None."
        )

    def decorate(cls: type) -> type:
        if name in _FAMILIES and _FAMILIES[name].cls is not cls:
            raise InputError(f"adapter {name!r} is already registered (by {_FAMILIES[name].module}).")
        import inspect

        params = inspect.signature(cls.__init__).parameters
        doc = (cls.__doc__ or "").strip().splitlines()
        _FAMILIES[name] = AdapterInfo(
            name=name,
            cls=cls,
            pools=pools,
            modality=modality,
            requires=tuple(requires),
            check=check,
            description=description or (doc[0] if doc else ""),
            module=cls.__module__,
            load_options=tuple(opt for opt in LOAD_OPTIONS if opt in params),
        )
        return cls

    return decorate


def unregister_adapter(name: str) -> None:
    """Remove a family registered by :func:`register_adapter` (tests, notebooks); unknown names are ignored."""
    _FAMILIES.pop(name, None)


def _discover() -> None:
    """Import every module of :mod:`prh.models` once, so that the built-in families have registered."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = (
        True  # first, so that a module asking for the families while it is imported does not recurse
    )
    import prh.models as package

    try:
        for found in pkgutil.iter_modules(package.__path__):
            if not found.name.startswith("_"):
                importlib.import_module(f"prh.models.{found.name}")
    except BaseException:
        _DISCOVERED = False
        raise


def families() -> dict[str, AdapterInfo]:
    """Every registered adapter family, by name (built-ins first, in module order)."""
    _discover()
    return dict(_FAMILIES)


def adapter_names() -> tuple[str, ...]:
    """The names of every registered adapter family."""
    return tuple(families())


def adapter_info(name: str) -> AdapterInfo:
    """The declaration of adapter ``name``; unknown names raise :class:`InputError` with the closest names."""
    known = families()
    if name not in known:
        raise InputError(
            f"unknown adapter {name!r}.{suggest(str(name), known)} Known adapters: {list(known)}."
        )
    return known[name]


def requirements() -> dict[str, Requirement]:
    """Every requirement any family declares, by name (what ``extra = "<name>"`` in a model entry may ask for)."""
    out: dict[str, Requirement] = {}
    for info in families().values():
        for req in info.requires:
            out.setdefault(req.name, req)
    return out


def load_kwargs(info: AdapterInfo, **options: Any) -> dict[str, Any]:
    """The subset of ``options`` (``device_map``, ``trust_remote_code``) that the family's constructor names."""
    return {key: value for key, value in options.items() if key in info.load_options}
