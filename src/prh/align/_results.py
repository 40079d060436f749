"""The results of an alignment run: the tidy table, every layer grid and the provenance, saved as CSV + parquet +
JSON + safetensors (never pickle) and read back with checks. Re-exported by :mod:`prh.align.engine`."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from prh.atomic import atomic_write_group
from prh.errors import InputError


@dataclass
class Results:
    """Output of a :class:`PairGrid`.

    table : tidy DataFrame, one row per (model_x, model_y, metric[, control]) with :data:`TABLE_COLUMNS`
        (plus :data:`STATS_COLUMNS` when calibrated).
    grids : ``{"<metric>|<control>|<model_x>|<model_y>": (Lx, Ly) float64 array}`` — every layer grid.
    provenance : dataset, models, metrics, options, versions, timing.
    """

    table: pd.DataFrame
    grids: dict[str, np.ndarray] = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    @staticmethod
    def grid_key(metric: str, control: str, model_x: str, model_y: str) -> str:
        return f"{metric}|{control}|{model_x}|{model_y}"

    def grid(self, metric: str, model_x: str, model_y: str, control: str = "none") -> np.ndarray:
        """The layer grid of a pair (transposed if only (model_y, model_x) was computed)."""
        key = self.grid_key(metric, control, model_x, model_y)
        if key in self.grids:
            return self.grids[key]
        return self.grids[self.grid_key(metric, control, model_y, model_x)].T

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write results.csv, results.parquet, provenance.json and grids.safetensors to ``out_dir``, all together or
        not at all (:func:`prh.atomic.atomic_write_group`): a full disk leaves the previous files as they were."""
        from safetensors.numpy import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        grids = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in self.grids.items()}
        text = json.dumps(self.provenance, indent=2, default=str)
        atomic_write_group(
            {
                out / "results.csv": lambda p: self.table.to_csv(p, index=False),
                out / "results.parquet": lambda p: self.table.to_parquet(p, index=False),
                out / "provenance.json": lambda p: Path(p).write_text(text),
                out / "grids.safetensors": lambda p: save_file(grids, p),
            }
        )
        return out

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> Results:
        """Read results written by :meth:`save`.

        Raises
        ------
        InputError
            No results in ``out_dir``, or a file that cannot be read or parsed (corrupt parquet, JSON or
            safetensors, a table without the result columns); the message names the file.
        """
        from safetensors.numpy import load_file

        out = Path(out_dir)
        table_path = out / "results.parquet"
        if out.is_file():
            raise InputError(
                f"{out} is a file, not a folder: give the results folder `prh align --out` wrote."
            )
        if not table_path.is_file():
            raise InputError(
                f"{out} holds no results (results.parquet is missing); run `prh align` or `prh demo` first."
            )
        fix = "re-run `prh align --out DIR` (or `prh demo`) to write it again"
        try:
            table = pd.read_parquet(table_path)
        except Exception as err:  # noqa: BLE001 - pyarrow raises many types for a bad file
            raise InputError(
                f"{table_path} is not a readable results table ({_reason(err)}); {fix}."
            ) from None
        missing = [c for c in RESULT_CORE_COLUMNS if c not in table.columns]
        if missing:
            raise InputError(
                f"{table_path} is not a prh results table: it lacks the column(s) {missing}; {fix}."
            )
        if not pd.api.types.is_numeric_dtype(table["score"]):
            raise InputError(
                f"{table_path}: the column 'score' holds non-numbers ({table['score'].dtype}); {fix}."
            )
        if table.empty:
            raise InputError(f"{table_path} is empty: the alignment run produced no model pairs.")
        grids_path = out / "grids.safetensors"
        grids: dict[str, np.ndarray] = {}
        if grids_path.is_file():
            try:
                grids = dict(load_file(str(grids_path)))
            except Exception as err:  # noqa: BLE001 - safetensors raises several types for a bad file
                raise InputError(
                    f"{grids_path} is not a readable safetensors file ({_reason(err)}); {fix}."
                ) from None
        prov_path = out / "provenance.json"
        provenance: dict = {}
        if prov_path.is_file():
            try:
                provenance = json.loads(prov_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise InputError(f"{prov_path} is not readable JSON ({_reason(err)}); {fix}.") from None
            if not isinstance(provenance, dict):
                raise InputError(
                    f"{prov_path} must hold a JSON object, not {type(provenance).__name__}; {fix}."
                )
        return cls(table, grids, provenance)


#: Columns :meth:`Results.load` requires of a results table (the ones the report and summaries read).
RESULT_CORE_COLUMNS = ["model_x", "model_y", "modality_x", "modality_y", "metric", "N", "score", "control"]


def _reason(err: BaseException) -> str:
    """One line of an exception, for messages about a file that could not be read."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__
