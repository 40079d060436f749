"""Sharded, resumable extraction for big datasets: rows extracted S at a time, each shard written to disk as it is
done, so that a killed run resumes from its last complete shard.

The shards of one store entry live in a hidden folder next to it::

    <root>/<dataset slug>-n<N>/.<model slug>__<pool>.shards/rows-0000000-0004096.safetensors

Each shard file holds the rows' pooled layers (``layer.000``, ...) and per-sample arrays (``sample.<name>``), and
in its header the settings that produced it (the *key*: model, pooling, dataset fingerprint, N, shard size, batch
size, dtype, device, memory format), the adapter's metadata and the sha256 of every tensor. A shard is reused only
when its key equals the running extraction's and its digests match; otherwise it is recomputed. Shards are written
atomically (:func:`prh.atomic.atomic_write`): a killed write leaves no half shard. When every shard is done they are
assembled into the one store entry (written as without shards) and the folder is removed.

Rows are extracted in the same batches in a first run and in a resumed one, so a resumed extraction is
bit-identical to an uninterrupted one (tested).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from prh.atomic import atomic_write
from prh.errors import ExtractionError
from prh.features.store import tensor_digest
from prh.models.result import FeatureResult

SHARD_FORMAT = "prh-feature-shard"
SHARD_VERSION = 1


def shard_folder(entry: Path) -> Path:
    """The shard folder of a store entry (its safetensors path): ``.<stem>.shards`` beside it."""
    return entry.parent / f".{entry.stem}.shards"


def shard_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """``[(0, S), (S, 2S), ..., (kS, n)]``: the row ranges of ``n`` rows in shards of ``size``."""
    return [(start, min(n, start + size)) for start in range(0, n, size)]


class RowRange:
    """Rows ``[start, stop)`` of a paired dataset, as an adapter reads them (``len``, ``image(i)``,
    ``text(i, caption_index)``, ``texts(caption_index)``, ``name``); row ``i`` is the dataset's row ``start + i``."""

    def __init__(self, dataset: Any, start: int, stop: int) -> None:
        self.dataset = dataset
        self.start, self.stop = int(start), int(stop)
        self.name = getattr(dataset, "name", "?")

    def __len__(self) -> int:
        return self.stop - self.start

    def image(self, i: int):
        """Image of dataset row ``start + i``."""
        return self.dataset.image(self.start + int(i))

    def text(self, i: int, caption_index: int = 0) -> str:
        """Caption ``caption_index`` of dataset row ``start + i``."""
        return self.dataset.text(self.start + int(i), caption_index)

    def texts(self, caption_index: int = 0) -> list[str]:
        """Caption ``caption_index`` of every row of the range, in order."""
        if hasattr(self.dataset, "text"):
            return [self.dataset.text(i, caption_index) for i in range(self.start, self.stop)]
        return list(self.dataset.texts(caption_index)[self.start : self.stop])


class ShardFolder:
    """The shard files of one store entry under one key (see the module docstring).

    Parameters
    ----------
    folder : Path
        The shard folder (:func:`shard_folder` of the entry).
    key : dict
        JSON values that must match for a shard to be reused.
    """

    def __init__(self, folder: Path, key: dict) -> None:
        self.folder = Path(folder)
        self.key = json.dumps(key, sort_keys=True)

    def path(self, start: int, stop: int) -> Path:
        """The file of rows ``[start, stop)``."""
        return self.folder / f"rows-{start:010d}-{stop:010d}.safetensors"

    def read(self, start: int, stop: int) -> FeatureResult | None:
        """The stored shard of rows ``[start, stop)`` when it exists, was written under this key and its tensors
        match their digests; None otherwise (a mismatching or unreadable file is removed)."""
        from safetensors import safe_open

        path = self.path(start, stop)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                header = fh.metadata() or {}
                if header.get("format") != SHARD_FORMAT or header.get("key") != self.key:
                    raise ValueError("written under other settings")
                digests = json.loads(header["sha256"])
                tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118 - not a dict
            if set(digests) != set(tensors) or any(
                tensor_digest(t) != digests[k] for k, t in tensors.items()
            ):
                raise ValueError("checksum mismatch")
            names = json.loads(header["layer_names"])
            layers = [tensors[f"layer.{i:03d}"] for i in range(len(names))]
            if any(t.ndim != 2 or t.shape[0] != stop - start for t in layers):
                raise ValueError("wrong number of rows")
            per_sample = {k[len("sample.") :]: t for k, t in tensors.items() if k.startswith("sample.")}
            meta = json.loads(header["meta"])
        except Exception:  # noqa: BLE001 - any bad shard is recomputed
            path.unlink(missing_ok=True)
            return None
        return FeatureResult(layers=layers, layer_names=names, per_sample=per_sample, meta=meta)

    def write(self, start: int, stop: int, result: FeatureResult) -> None:
        """Write the shard of rows ``[start, stop)`` atomically."""
        from safetensors.torch import save_file

        tensors = {f"layer.{i:03d}": t.detach().cpu().contiguous() for i, t in enumerate(result.layers)}
        tensors.update({f"sample.{k}": t.detach().cpu().contiguous() for k, t in result.per_sample.items()})
        header = {
            "format": SHARD_FORMAT,
            "version": str(SHARD_VERSION),
            "key": self.key,
            "rows": json.dumps([start, stop]),
            "layer_names": json.dumps(list(result.layer_names)),
            "meta": json.dumps(result.meta, default=str),
            "sha256": json.dumps({k: tensor_digest(t) for k, t in tensors.items()}),
        }
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path(start, stop), lambda tmp: save_file(tensors, tmp, metadata=header))

    def remove(self) -> None:
        """Delete the folder and every shard in it (after the entry was written)."""
        remove_shards(self.folder)


def remove_shards(folder: Path) -> None:
    """Delete a shard folder if it exists (best effort: a file that cannot be removed stays)."""
    shutil.rmtree(folder, ignore_errors=True)


def run_shards(
    folder: ShardFolder,
    n: int,
    size: int,
    extract: Callable[[int, int], FeatureResult],
    skip: Callable[[int], object] | None = None,
) -> tuple[FeatureResult, int]:
    """Extract ``n`` rows shard by shard, reusing the shards already in ``folder``; assemble the result.

    Parameters
    ----------
    folder : ShardFolder
        Where shards are read from and written to.
    n, size : int
        Rows in all and rows per shard.
    extract : callable
        ``extract(start, stop) -> FeatureResult`` of rows ``[start, stop)`` (rows in order).
    skip : callable, optional
        Called with the number of rows of each reused shard (a progress bar's ``update``).

    Returns
    -------
    (FeatureResult, int)
        All rows (layers (N, D_l) float32 in row order, per-sample arrays (N,), the metadata of the shards merged:
        wall time summed, samples/s, bits per byte and token counts recomputed over all rows) and the number of
        rows reused from earlier runs. Peak memory: the assembled result plus one shard.
    """
    ranges = shard_ranges(n, size)
    metas: list[dict] = []
    reused = 0
    for start, stop in ranges:
        if folder.read(start, stop) is not None:
            reused += stop - start
            if skip is not None:
                skip(stop - start)
            continue
        folder.write(start, stop, extract(start, stop))
    layers: list[torch.Tensor] = []
    per_sample: dict[str, torch.Tensor] = {}
    names: list[str] | None = None
    for start, stop in ranges:  # assemble from the files: one shard in memory at a time
        part = folder.read(start, stop)
        if part is None:
            raise ExtractionError(
                f"the shard of rows {start}..{stop} in {folder.folder} vanished while assembling"
            )
        if names is None:
            names = list(part.layer_names)
            layers = [torch.empty(n, t.shape[1], dtype=t.dtype) for t in part.layers]
            per_sample = {k: torch.empty(n, dtype=t.dtype) for k, t in part.per_sample.items()}
        if list(part.layer_names) != names or set(part.per_sample) != set(per_sample):
            raise ExtractionError(
                f"the shards in {folder.folder} disagree on the layers ({names} vs {list(part.layer_names)})"
            )
        for buf, t in zip(layers, part.layers, strict=True):
            buf[start:stop] = t
        for k, t in part.per_sample.items():
            per_sample[k][start:stop] = t
        metas.append(part.meta)
    assert names is not None
    return FeatureResult(
        layers=layers,
        layer_names=names,
        per_sample=per_sample,
        meta=merge_meta(metas, per_sample, n, size, reused),
    ), reused


def merge_meta(
    metas: Sequence[dict], per_sample: dict[str, torch.Tensor], n: int, size: int, reused: int
) -> dict:
    """One metadata dict for ``n`` rows extracted in shards of ``size`` rows (``metas``: each shard's, in row
    order): the last shard's, with the wall time summed, samples/s and bits per byte over all rows, token counts
    summed, and ``shards`` = {count, rows (per shard), reused_rows (rows from an earlier run's shards)}."""
    meta = dict(metas[-1])
    wall = sum(float(m.get("wall_time_s") or 0.0) for m in metas)
    meta["wall_time_s"] = round(wall, 4)
    meta["samples_per_s"] = round(n / wall, 3) if wall > 0 else None
    if all(isinstance(m.get("n_tokens"), int) for m in metas):
        meta["n_tokens"] = sum(m["n_tokens"] for m in metas)
    if "bpb" in per_sample:
        meta["bits_per_byte"] = float(per_sample["bpb"].mean())
    meta["shards"] = {"count": len(metas), "rows": size, "reused_rows": reused}
    return meta
