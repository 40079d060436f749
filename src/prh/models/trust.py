"""Code a model file asks to run, and who may allow it.

A models file (``--models-file``, ``PRH_MODELS``) can only *request* code: ``trust_remote_code = true`` (the
Hugging Face repository's own Python files) or an ``options.builder`` naming ``package.module:function``. prh runs
it only when the person running prh grants it: ``--trust-remote-code`` / ``ExtractConfig(trust_remote_code=True)``
for repository code, ``--trust-code`` / ``load_user_config(path, trust_code=True)`` for builders. Either way one
line names exactly what will be imported; a request that is not granted is refused with that same line and the
flag that grants it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from prh.errors import InputError, PrhWarning
from prh.models.spec import ModelSpec

#: How the person running prh grants each kind of code (command line, Python).
REMOTE_CODE_GRANT = "--trust-remote-code (Python: ExtractConfig(trust_remote_code=True))"
BUILDER_GRANT = "--trust-code (Python: load_user_config(path, trust_code=True))"


def _config_files(source: str, revision: str | None) -> list[Path]:
    """The ``config.json`` / ``tokenizer_config.json`` of ``source`` that can be read without the network."""
    folder = Path(source).expanduser()
    names = ("config.json", "tokenizer_config.json")
    if folder.is_dir():
        return [folder / n for n in names if (folder / n).is_file()]
    found = []
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - transformers brings huggingface_hub
        return []
    for n in names:
        try:
            hit = try_to_load_from_cache(source, n, revision=revision)
        except Exception:  # noqa: BLE001 - not a valid repo id: nothing cached to read
            hit = None
        if isinstance(hit, str):
            found.append(Path(hit))
    return found


def remote_code_modules(source: str, revision: str | None = None) -> list[str] | None:
    """The Python files a repository's configs tell transformers to import (their ``auto_map``).

    Returns
    -------
    list of str or None
        Sorted file names (``"modeling_x.py"``; ``"other/repo:modeling_x.py"`` for code in another repository);
        None when no config could be read offline (what would be imported is unknown).
    """
    files = _config_files(source, revision)
    if not files:
        return None
    modules: set[str] = set()
    for path in files:
        try:
            auto_map = json.loads(path.read_text(encoding="utf-8")).get("auto_map") or {}
        except (OSError, ValueError, AttributeError):
            continue
        if not isinstance(auto_map, dict):
            continue
        for ref in auto_map.values():
            for item in ref if isinstance(ref, list) else [ref]:
                if not isinstance(item, str):
                    continue
                repo, _, dotted = item.rpartition("--")
                module = dotted.rpartition(".")[0]
                if module:
                    modules.add(f"{repo}:{module}.py" if repo else f"{module}.py")
    return sorted(modules)


def _source(spec: ModelSpec) -> str:
    """Where ``spec`` is loaded from (a ``zoo:`` name resolved to its folder when it is installed)."""
    if spec.zoo_name is None:
        return spec.source
    try:
        from prh.models.text import hf_source

        return hf_source(spec)[0]
    except Exception:  # noqa: BLE001 - not installed: the name is all there is to show
        return spec.source


def remote_code_line(spec: ModelSpec) -> str:
    """One line naming the repository code loading ``spec`` with ``trust_remote_code`` imports."""
    source = _source(spec)
    where = source + (f"@{spec.revision}" if spec.revision else "")
    modules = remote_code_modules(source, spec.revision)
    if modules is None:
        what = f"the Python files named by the auto_map of {where}'s config.json"
    elif modules:
        what = f"{', '.join(modules)} from {where}"
    else:
        what = f"no Python file (the configs of {where} name none)"
    asked = " (trust_remote_code = true in its entry)" if spec.trust_remote_code else ""
    return f"model {spec.name!r}{asked} runs its repository's own code: transformers imports {what}"


def check_remote_code(spec: ModelSpec, granted: bool, announce: bool = True) -> None:
    """Refuse ``spec``'s request for repository code unless ``granted``; announce granted code in one line.

    Raises
    ------
    InputError
        ``spec.trust_remote_code`` (the entry's request) without the grant.
    """
    if not granted:
        if spec.trust_remote_code:
            raise InputError(
                f"{remote_code_line(spec)}: refused, a models file can only ask for this; if you trust that "
                f"code, rerun with {REMOTE_CODE_GRANT}."
            )
        return
    if announce and (spec.trust_remote_code or remote_code_modules(_source(spec), spec.revision) != []):
        warnings.warn(f"{remote_code_line(spec)}: allowed by --trust-remote-code.", PrhWarning, stacklevel=3)


def refuse_ungranted(specs: list[ModelSpec], granted: bool) -> None:
    """Check every model's request for repository code before any work starts (see :func:`check_remote_code`)."""
    for spec in specs:
        check_remote_code(spec, granted, announce=False)


def builder_line(label: str, code: str, kwargs: list[str]) -> str:
    """One line naming the module and function an ``options.builder`` entry imports and runs."""
    args = f" with builder_kwargs {kwargs}" if kwargs else ""
    return f"{label} imports module {code.partition(':')[0]!r} and runs {code}{args} (options.builder)"


def check_builder(label: str, code: str, kwargs: list[str], granted: bool) -> None:
    """Refuse a models-file builder naming code unless ``granted`` (``--trust-code``); announce it when granted.

    Raises
    ------
    InputError
        Not granted: the line naming the code and the flag that grants it.
    """
    line = builder_line(label, code, kwargs)
    if not granted:
        raise InputError(
            f"{line}: refused, code named by a models file runs only when you allow it; if you trust it, rerun "
            f"with {BUILDER_GRANT}."
        )
    warnings.warn(f"{line}: allowed by --trust-code.", PrhWarning, stacklevel=4)
