"""Resumable, verified HTTP downloads (used for the paper's published feature files).

:func:`download` fetches one URL into a file with ``requests``: timeouts on connect and read, retries with
exponential backoff on connection errors, cut-short transfers, HTTP 429 and 5xx; a progress bar; and resume. The
bytes go to ``<dest>.part`` (appended to in place, so that an interrupted download continues where it stopped,
with an HTTP ``Range`` request) next to a small ``<dest>.part.json`` that records the URL, the server's validator
(``ETag`` / ``Last-Modified``, sent back as ``If-Range`` so that a file changed on the server is never spliced onto
an old beginning) and the announced size. Once the transfer is complete, the size and sha256 are checked against
the expected ones when they are known; only then is the file moved onto ``dest`` (``os.replace``, atomic). A file
that fails the check is deleted: nothing half-verified is ever left under ``dest``.

Nothing here unpickles or otherwise interprets the bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from prh._validation import ConfigFields, check_bool, check_float, check_int
from prh.atomic import atomic_write_text
from prh.errors import DownloadError

__all__ = ["DownloadOptions", "DownloadResult", "download", "sha256_file"]

#: HTTP statuses worth another try (rate limit, server trouble); any other 4xx/5xx is final.
RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)
_CONTENT_RANGE = re.compile(r"bytes\s+(?P<start>\d+)-(?P<end>\d+)/(?P<total>\d+|\*)")
_UNSATISFIABLE = re.compile(r"bytes\s+\*/(?P<total>\d+)")


@dataclass(frozen=True)
class DownloadOptions(ConfigFields):
    """How to download: every field is validated on construction (an :class:`~prh.errors.InputError` names it).

    Attributes
    ----------
    timeout : seconds to wait for the connection and for each read (default 30).
    retries : further attempts after a failed one (default 5); each resumes where the previous one stopped.
    backoff : seconds before the first retry, doubled for each further one, at most 60 (default 1).
    progress : show a progress bar on stderr (default True).
    chunk_size : bytes read and written at a time (default 1 MiB).
    """

    timeout: float = 30.0
    retries: int = 5
    backoff: float = 1.0
    progress: bool = True
    chunk_size: int = 1 << 20

    def __post_init__(self) -> None:
        check_float(self.timeout, "timeout", 0.0, None, inclusive=(False, True), hint="seconds")
        check_int(self.retries, "retries", minimum=0, hint="further attempts after a failed one")
        check_float(self.backoff, "backoff", 0.0, None, hint="seconds before the first retry")
        check_bool(self.progress, "progress")
        check_int(self.chunk_size, "chunk_size", minimum=1, hint="bytes")


@dataclass(frozen=True)
class DownloadResult:
    """A completed download: where it is, its size and sha256, and how many bytes this call transferred."""

    path: Path
    size: int
    sha256: str
    transferred: int
    resumed_from: int


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """The sha256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def _part_paths(dest: Path) -> tuple[Path, Path]:
    return dest.with_name(dest.name + ".part"), dest.with_name(dest.name + ".part.json")


def _read_state(state_path: Path) -> dict:
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _discard(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


class _Retry(Exception):
    """One attempt failed in a way that another attempt may fix (the message says how)."""


def _describe(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _attempt(
    session, url: str, part: Path, state_path: Path, expected_size: int | None, options: DownloadOptions
) -> int:
    """One GET, appended to ``part`` (resuming when it has bytes). Returns the bytes written; raises _Retry for
    transient failures and DownloadError for final ones."""
    import requests

    state = _read_state(state_path)
    offset = part.stat().st_size if part.exists() else 0
    if offset and expected_size is not None and offset > expected_size:
        _discard(part)  # longer than the file can be: not a prefix of it
        offset = 0
    headers = {
        "Accept-Encoding": "identity"
    }  # byte ranges must refer to the file itself, not a compressed form
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if state.get("url") == url and state.get("validator"):
            headers["If-Range"] = state["validator"]
    try:
        response = session.get(url, headers=headers, stream=True, timeout=(options.timeout, options.timeout))
    except requests.exceptions.InvalidURL as err:
        raise DownloadError(f"{url} is not a valid URL ({_describe(err)}); check --base-url.") from err
    except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
        raise _Retry(f"cannot connect: {_describe(err)}") from err

    with response:
        status = response.status_code
        if status == 416:  # the range starts at or beyond the end: the part is complete, or not a prefix
            match = _UNSATISFIABLE.match(response.headers.get("Content-Range", ""))
            if match and int(match["total"]) == offset:
                return 0
            _discard(part)
            raise _Retry("the server refused to resume the partial file; starting again from the beginning")
        if status in RETRY_STATUSES:
            raise _Retry(f"HTTP {status} {response.reason}")
        if status >= 400:
            hint = (
                "the file is not at this address (the authors' server may be down or have moved it): use a mirror "
                "with --base-url URL or PRH_REFERENCE_URL"
                if status in (404, 410)
                else "check the URL, or use a mirror with --base-url URL or PRH_REFERENCE_URL"
            )
            raise DownloadError(f"downloading {url} failed: HTTP {status} {response.reason}; {hint}.")
        if status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if not match or int(match["start"]) != offset:
                _discard(part)
                raise _Retry("the server answered the resume with another byte range; starting again")
            total = None if match["total"] == "*" else int(match["total"])
            mode = "ab"
        else:  # 200: the whole file (no resume support, or the file changed since the part was written)
            offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
        if expected_size is not None and total is not None and total != expected_size:
            _discard(part, state_path)
            raise DownloadError(
                f"{url} is {total:,} bytes but the published file is {expected_size:,} bytes: this is not the "
                f"file the catalogue describes (wrong URL, or a mirror with another version). Nothing was stored."
            )
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        atomic_write_text(state_path, json.dumps({"url": url, "validator": validator, "total": total}))
        from tqdm.auto import tqdm

        written = 0
        bar = tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=part.name[: -len(".part")],
            disable=not options.progress,
            leave=False,
        )
        try:
            with open(part, mode) as fh:
                try:
                    for chunk in response.iter_content(chunk_size=options.chunk_size):
                        if chunk:
                            fh.write(chunk)
                            written += len(chunk)
                            bar.update(len(chunk))
                except (
                    requests.exceptions.ConnectionError,
                    requests.exceptions.ChunkedEncodingError,
                    requests.exceptions.Timeout,
                ) as err:
                    raise _Retry(f"the transfer was cut short: {_describe(err)}") from err
        finally:
            bar.close()
        have = offset + written
        if total is not None and have < total:
            raise _Retry(f"the server closed the connection after {have:,} of {total:,} bytes")
        if total is not None and have > total:
            _discard(part)
            raise _Retry(f"the server sent {have:,} bytes for a {total:,}-byte file; starting again")
        return written


def download(
    url: str,
    dest: str | os.PathLike,
    size: int | None = None,
    sha256: str | None = None,
    options: DownloadOptions | None = None,
    session: object = None,
) -> DownloadResult:
    """Download ``url`` to ``dest``, resuming a partial download and checking size and sha256 when given.

    Parameters
    ----------
    url : http(s) URL of the file.
    dest : where the complete, verified file goes (its folder is created). If it already exists with the expected
        size and sha256 (when known), nothing is downloaded.
    size : expected size in bytes, or None when unknown.
    sha256 : expected sha256 hex digest, or None when unknown.
    options : :class:`DownloadOptions` (timeouts, retries, progress); default ``DownloadOptions()``.
    session : a ``requests.Session`` to use (default: a new one).

    Returns
    -------
    :class:`DownloadResult` with the path, size and sha256 of the file.

    Raises
    ------
    DownloadError
        The server answered with an HTTP error, or every attempt failed (the partial file is kept next to
        ``dest`` as ``<name>.part`` and the message says so: the same call resumes from it), or the complete file
        has another size or sha256 than expected (it is deleted: nothing is kept).
    """
    import requests

    options = DownloadOptions.coerce(options, "options")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected_sha = sha256.lower() if sha256 else None
    if dest.exists():
        have = dest.stat().st_size
        if size is None or have == size:
            digest = sha256_file(dest)
            if expected_sha is None or digest == expected_sha:
                return DownloadResult(dest, have, digest, 0, have)
        _discard(dest)  # not the expected file: fetch it again
    part, state_path = _part_paths(dest)
    state = _read_state(state_path)
    if part.exists() and expected_sha is None and state.get("url") not in (None, url):
        # without a digest to check the result, never splice bytes of one URL onto another's
        _discard(part, state_path)
    resumed_from = part.stat().st_size if part.exists() else 0

    own_session = session is None
    http = requests.Session() if own_session else session
    transferred, errors = 0, []
    try:
        for attempt in range(options.retries + 1):
            if attempt:
                time.sleep(min(options.backoff * 2 ** (attempt - 1), 60.0))
            try:
                transferred += _attempt(http, url, part, state_path, size, options)
                break
            except _Retry as err:
                errors.append(str(err))
        else:
            have = part.stat().st_size if part.exists() else 0
            total = _read_state(state_path).get("total") or size
            of = f" of {total:,}" if total else ""
            kept = (
                f"the partial file ({have:,}{of} bytes) is kept at {part}: run the same command again to resume"
                if have
                else "nothing was downloaded"
            )
            raise DownloadError(
                f"downloading {url} failed after {options.retries + 1} attempt(s) (last error: {errors[-1]}); "
                f"{kept}, or use a mirror with --base-url URL / PRH_REFERENCE_URL."
            )
    finally:
        if own_session:
            http.close()

    have = part.stat().st_size if part.exists() else 0
    if size is not None and have != size:
        _discard(part, state_path)
        raise DownloadError(
            f"{url} gave {have:,} bytes but the published file is {size:,} bytes; the download was deleted and "
            f"nothing was stored. Try again, or use a mirror with --base-url URL / PRH_REFERENCE_URL."
        )
    digest = sha256_file(part)
    if expected_sha is not None and digest != expected_sha:
        _discard(part, state_path)
        raise DownloadError(
            f"{url} has sha256 {digest}, but the published file has {expected_sha}: it is not the file the catalogue "
            f"describes (corrupted in transit, or another version on this server). The download was deleted and "
            f"nothing was stored; try again or use a mirror with --base-url URL / PRH_REFERENCE_URL."
        )
    os.replace(part, dest)
    _discard(state_path)
    return DownloadResult(dest, have, digest, transferred, resumed_from)
