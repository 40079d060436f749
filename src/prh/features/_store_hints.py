"""The feature store's lookup hints: an entry found by dataset name only, and the messages that say where else a
missing model is stored and which `prh extract` command computes it. Private: :mod:`prh.features.store` is the
public face (:class:`~prh.features.store.FeatureStore` inherits these methods)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from prh.errors import InputError
from prh.features._store_layout import DEFAULT_ROOT, cli_dataset

if TYPE_CHECKING:
    from prh.data.base import PairedDataset


class LookupHints:
    """Methods of :class:`~prh.features.store.FeatureStore` that find entries by name and word its hints (they use
    ``self.root`` and ``self.entries()``)."""

    def _resolve_by_name(self, dataset_name: str, model: str, pool: str, n: int | None) -> Path | None:
        """The safetensors path for a dataset given only by name (or by its folder name ``<slug>-n<N>``)."""
        hits = []
        for entry in self.entries():
            ds = entry.get("dataset", {})
            folder = Path(entry["path"]).parent.name
            named = ds.get("name") == dataset_name or folder == dataset_name
            if (
                named
                and entry.get("model") == model
                and entry.get("pool") == pool
                and (n is None or ds.get("n") == n)
            ):
                hits.append(entry)
        if not hits:
            return None
        ns = sorted({h["dataset"]["n"] for h in hits})
        if len(ns) > 1:
            raise InputError(
                f"features of {model!r} on dataset {dataset_name!r} exist for several sizes N={ns}; "
                f"say which one (load(..., n=N) or pass the dataset itself)."
            )
        return Path(hits[0]["path"])

    def _common_hint(
        self,
        missing: list[str],
        pool_of: Mapping[str, str],
        dataset: PairedDataset | None,
        dataset_name: str | None,
        n: int | None,
    ) -> str:
        """For find_many's first line: when every missing model is stored for one other size N (same pooling),
        say so -- the usual cause is a run without --n that opened the whole dataset."""
        name = dataset.name if dataset is not None else str(dataset_name)
        size = len(dataset) if dataset is not None else n
        common: set[int] | None = None
        for model in missing:
            sizes = {
                m for m, p in self._stored_elsewhere(name, model, pool_of[model], size) if p == pool_of[model]
            }
            common = sizes if common is None else common & sizes
        if not common:
            return ""
        ns = sorted(common)
        at = f" for N={size}" if size else ""
        return (
            f"{at}; the store has all of them for N={', '.join(map(str, ns))}: pass --n {ns[0]} to use those"
        )

    def _extract_command(
        self, model: str, dataset_name: str, n: int | None, pool: str, force: bool = False
    ) -> str:
        """The `prh extract` command that (re)computes one entry."""
        cmd = (
            f"prh extract{' --force' if force else ''} --models {model} --dataset {cli_dataset(dataset_name)}"
        )
        if n:
            cmd += f" --n {n}"
        if pool != "mean":
            cmd += f" --pool {pool}"
        if str(self.root) != DEFAULT_ROOT:
            cmd += f" --store {self.root}"
        return cmd

    def _stored_elsewhere(
        self, dataset_name: str, model: str, pool: str, n: int | None
    ) -> list[tuple[int, str]]:
        """The (N, pool) pairs under which ``model`` is stored for this dataset name other than (``n``, ``pool``)
        -- e.g. `prh align` without --n opened the whole dataset while the features are of its first N items."""
        found = set()
        for entry in self.entries():
            ds = entry.get("dataset") or {}
            folder = Path(entry["path"]).parent.name
            if entry.get("model") != model or (ds.get("name") != dataset_name and folder != dataset_name):
                continue
            if (ds.get("n"), entry.get("pool")) != (n, pool) and isinstance(ds.get("n"), int):
                found.add((int(ds["n"]), str(entry.get("pool"))))
        return sorted(found)

    @staticmethod
    def _elsewhere_hint(found: list[tuple[int, str]], n: int | None, pool: str) -> str:
        """`` (the store has them for N=32, pool mean: pass --n 32 --pool mean)`` or an empty string."""
        if not found:
            return ""
        where = "; ".join(f"N={m}, pool {p}" for m, p in found)
        m, p = found[0]
        flags = " ".join(filter(None, [f"--n {m}" if m != n else "", f"--pool {p}" if p != pool else ""]))
        return f" (the store has them for {where}: to use those, pass {flags})"
