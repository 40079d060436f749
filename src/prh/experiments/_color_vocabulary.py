"""The colour vocabulary of the colours experiment: named sRGB colours from matplotlib's XKCD / CSS4 tables or a
CSV/JSON file, checked and de-duplicated."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prh.errors import InputError

#: The built-in vocabularies (matplotlib's colour tables).
VOCABULARIES = ("xkcd", "css4")
#: Fewest colours a comparison is made on.
MIN_COLORS = 16


@dataclass(frozen=True)
class Vocabulary:
    """Named colours: ``names`` (unique) and ``rgb`` ((N, 3) uint8 sRGB), plus the names dropped as duplicates of an
    earlier colour's sRGB value."""

    source: str
    names: tuple[str, ...]
    rgb: np.ndarray
    dropped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.names)

    def hex(self, i: int) -> str:
        return "#" + "".join(f"{int(c):02x}" for c in self.rgb[i])


_HEX = re.compile(r"#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})")


def parse_color(value: object, where: str) -> tuple[int, int, int]:
    """sRGB of ``value``: ``"#rrggbb"`` / ``"#rgb"`` hex, or three integers 0..255 (a list or ``"r,g,b"``).

    Raises
    ------
    InputError
        Anything else; the message names ``where`` (the colour) and the value.
    """
    if isinstance(value, str):
        text = value.strip()
        match = _HEX.fullmatch(text)
        if match:
            h = match.group(1)
            h = "".join(c * 2 for c in h) if len(h) == 3 else h
            return (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16))
        parts = [p.strip() for p in text.split(",")]
        if len(parts) == 3 and all(re.fullmatch(r"\d{1,3}", p) for p in parts):
            value = [int(p) for p in parts]
    if (
        isinstance(value, (list, tuple))
        and len(value) == 3
        and all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
    ):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise InputError(
        f"colour {where}: {value!r} is not an sRGB value; write '#rrggbb' (hex) or three integers 0..255 "
        f"('r,g,b')."
    )


def _builtin(name: str) -> list[tuple[str, object]]:
    from matplotlib import _color_data

    if name == "xkcd":  # matplotlib keeps the survey's order, least common first
        items = list(_color_data.XKCD_COLORS.items())[::-1]
        return [(key[len("xkcd:") :], value) for key, value in items]
    return list(_color_data.CSS4_COLORS.items())


def _read_file(path: Path) -> list[tuple[str, object]]:
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise InputError(f"vocabulary file {path} is not readable JSON ({err}).") from err
        if isinstance(data, dict):
            return [(str(k), v) for k, v in data.items()]
        if isinstance(data, list) and all(isinstance(r, dict) and "name" in r for r in data):
            return [(str(r["name"]), r.get("hex", r.get("rgb"))) for r in data]
        raise InputError(
            f"vocabulary file {path} must hold {{name: '#rrggbb'}} or a list of {{'name': ..., 'hex': ...}}."
        )
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=None, engine="python")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputError(f"vocabulary file {path} is not a readable CSV ({err}).") from err
    cols = [c.strip().lower() for c in frame.columns]
    frame.columns = cols
    if "name" not in cols or not ({"hex"} <= set(cols) or {"r", "g", "b"} <= set(cols)):
        raise InputError(
            f"vocabulary file {path} needs a 'name' column and a 'hex' column (or 'r', 'g', 'b'); found {cols}."
        )
    if "hex" in cols:
        return [(r["name"], r["hex"]) for r in frame.to_dict(orient="records")]
    return [(r["name"], f"{r['r']},{r['g']},{r['b']}") for r in frame.to_dict(orient="records")]


def load_vocabulary(spec: str) -> Vocabulary:
    """The colour vocabulary ``spec``: ``"xkcd"``, ``"css4"`` or a CSV/JSON file (see :class:`ColorsConfig`).

    Names must be unique and non-empty and every value a valid sRGB colour (one :class:`InputError` naming the
    first bad entry); a colour whose sRGB value repeats an earlier one is dropped (listed in ``dropped``).
    """
    if spec in VOCABULARIES:
        entries, source = _builtin(spec), spec
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            from prh._validation import suggest

            raise InputError(
                f"vocabulary {spec!r} is neither one of {list(VOCABULARIES)} nor a file.{suggest(spec, VOCABULARIES)}"
            )
        entries, source = _read_file(path), path.stem
    names: list[str] = []
    rgb: list[tuple[int, int, int]] = []
    dropped: list[str] = []
    seen_names: set[str] = set()
    seen_rgb: set[tuple[int, int, int]] = set()
    for row, (name, value) in enumerate(entries, start=1):
        name = str(name).strip()
        if not name:
            raise InputError(f"vocabulary {spec!r}: entry {row} has an empty name.")
        if name in seen_names:
            raise InputError(f"vocabulary {spec!r}: the name {name!r} appears twice; give each colour once.")
        color = parse_color(value, f"{name!r} (entry {row} of {spec!r})")
        seen_names.add(name)
        if color in seen_rgb:
            dropped.append(name)
            continue
        seen_rgb.add(color)
        names.append(name)
        rgb.append(color)
    if len(names) < MIN_COLORS:
        raise InputError(
            f"vocabulary {spec!r} has {len(names)} distinct colours; the kernels need at least {MIN_COLORS}."
        )
    return Vocabulary(source, tuple(names), np.asarray(rgb, dtype=np.uint8), tuple(dropped))
