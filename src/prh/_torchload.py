"""``torch.load(weights_only=True)`` with its refusals called what they are.

A file that needs full unpickling is refused by naming the Python objects it references (found without running
anything: :func:`torch.serialization.get_unsafe_globals_in_checkpoint` for ``torch.save`` zip files, the pickle's
opcodes otherwise); a file torch cannot read is called unreadable. torch's own messages are never passed on: they
advise retrying with full unpickling, which is exactly what must not be done with a downloaded file.
"""

from __future__ import annotations

import pickle
import pickletools
import re
import zipfile
from pathlib import Path

import torch

from prh.errors import InputError

_DOTTED = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+")


def _allowed() -> set[str]:
    """``module.name`` of the globals the weights-only unpickler accepts."""
    names = set()
    try:  # the list torch checks against (no public accessor for the built-in part)
        from torch._weights_only_unpickler import _get_allowed_globals

        names |= set(_get_allowed_globals())
    except Exception:  # noqa: BLE001 - another torch: fall back to its module prefix below
        names.add("torch.")
    for g in torch.serialization.get_safe_globals():
        obj = g[0] if isinstance(g, tuple) else g
        names.add(f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}")
    return names


def _pickle_globals(path: Path, limit: int = 1 << 16) -> list[str]:
    """``module.name`` of every global the pickle(s) at the start of ``path`` reference, read from opcodes only."""
    found: list[str] = []
    try:
        with path.open("rb") as f:
            for _ in range(8):  # a legacy torch.save file is a few pickles in a row
                strings: list[str] = []
                for n, (op, arg, _pos) in enumerate(pickletools.genops(f)):
                    if n > limit:
                        return found
                    name = None
                    if op.name == "GLOBAL" and isinstance(arg, str):
                        name = arg.replace(" ", ".")
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        name = f"{strings[-2]}.{strings[-1]}"
                    if name and _DOTTED.fullmatch(name):
                        found.append(name)
                    elif isinstance(arg, str) and "UNICODE" in op.name:
                        strings.append(arg)
    except Exception:  # noqa: BLE001 - the end of the pickles, or not a pickle: what was seen is the answer
        pass
    return list(dict.fromkeys(found))


def unsafe_globals(path: str | Path) -> list[str]:
    """The Python objects ``path`` references that the weights-only loader does not allow (empty when none or when
    the file is not a pickle at all). Nothing in the file is run."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        try:
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # noqa: BLE001 - an unreadable archive is reported by the load itself
            return []
    allowed = _allowed()
    return [
        g
        for g in _pickle_globals(path)
        if g not in allowed and not ("torch." in allowed and g.startswith("torch."))
    ]


def refusal(path: str | Path, globals_: list[str]) -> InputError:
    """The error for a file that needs full unpickling."""
    named = ", ".join(globals_[:5]) + (f" and {len(globals_) - 5} more" if len(globals_) > 5 else "")
    what = f"it references {named}" if named else "it references objects the safe loader does not allow"
    return InputError(
        f"{path}: refused: this file needs full unpickling, which can run code ({what}). prh reads tensors and "
        f"numbers only; do not open it outside a sandbox, and ask its publisher for safetensors or a plain tensor file."
    )


def safe_torch_load(path: str | Path, what: str = "torch.save file") -> object:
    """``torch.load(path, map_location="cpu", weights_only=True)``; every failure is one InputError.

    Raises
    ------
    InputError
        "refused: this file needs full unpickling, which can run code (it references <global>)" for a file that
        references objects beyond tensors and plain containers; "is not a readable <what> (truncated or corrupt,
        or another format)" for anything else torch cannot read.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a folder, not a file: give the {what} itself.")
    risky = unsafe_globals(path)
    if risky:
        raise refusal(path, risky)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,  # also random bytes: a refusal only when a disallowed object is named (above)
        RuntimeError,
        EOFError,
        ValueError,
        OSError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
    ) as err:
        raise InputError(
            f"{path} is not a readable {what} (truncated or corrupt, or another format; {type(err).__name__}). "
            f"Delete it and fetch it again."
        ) from None
