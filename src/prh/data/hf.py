"""Paired datasets from the Hugging Face hub through :mod:`datasets` -- e.g. the paper's ``minhuh/prh``.

The paper's evaluation set is ``load_dataset("minhuh/prh", revision="wit_1024", split="train")``: 1,024 WIT
images (column ``image``) each with a list of captions (column ``text``); the reference uses ``text[0]``.
Images are kept undecoded (``datasets.Image(decode=False)``) so that the fingerprint hashes the stored bytes and
decoding errors name the item.

Without network access the hub cannot be reached: :class:`prh.errors.OfflineError` says so and points to the
offline ``openmoji`` dataset. A copy already in the local ``datasets`` cache still loads.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from prh.data.base import PairedDataset, decode_image
from prh.errors import InputError, OfflineError

if TYPE_CHECKING:
    from PIL import Image

PAPER_REPO = "minhuh/prh"
PAPER_REVISION = "wit_1024"
IMAGE_COLUMNS = ("image", "img", "jpg", "png")
TEXT_COLUMNS = ("text", "caption", "captions", "txt", "sentences")

_TRUE = {"1", "ON", "YES", "TRUE"}


def _offline_env() -> bool:
    return any(
        os.environ.get(v, "").upper() in _TRUE
        for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub endpoint (``$HF_ENDPOINT`` or huggingface.co:443) opens in time."""
    return url_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"), timeout)


#: Hub endpoint -> whether it answered, probed once per process by :func:`hub_offline`.
_HUB_PROBES: dict[str, bool] = {}


def hub_offline(timeout: float = 2.0) -> bool:
    """True when offline mode is on (``HF_HUB_OFFLINE`` and friends) or the hub endpoint does not accept a TCP
    connection within ``timeout`` seconds (probed once per process and endpoint)."""
    if _offline_env():
        return True
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if endpoint not in _HUB_PROBES:
        _HUB_PROBES[endpoint] = url_reachable(endpoint, timeout)
    return not _HUB_PROBES[endpoint]


@contextlib.contextmanager
def hub_offline_mode() -> Iterator[None]:
    """Make ``huggingface_hub`` (and ``transformers``, timm, open_clip through it) use only the local cache."""
    import huggingface_hub.constants as hconst

    saved = hconst.HF_HUB_OFFLINE
    hconst.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hconst.HF_HUB_OFFLINE = saved


def url_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the host and port of ``url`` opens within ``timeout`` seconds."""
    parts = urlparse(url)
    host = parts.hostname or "huggingface.co"
    port = parts.port or (80 if parts.scheme == "http" else 443)
    # name resolution ignores socket timeouts (a dead resolver can take 5-20 s): bound it with a worker thread
    import concurrent.futures

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    try:
        addresses = pool.submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM).result(timeout=timeout)
    except (OSError, concurrent.futures.TimeoutError):
        return False
    finally:
        pool.shutdown(wait=False)
    for family, kind, proto, _, address in addresses[:3]:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(timeout)
                sock.connect(address)
                return True
        except OSError:
            continue
    return False


@contextlib.contextmanager
def _offline_mode() -> Iterator[None]:
    """Make ``datasets`` use only its local cache (no retries against an unreachable hub)."""
    import datasets.config as dconfig
    import huggingface_hub.constants as hconst

    saved = (dconfig.HF_HUB_OFFLINE, getattr(dconfig, "HF_DATASETS_OFFLINE", None), hconst.HF_HUB_OFFLINE)
    dconfig.HF_HUB_OFFLINE = True
    if saved[1] is not None:
        dconfig.HF_DATASETS_OFFLINE = True
    hconst.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        dconfig.HF_HUB_OFFLINE = saved[0]
        if saved[1] is not None:
            dconfig.HF_DATASETS_OFFLINE = saved[1]
        hconst.HF_HUB_OFFLINE = saved[2]


def _offline_error(repo: str, revision: str | None, err: BaseException | None) -> OfflineError:
    rev = f" (revision {revision})" if revision else ""
    cause = f" ({type(err).__name__}: {err})" if err is not None else ""
    return OfflineError(
        f"cannot load dataset {repo!r}{rev}: the Hugging Face hub is unreachable and no local copy is cached"
        f"{cause}. Connect to the internet once, or use the offline dataset instead: `--dataset openmoji`."
    )


def load_hub_dataset(repo: str, revision: str | None, split: str, **kwargs: object):
    """``datasets.load_dataset(repo, revision=..., split=...)`` with offline failures turned into OfflineError."""
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a core dependency
        raise InputError("loading a hub dataset needs the `datasets` package: pip install datasets") from err
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    offline = _offline_env() or not hub_reachable()
    ctx = _offline_mode() if offline else contextlib.nullcontext()
    try:
        with ctx:
            return datasets.load_dataset(repo, revision=revision, split=split, **kwargs)
    except (ConnectionError, LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        raise _offline_error(repo, revision, err) from err
    except FileNotFoundError as err:  # DatasetNotFoundError and friends
        if offline:
            raise _offline_error(repo, revision, err) from err
        raise InputError(f"dataset {repo!r} (revision {revision}) was not found on the hub: {err}") from err
    except ValueError as err:  # e.g. unknown split
        raise InputError(f"dataset {repo!r}: {err}") from err


class HFDataset(PairedDataset):
    """A paired dataset read from a Hugging Face dataset with an image column and a caption column.

    Parameters
    ----------
    repo : str
        Hub id, e.g. ``"minhuh/prh"``.
    revision : str, optional
        Branch / tag / commit (``"wit_1024"`` for the paper's set).
    split : str
        Split to load (default ``"train"``).
    image_column, text_column : str, optional
        Column names; by default the first ``datasets.Image`` column (or ``image``) and the first of
        ``text``/``caption``/``captions``.
    id_column : str, optional
        Column with item ids; by default ids are the zero-padded row numbers (``"00000"``, ...).
    n : int, optional
        Read only the first ``n`` rows.
    hf_dataset : datasets.Dataset, optional
        An already loaded dataset (skips the hub; used by tests and by callers that loaded it themselves).
    """

    def __init__(
        self,
        repo: str,
        revision: str | None = None,
        split: str = "train",
        image_column: str | None = None,
        text_column: str | None = None,
        id_column: str | None = None,
        n: int | None = None,
        hf_dataset: object = None,
        name: str | None = None,
    ) -> None:
        ds = hf_dataset if hf_dataset is not None else load_hub_dataset(repo, revision, split)
        if n is not None and n < len(ds):
            ds = ds.select(range(n))
        image_column = image_column or self._guess_image_column(ds)
        text_column = text_column or next((c for c in TEXT_COLUMNS if c in ds.column_names), None)
        for label, col in (("image_column", image_column), ("text_column", text_column)):
            if col is None or col not in ds.column_names:
                raise InputError(
                    f"dataset {repo!r}: {label}={col!r} is not a column; columns are {ds.column_names}. "
                    f"Pass the right one (e.g. load_dataset('hf:{repo}', {label}='...'))."
                )
        try:
            import datasets

            ds = ds.cast_column(image_column, datasets.Image(decode=False))
        except (ValueError, TypeError) as err:
            raise InputError(
                f"dataset {repo!r}: column {image_column!r} does not hold images ({err})."
            ) from err
        self.repo, self.revision, self.split = repo, revision, split
        self.image_column, self.text_column = image_column, text_column
        self._ds = ds
        width = max(5, len(str(len(ds) - 1)))
        ids = [str(x) for x in ds[id_column]] if id_column else [f"{i:0{width}d}" for i in range(len(ds))]
        default_name = f"{repo}@{revision}" if revision else repo
        super().__init__(name or default_name, ids, list(ds[text_column]))

    @staticmethod
    def _guess_image_column(ds) -> str | None:
        try:
            import datasets

            for col, feature in ds.features.items():
                if isinstance(feature, datasets.Image):
                    return col
        except (ImportError, AttributeError):
            pass
        return next((c for c in IMAGE_COLUMNS if c in ds.column_names), None)

    def _image_bytes(self, i: int) -> bytes:
        cell = self._ds[i][self.image_column]
        if isinstance(cell, dict):
            if cell.get("bytes"):
                return cell["bytes"]
            if cell.get("path"):
                try:
                    with open(cell["path"], "rb") as fh:
                        return fh.read()
                except OSError as err:
                    raise InputError(f"item {self.ids[i]!r}: cannot read {cell['path']!r} ({err}).") from err
        raise InputError(f"item {self.ids[i]!r}: the image cell is empty.")

    def _load_image(self, i: int) -> Image.Image:
        return decode_image(self._image_bytes(i), self.ids[i], f"{self.name} row {i}")
