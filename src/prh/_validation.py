"""Validation at the public boundary: turn user input into clean tensors or raise :class:`InputError`.

Functions here never compute a metric; they check shapes, finiteness and ranges and convert numpy arrays to torch
tensors (keeping the device of torch inputs).

One file, slightly over ~450 lines, on purpose: it is the single home of the boundary checks (the design rule), so
a check is found and shared, never re-typed.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from prh.errors import InputError

_C = TypeVar("_C", bound="ConfigFields")


#: numpy dtype kinds that are not numbers, in words.
_KIND_NAMES = {"U": "strings", "S": "bytes", "M": "dates", "m": "time spans", "V": "raw records"}


def as_tensor(x: object, name: str) -> torch.Tensor:
    """Return ``x`` as a floating torch tensor on its own device (numpy -> CPU tensor, no copy when possible).

    Integer and boolean inputs are converted to float32; float16/bfloat16 are upcast to float32 so that
    metric arithmetic is not done in half precision. Complex inputs are refused (the imaginary part would be lost).
    """
    if isinstance(x, torch.Tensor):
        if x.is_meta:
            raise InputError(
                f"{name} is a tensor on the meta device (a shape without values, e.g. from a model built with "
                f"device='meta'); pass features with values: run the model on a real device (cpu, cuda) first."
            )
        t = x.detach()
    elif isinstance(x, np.ndarray):
        if x.dtype == object:
            raise InputError(
                f"{name} is a numpy array of Python objects; pass a numeric array of shape (N, D)."
            )
        if x.dtype.kind not in "biufc":
            raise InputError(
                f"{name} has numpy dtype {x.dtype} ({_KIND_NAMES.get(x.dtype.kind, 'not numbers')}); features must be "
                f"numbers (float, int or bool) of shape (N, D). Convert them with x.astype(numpy.float32) if they "
                f"are numbers stored as text."
            )
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        raise InputError(
            f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}; "
            f"convert it with numpy.asarray(...) first."
        )
    if t.is_complex():
        raise InputError(
            f"{name} has complex dtype {t.dtype}; alignment metrics need real features. Pass the real part "
            "(x.real), the magnitude (abs(x)) or both as separate columns, explicitly."
        )
    if not torch.is_floating_point(t) or t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)
    return t


def check_finite(t: torch.Tensor, name: str) -> None:
    """Raise if ``t`` holds NaN or Inf, saying where the first one is.

    Fast path: NaN and Inf propagate through a sum, so a finite sum clears the common, clean case with one
    reduction; a non-finite sum (bad values, or an overflow of huge finite ones) pays for the element-wise check.
    """
    if t.numel() == 0 or bool(torch.isfinite(t.sum())):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        first = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
        count = int(bad.sum())
        raise InputError(
            f"{name} contains {count} NaN/Inf value(s) (first at index {first}); "
            f"remove or impute them before measuring alignment."
        )


def check_features(x: object, name: str, ndim: int | Sequence[int] = 2) -> torch.Tensor:
    """Validate one feature array: a tensor of the given rank(s), finite, at least 2 samples and 1 feature."""
    t = as_tensor(x, name)
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if t.ndim not in allowed:
        shapes = " or ".join({2: "(N, D)", 3: "(N, L, D)"}.get(d, f"{d}-D") for d in allowed)
        raise InputError(f"{name} must have shape {shapes}, got an array of shape {tuple(t.shape)}.")
    if t.shape[0] < 2:
        raise InputError(f"{name} has {t.shape[0]} sample(s); at least 2 samples (rows) are needed.")
    if t.shape[-1] < 1:
        raise InputError(f"{name} has no features (last dimension is 0).")
    check_finite(t, name)
    return t


def check_pair(
    a: object, b: object, names: tuple[str, str] = ("A", "B")
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two (N, D) feature matrices with the same N; move B to A's device and a common dtype."""
    ta = check_features(a, names[0])
    tb = check_features(b, names[1])
    if ta.shape[0] != tb.shape[0]:
        raise InputError(
            f"{names[0]} and {names[1]} must describe the same samples: {names[0]} has N={ta.shape[0]} rows, "
            f"{names[1]} has N={tb.shape[0]}. Row i of both must be the same item."
        )
    dtype = torch.promote_types(ta.dtype, tb.dtype)
    return ta.to(dtype), tb.to(device=ta.device, dtype=dtype)


def check_k(k: object, n: int, name: str = "k", minimum: int = 1) -> int:
    """Validate a neighbour count: an integer with ``minimum <= k < n``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise InputError(f"{name} must be an integer number of neighbours, got {k!r}.")
    k = int(k)
    if k < minimum:
        raise InputError(f"{name}={k} is too small: it must be at least {minimum}.")
    if k >= n:
        raise InputError(
            f"{name}={k} must be smaller than the number of samples N={n} (a sample is never its own neighbour); "
            f"use k <= {n - 1}."
        )
    return k


def check_int(
    value: object, name: str, minimum: int | None = None, maximum: int | None = None, hint: str = ""
) -> int:
    """Validate an integer option (``bool`` is refused), optionally with ``minimum <= value <= maximum``.

    ``hint`` is appended to the message (e.g. ``"0 = off"``), in the style of scikit-learn's ``check_scalar``.
    """
    extra = f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name}={value!r} must be an integer{extra}.")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InputError(f"{name}={value} must be at least {minimum}{extra}.")
    if maximum is not None and value > maximum:
        raise InputError(f"{name}={value} must be at most {maximum}{extra}.")
    return value


def check_float(
    value: object,
    name: str,
    low: float | None = None,
    high: float | None = None,
    inclusive: tuple[bool, bool] = (True, True),
    hint: str = "",
) -> float:
    """Validate a real number (``bool`` refused, finite) within ``low``/``high`` (each end inclusive or not)."""
    extra = f" ({hint})" if hint else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InputError(f"{name}={value!r} must be a number{extra}.")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise InputError(f"{name}={value} must be a finite number{extra}.")
    lo_ok = low is None or (value >= low if inclusive[0] else value > low)
    hi_ok = high is None or (value <= high if inclusive[1] else value < high)
    if not (lo_ok and hi_ok):
        left = "" if low is None else f"{low} {'<=' if inclusive[0] else '<'} "
        right = "" if high is None else f" {'<=' if inclusive[1] else '<'} {high}"
        raise InputError(f"{name}={value} must satisfy {left}{name}{right}{extra}.")
    return value


def check_quantile(value: object, name: str = "q") -> float:
    """Validate the outlier clamp quantile of :func:`prh.prepare`: a number with 0 < q <= 1 (1 = no clamp)."""
    return check_float(
        value, name, 0.0, 1.0, inclusive=(False, True), hint="a quantile; q=1 disables outlier clamping"
    )


def check_bool(value: object, name: str) -> bool:
    """Validate a boolean option: only ``True``/``False`` (a string such as ``"false"`` is refused, not truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name}={value!r} must be true or false (a boolean, not {type(value).__name__}).")
    return bool(value)


def check_str(value: object, name: str, allow_empty: bool = True) -> str:
    """Validate a text option: a ``str`` (a number, list or boolean is refused), non-empty unless ``allow_empty``."""
    if not isinstance(value, str):
        raise InputError(f"{name}={value!r} must be a string (text in quotes), not {type(value).__name__}.")
    if not allow_empty and not value.strip():
        raise InputError(f"{name} is empty; give a non-empty string.")
    return value


def check_str_list(value: object, name: str) -> list[str]:
    """Validate a list of strings (e.g. layer names); one string is refused rather than split into characters."""
    if isinstance(value, str):
        raise InputError(
            f"{name}={value!r} must be a list of strings, e.g. [{value!r}], not one string "
            f"(it would be read as {len(value)} one-character names)."
        )
    if not isinstance(value, (list, tuple)):
        raise InputError(f"{name}={value!r} must be a list of strings, not {type(value).__name__}.")
    bad = [item for item in value if not isinstance(item, str) or not item]
    if bad:
        raise InputError(f"{name} must hold non-empty strings only; {bad[0]!r} is not one.")
    return list(value)


def check_models_arg(value: object, name: str = "models") -> str | list[str]:
    """Model and set names: one comma-separated string or a list/tuple of strings (returned unchanged)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InputError(
        f"{name}={value!r} ({type(value).__name__}) is not model names: give a comma-separated string (e.g. "
        f"'offline' or 'minilm-l6,effnet-lite0') or a list of strings."
    )


def check_path_arg(value: object, name: str, what: str) -> str | os.PathLike:
    """A file-system path: a non-empty string or an ``os.PathLike`` (returned unchanged)."""
    if isinstance(value, os.PathLike) or (isinstance(value, str) and value.strip()):
        return value
    raise InputError(
        f"{name}={value!r} ({type(value).__name__}) is not a path: give {what} as a string or pathlib.Path."
    )


def check_choice(value: object, name: str, choices: Iterable[str]) -> str:
    """Validate a string option against a list of choices, suggesting the closest one."""
    options = list(choices)
    if value in options:
        return str(value)
    close = difflib.get_close_matches(str(value), options, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise InputError(f"{name}={value!r} is not one of {options}.{hint}")


def check_names(
    value: object, name: str, choices: Iterable[str], allow_empty: bool = False
) -> tuple[str, ...]:
    """Validate a list of names: a sequence of strings or one comma-separated string, each one of ``choices``.

    Returns the names as a tuple in the given order; a repeated name and (unless ``allow_empty``) an empty list are
    refused, an unknown name suggests the closest choice.
    """
    options = list(choices)
    if isinstance(value, str):
        items: list[object] = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise InputError(
            f"{name}={value!r} must be a list of names or one comma-separated string, e.g. {options[:2]}."
        )
    names = tuple(check_choice(item, name, options) for item in items)
    if not names and not allow_empty:
        raise InputError(f"{name} is empty; give at least one of {options}.")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InputError(f"{name} names {repeated} more than once; give each name once.")
    return names


def check_field_type(value: object, want: type | tuple[type, ...], where: str, field: str) -> None:
    """One field of a parsed TOML table has the wanted type (``object``: any); a bool never passes for a number.

    Raises :class:`InputError` ``"<where>: field '<field>' must be <types>, got <value>."``.
    """
    wants = want if isinstance(want, tuple) else (want,)
    if (isinstance(value, bool) and bool not in wants and object not in wants) or not isinstance(
        value, wants
    ):
        kinds = " or ".join(t.__name__ for t in wants)
        raise InputError(f"{where}: field {field!r} must be {kinds}, got {value!r}.")


def check_table(
    table: object,
    fields: Mapping[str, type | tuple[type, ...]],
    required: Sequence[str],
    where: str,
    kind: str,
) -> str:
    """Check one ``[[kind]]`` table of a TOML catalogue: a table, no missing or unknown field, every type right.

    Parameters
    ----------
    table : the parsed table.
    fields : field name -> wanted type(s) (``object`` for a field checked later by the caller).
    required : the fields that must be present.
    where : the file, for messages.
    kind : the array's name (``"entry"``, ``"feature"``).

    Returns
    -------
    str
        ``"<where>: <kind> '<name>'"`` (or ``"<where>: a [[<kind>]]"`` without a string name): the prefix of the
        caller's own further messages about this table.
    """
    if not isinstance(table, dict):
        raise InputError(f"{where}: every [[{kind}]] must be a table, got {table!r}.")
    name = table.get("name")
    at = f"{where}: {kind} {name!r}" if isinstance(name, str) else f"{where}: a [[{kind}]]"
    missing = [f for f in required if f not in table]
    if missing:
        raise InputError(f"{at} lacks the field(s) {missing}; required: {list(required)}.")
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise InputError(f"{at} has unknown field(s) {unknown}; known fields: {sorted(fields)}.")
    for key, value in table.items():
        check_field_type(value, fields[key], at, key)
    return at


def check_fields(
    values: Mapping[str, Any], schema: Mapping[str, Callable[[object, str], object]], prefix: str, what: str
) -> dict[str, Any]:
    """``values`` checked field by field against ``schema`` (field -> ``validator(value, name) -> clean value``);
    an unknown key (with the closest known one) or a wrong value raises :class:`InputError` naming it.

    ``prefix`` is prepended to the field names in messages (``"options."``), ``what`` names the table
    (``"a [[model]] entry"``).
    """
    unknown = [key for key in values if key not in schema]
    if unknown:
        hint = suggest(str(unknown[0]), schema)
        raise InputError(
            f"unknown field(s) {[prefix + str(k) for k in unknown]} of {what}.{hint} Known fields: {sorted(schema)}."
        )
    return {key: schema[key](value, prefix + key) for key, value in values.items()}


def read_toml_catalogue(
    path: str | os.PathLike,
    what: str,
    arrays: Sequence[str] = (),
    tables: Sequence[str] = (),
    hint: str = "",
    keys: Sequence[str] = (),
) -> dict[str, Any]:
    """Read a TOML catalogue file (a models file, the zoo, the reference features) and check its top level.

    Parameters
    ----------
    path : the file.
    what : what the file is, for messages (``"zoo catalogue"``).
    arrays : the top-level arrays of tables it may hold (``"model"`` for ``[[model]]``).
    tables : the top-level tables it may hold (``"sets"`` for ``[sets]``).
    hint : where the path came from, appended to the "does not exist" message (``" (from --models-file)"``).
    keys : other top-level keys it may hold (``"base_url"``), checked by the caller.

    Returns
    -------
    dict
        The parsed file; each of ``arrays`` present is a list of tables, each of ``tables`` present a table. The
        entries themselves are checked by the caller (:func:`check_table`, :func:`check_fields`).

    Raises
    ------
    InputError
        The file is missing, a folder, unreadable, not UTF-8, not valid TOML, has another top-level key, or an
        array / table of the wrong kind; the message names the file and the fix.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    path = Path(path)
    label = f"{what} {str(path)!r}"
    if not path.exists():
        raise InputError(f"{label} does not exist, so it cannot be read{hint}; give an existing TOML file.")
    if path.is_dir():
        raise InputError(f"{label} is a folder, not a file; give the TOML file itself.")
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise InputError(f"{label} is not UTF-8 text ({err}); TOML files are UTF-8.") from err
    except tomllib.TOMLDecodeError as err:
        raise InputError(f"{label} is not valid TOML: {err}") from err
    except OSError as err:
        raise InputError(f"{label} cannot be read ({err}); give a readable TOML file.") from err
    allowed = [f"[[{name}]]" for name in arrays] + [f"[{name}]" for name in tables] + [f"`{k}`" for k in keys]
    unknown = sorted(set(data) - set(arrays) - set(tables) - set(keys))
    if unknown:
        raise InputError(
            f"{path}: unknown top-level key(s) {unknown}; this {what} holds {' and '.join(allowed)}."
        )
    for name in arrays:
        if name in data and not (
            isinstance(data[name], list) and all(isinstance(t, dict) for t in data[name])
        ):
            raise InputError(
                f"{path}: `{name}` must be an array of tables ([[{name}]]), not {type(data[name]).__name__}."
            )
    for name in tables:
        if name in data and not isinstance(data[name], dict):
            raise InputError(f"{path}: `{name}` must be a table ([{name}]), not {type(data[name]).__name__}.")
    return data


def suggest(name: str, options: Iterable[str]) -> str:
    """Return ' Did you mean ...?' for the closest options, or an empty string."""
    close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.5)
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


class ConfigFields:
    """Mixin of the frozen, validated option dataclasses (e.g. ``AlignConfig``, ``ExtractConfig``): a round trip
    through plain JSON values and validated copies. The dataclass validates in its own ``__post_init__``."""

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values (tuples become lists), in field order."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls: type[_C], values: Mapping[str, Any]) -> _C:
        """Build from a mapping of field names (e.g. :meth:`to_dict` read back from JSON); an unknown key or a bad
        value raises :class:`InputError` naming it."""
        if not isinstance(values, Mapping):
            raise InputError(
                f"{cls.__name__} options must be a mapping of option names, got {type(values).__name__}."
            )
        known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = [key for key in values if key not in known]
        if unknown:
            hints = "".join(suggest(str(key), known) for key in unknown)
            raise InputError(
                f"unknown option(s) {unknown} of {cls.__name__}.{hints} Its options are {known}."
            )
        return cls(**values)

    @classmethod
    def coerce(cls: type[_C], value: object, name: str = "config") -> _C:
        """``value`` as an instance: None gives the defaults, an instance is itself, a mapping goes through
        :meth:`from_dict`; anything else raises :class:`InputError`."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        raise InputError(
            f"{name} must be an instance of {cls.__name__} (or a mapping of its options), got "
            f"{type(value).__name__}; build one with {cls.__name__}(...)."
        )

    def replace(self: _C, **changes: Any) -> _C:
        """A copy with some fields changed, validated again (an unknown field raises :class:`InputError`)."""
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return type(self).from_dict({**current, **changes})
