"""A local folder of images with a caption file, laid out like Hugging Face's ``imagefolder``.

::

    my_pairs/
      metadata.jsonl      # {"file_name": "cat.jpg", "text": "a cat on a sofa"}   (one JSON object per line)
      cat.jpg             # or metadata.csv with a header: file_name,text
      ...

Columns: ``file_name`` (path relative to the folder, required); the caption(s) in ``text``, ``caption`` or
``captions`` (a string, or a list of strings in JSONL / a JSON list in a CSV cell; each row may use any one of the
three spellings); optionally ``id`` (defaults to ``file_name``). Rows keep the file's order.
"""

from __future__ import annotations

import json
from pathlib import Path

from prh.data.base import FileImages, PairedDataset
from prh.errors import InputError

CAPTION_COLUMNS = ("text", "caption", "captions")
METADATA_FILES = ("metadata.jsonl", "metadata.csv")


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}: line {lineno} is not valid JSON ({err.msg}).") from err
            if not isinstance(row, dict):
                raise InputError(f"{path}: line {lineno} must be a JSON object with file_name and text.")
            rows.append(row)
    return rows


def _read_csv(path: Path) -> list[dict]:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as err:
        raise InputError(f"{path}: cannot parse the CSV file ({err}).") from err
    rows = frame.to_dict(orient="records")
    for row in rows:
        for col in ("captions", "caption", "text"):
            value = row.get(col)
            if isinstance(value, str) and value.lstrip().startswith("["):
                try:
                    parsed = json.loads(value)
                except json.JSONDecodeError:
                    continue
                if isinstance(parsed, list):
                    row[col] = parsed
    return rows


def _row_captions(row: dict, item_id: str, meta: Path) -> object:
    """The caption(s) of one row, from whichever of ``text`` / ``caption`` / ``captions`` the row fills (one only)."""
    filled = [c for c in CAPTION_COLUMNS if row.get(c) not in (None, "", [])]
    if len(filled) > 1:
        raise InputError(
            f"{meta}: item {item_id!r} has captions in {filled}; put them in one of the columns (a list in "
            f"'captions' for several)."
        )
    if not filled:
        raise InputError(f"{meta}: item {item_id!r} has no caption; fill one of {list(CAPTION_COLUMNS)}.")
    return row[filled[0]]


class FolderDataset(FileImages, PairedDataset):
    """Images in a local folder with captions from ``metadata.jsonl`` or ``metadata.csv``.

    Parameters
    ----------
    root : str or PathLike
        The folder. Its absolute path becomes the dataset name ``"folder:<abs path>"``.

    Raises
    ------
    InputError
        No metadata file, no ``file_name`` / caption column, an empty caption, a duplicate id or a missing image
        file (each names the item). A corrupt image raises when :meth:`image` loads it.
    """

    def __init__(self, root: str | Path) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise InputError(f"dataset folder {str(root)!r} does not exist or is not a folder.")
        self.root = root.resolve()
        meta = next((self.root / f for f in METADATA_FILES if (self.root / f).is_file()), None)
        if meta is None:
            raise InputError(
                f"dataset folder {str(self.root)!r} has no metadata.jsonl or metadata.csv; add one with a "
                f"'file_name' column and a 'text' (or 'caption'/'captions') column."
            )
        rows = _read_jsonl(meta) if meta.suffix == ".jsonl" else _read_csv(meta)
        if not rows:
            raise InputError(f"{meta} lists no items; add one row per image.")
        columns = set().union(*rows)
        if "file_name" not in columns or not columns.intersection(CAPTION_COLUMNS):
            raise InputError(
                f"{meta} must have a 'file_name' column and one of {list(CAPTION_COLUMNS)}; "
                f"found columns {sorted(columns)}."
            )
        ids, captions, files = [], [], []
        for k, row in enumerate(rows):
            file_name = row.get("file_name")
            if not isinstance(file_name, str) or not file_name.strip():
                raise InputError(f"{meta}: row {k + 1} has no file_name.")
            item_id = str(row.get("id") or file_name)
            path = (self.root / file_name).resolve()
            if not path.is_relative_to(self.root):
                raise InputError(f"item {item_id!r}: file_name {file_name!r} points outside {self.root}.")
            if not path.is_file():
                raise InputError(f"item {item_id!r}: image file {str(path)!r} does not exist.")
            ids.append(item_id)
            captions.append(_row_captions(row, item_id, meta))
            files.append(path)
        self.metadata_file = meta
        self.files = files
        super().__init__(f"folder:{self.root}", ids, captions)
