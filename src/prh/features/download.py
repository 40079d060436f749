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

Failing cleanly: the destination folder must be a writable folder with room for the announced size (checked
before the transfer); a write that fails (disk full, read-only) removes the ``.part`` and says why; redirects are
followed by hand, only to http(s), at most :data:`MAX_REDIRECTS`; one download per destination at a time (a
``filelock`` lock in ``<folder>/.locks``: a second process waits, then says which process holds it).

No secrets on disk or on the terminal: URLs are recorded and shown by :func:`public_url` (no user name or password,
no query string, no fragment). Authenticate with ``~/.netrc`` (``requests`` reads it for the URL's host) or with a
header from the environment variable :data:`ENV_AUTH_HEADER` (``"Authorization: Bearer ..."``), sent to the URL's
host only (dropped when a redirect leaves it); credentials written in the URL itself work too but are never
recorded.

One file, over the usual ~450 lines, on purpose: resuming, the If-Range validator, retries, redirects, the per-file
lock, the free-space check and the atomic move are one protocol over one ``.part`` file and its ``.part.json``;
split, the invariants of that pair of files would live in several modules.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

from prh._validation import ConfigFields, check_bool, check_float, check_int
from prh.atomic import atomic_write_text
from prh.data.hf import url_reachable
from prh.errors import DownloadError, InputError

__all__ = ["DownloadOptions", "DownloadResult", "check_url", "download", "public_url", "sha256_file"]

#: Environment variable holding one HTTP header sent with every download request, e.g. ``Authorization: Bearer x``.
ENV_AUTH_HEADER = "PRH_REFERENCE_AUTH_HEADER"
#: What a failed download advises besides trying again; :func:`download`'s ``advice`` replaces it (e.g. when the
#: URL already is a mirror).
MIRROR_ADVICE = "use a mirror with --base-url URL / PRH_REFERENCE_URL"
#: Redirects followed before giving up (a loop ends here).
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)

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
    chunk_size : at most this many bytes read and written at a time (default 64 KiB; what arrived is written as it
        arrives, so a cut transfer keeps it for the resume).
    lock_timeout : seconds to wait for another process downloading the same file (default 600).
    """

    timeout: float = 30.0
    retries: int = 5
    backoff: float = 1.0
    progress: bool = True
    chunk_size: int = 1 << 16
    lock_timeout: float = 600.0

    def __post_init__(self) -> None:
        check_float(self.timeout, "timeout", 0.0, None, inclusive=(False, True), hint="seconds")
        check_int(self.retries, "retries", minimum=0, hint="further attempts after a failed one")
        check_float(self.backoff, "backoff", 0.0, None, hint="seconds before the first retry")
        check_bool(self.progress, "progress")
        check_int(self.chunk_size, "chunk_size", minimum=1, hint="bytes")
        check_float(self.lock_timeout, "lock_timeout", 0.0, None, hint="seconds")


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


def public_url(url: str) -> str:
    """``url`` without user name, password, query string and fragment: what may be recorded or shown."""
    try:
        parts = urlsplit(str(url))
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = parts.port
    except ValueError:
        return "<a malformed URL>"
    netloc = host + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_url(url: object, where: str) -> str:
    """``url`` if it is a well-formed http(s) URL with a host, else an InputError naming ``where`` (the URL shown
    without its credentials)."""
    if not isinstance(url, str):
        raise InputError(f"{where}={url!r} must be an http:// or https:// URL string.")
    shown = public_url(url)
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises here
        host = parts.hostname
    except ValueError as err:
        raise InputError(f"{where}={shown!r} is not a valid URL ({err}).") from None
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in url):
        raise InputError(
            f"{where}={shown!r} must be an http:// or https:// URL with a host name, e.g. "
            f"http://vision14.csail.mit.edu/prh/wit_1024/."
        )
    return url


def _auth_header() -> dict[str, str]:
    """The header of :data:`ENV_AUTH_HEADER` (``"Name: value"``), or none; its value is never shown."""
    text = os.environ.get(ENV_AUTH_HEADER, "").strip()
    if not text:
        return {}
    name, sep, value = text.partition(":")
    if not sep or not re.fullmatch(r"[A-Za-z0-9-]+", name.strip()) or not value.strip():
        raise InputError(
            f"{ENV_AUTH_HEADER} must be one HTTP header 'Name: value' (e.g. 'Authorization: Bearer <token>'); "
            f"its value is not shown here."
        )
    return {name.strip(): value.strip()}


def _same_origin(a: str, b: str) -> bool:
    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _check_folder(folder: Path) -> None:
    """The destination folder exists (or can be made), is a folder and is writable; else one clear error."""
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            raise InputError(
                f"{parent} is a file, not a folder: give --store a folder (or a path that does not exist)."
            )
        if parent.exists():
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(
            f"cannot create the folder {folder}: {err.strerror or err}. Choose another --store."
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(
            f"the folder {folder} is not writable: choose another --store or fix its permissions."
        )


def _check_space(folder: Path, need: int | None) -> None:
    """Refuse before the transfer when the announced bytes do not fit on the folder's disk."""
    if not need or need <= 0:
        return
    free = shutil.disk_usage(folder).free
    if free < need:
        raise DownloadError(
            f"not enough free space in {folder}: the download needs {need:,} bytes, {free:,} are free. Free some "
            f"space or choose another --store. Nothing was downloaded."
        )


def _write_failed(err: OSError, part: Path, state_path: Path) -> DownloadError:
    """A failed write (disk full, read-only, ...): the part is removed (it would keep the disk full)."""
    _discard(part, state_path)
    why = "no space left on the device" if err.errno == errno.ENOSPC else (err.strerror or str(err))
    return DownloadError(
        f"writing {part} failed: {why}; the partial file was removed. Free some space (or choose another "
        f"--store) and run the same command again."
    )


@contextlib.contextmanager
def download_lock(dest: Path, timeout: float) -> Iterator[None]:
    """Hold the lock of ``dest``: one download per file at a time, across processes.

    The lock file is ``<folder>/.locks/<name>.lock`` (empty; kept, like the Hugging Face cache's, since removing a
    lock file others may be waiting on is not safe); ``<name>.lock.pid`` names the holder while it is held.
    """
    from filelock import FileLock, Timeout

    locks = dest.parent / ".locks"
    locks.mkdir(exist_ok=True)
    lock_path = locks / (dest.name + ".lock")
    owner = locks / (dest.name + ".lock.pid")
    lock = FileLock(str(lock_path))
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        try:
            pid = owner.read_text(encoding="utf-8").strip()
        except OSError:
            pid = "?"
        raise DownloadError(
            f"another process (pid {pid}) is downloading {dest.name} into {dest.parent}; waited {timeout:g} s. Let "
            f"it finish, or fetch into another --store."
        ) from None
    try:
        with contextlib.suppress(OSError):
            owner.write_text(str(os.getpid()), encoding="utf-8")
        yield
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


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


class _Unreachable(Exception):
    """A connection failed and the host does not accept a TCP connection (no network, no server)."""


class _Retry(Exception):
    """One attempt failed in a way that another attempt may fix (the message says how)."""


def _describe(err: BaseException, url: str = "") -> str:
    text = str(err).strip() or type(err).__name__
    if url:  # requests quotes the URL (or its path and query): show neither credentials nor the query
        parts = urlsplit(url)
        for secret in (url, parts.query, parts.username or "", parts.password or ""):
            if secret:
                text = text.replace(secret, "***")
    return text if len(text) <= 300 else text[:297] + "..."


def _get(session, url: str, headers: dict, options: DownloadOptions):
    """GET ``url`` following redirects by hand: http(s) only, at most :data:`MAX_REDIRECTS`; the auth header goes
    to the first URL's origin only."""
    import requests

    auth = _auth_header()
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        sent = dict(headers, **(auth if _same_origin(current, url) else {}))
        try:
            response = session.get(
                current,
                headers=sent,
                stream=True,
                timeout=(options.timeout, options.timeout),
                allow_redirects=False,
            )
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
        ) as err:
            raise DownloadError(
                f"{public_url(current)} is not a valid URL ({_describe(err, current)}); check --base-url."
            ) from None
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as err:
            if not url_reachable(current, timeout=2.0):
                raise _Unreachable(
                    f"cannot connect to {public_url(current)}: no network, or nothing answers at that address "
                    f"(no TCP connection within 2 s)"
                ) from err
            raise _Retry(f"cannot connect: {_describe(err, current)}") from err
        if response.status_code not in _REDIRECTS:
            return response
        location = response.headers.get("Location", "")
        response.close()
        target = urljoin(current, location)
        scheme = urlsplit(target).scheme.lower()
        if scheme not in ("http", "https"):
            raise DownloadError(
                f"{public_url(url)} redirected to {public_url(target)!r} ({scheme or 'no'} scheme): prh follows "
                f"redirects to http(s) only. Nothing was downloaded; {MIRROR_ADVICE}."
            )
        current = target
    raise DownloadError(
        f"{public_url(url)} redirected more than {MAX_REDIRECTS} times (a loop?), last to {public_url(current)!r}. "
        f"Nothing was downloaded; {MIRROR_ADVICE}."
    )


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
    shown = public_url(url)
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if state.get("url") == shown and state.get("validator"):
            headers["If-Range"] = state["validator"]
    response = _get(session, url, headers, options)

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
                f"the file is not at this address (the server may be down or have moved it): {MIRROR_ADVICE}"
                if status in (404, 410)
                else f"check the URL, or {MIRROR_ADVICE}"
            )
            raise DownloadError(f"downloading {shown} failed: HTTP {status} {response.reason}; {hint}.")
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
                f"{shown} is {total:,} bytes but the published file is {expected_size:,} bytes: this is not the "
                f"file the catalogue describes (wrong URL, or a mirror with another version). Nothing was stored."
            )
        _check_space(part.parent, None if total is None else total - (offset if mode == "ab" else 0))
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        try:
            atomic_write_text(state_path, json.dumps({"url": shown, "validator": validator, "total": total}))
        except OSError as err:
            raise _write_failed(err, part, state_path) from None
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
        cut = (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.Timeout,
            *_urllib3_errors(),
            ConnectionError,
            TimeoutError,
        )
        try:
            try:
                fh = open(part, mode)  # noqa: SIM115 - closed below, its errors told apart from the network's
            except OSError as err:
                raise _write_failed(err, part, state_path) from None
            with fh:
                chunks = _chunks(response, options.chunk_size)
                while True:
                    try:
                        chunk = next(chunks, b"")
                    except cut as err:
                        raise _Retry(f"the transfer was cut short: {_describe(err, url)}") from err
                    if not chunk:
                        break
                    try:
                        fh.write(chunk)
                        fh.flush()  # what arrived is on disk before the next read: a cut keeps it
                    except OSError as err:
                        with contextlib.suppress(OSError):
                            fh.close()
                        raise _write_failed(err, part, state_path) from None
                    written += len(chunk)
                    bar.update(len(chunk))
        finally:
            bar.close()
        have = offset + written
        if total is not None and have < total:
            raise _Retry(f"the server closed the connection after {have:,} of {total:,} bytes")
        if total is not None and have > total:
            _discard(part)
            raise _Retry(f"the server sent {have:,} bytes for a {total:,}-byte file; starting again")
        return written


def _urllib3_errors() -> tuple[type[BaseException], ...]:
    import urllib3.exceptions

    return (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError)


def _chunks(response, size: int) -> Iterator[bytes]:
    """The body as it arrives (``read1``: whatever one read returns, at most ``size`` bytes), so that a transfer
    cut in the middle of a chunk has written everything before the cut; falls back to ``iter_content``."""
    raw = getattr(response, "raw", None)
    read1 = getattr(raw, "read1", None)
    if read1 is None or response.headers.get("Content-Encoding", "identity") not in ("identity", ""):
        yield from (chunk for chunk in response.iter_content(chunk_size=size) if chunk)
        return
    while True:
        chunk = read1(size)
        if not chunk:
            return
        yield chunk


def download(
    url: str,
    dest: str | os.PathLike,
    size: int | None = None,
    sha256: str | None = None,
    options: DownloadOptions | None = None,
    session: object = None,
    advice: str | None = None,
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
    advice : what the errors advise besides trying again (default :data:`MIRROR_ADVICE`: use a mirror).

    Returns
    -------
    :class:`DownloadResult` with the path, size and sha256 of the file.

    Raises
    ------
    InputError
        ``url`` is not a well-formed http(s) URL; ``dest``'s folder is a file, cannot be created or is not writable.
    DownloadError
        Not enough free space for the announced size (checked before the transfer), a write failed (disk full:
        the partial file is removed), a redirect to another scheme or too many redirects, another process holds
        the file's lock past ``options.lock_timeout``, the server answered with an HTTP error, or every attempt failed (the partial file is kept next to
        ``dest`` as ``<name>.part`` and the message says so: the same call resumes from it), or the complete file
        has another size or sha256 than expected (it is deleted: nothing is kept).
    """
    options = DownloadOptions.coerce(options, "options")
    check_url(url, "url")
    dest = Path(dest)
    _check_folder(dest.parent)
    if dest.is_dir():
        raise InputError(f"{dest} is a folder, not a file: it is where the download would go; remove it.")
    try:
        with download_lock(dest, options.lock_timeout):
            return _download(url, dest, size, sha256, options, session)
    except DownloadError as err:
        if advice is None or MIRROR_ADVICE not in str(err):
            raise
        raise DownloadError(str(err).replace(MIRROR_ADVICE, advice)) from err


def _download(
    url: str, dest: Path, size: int | None, sha256: str | None, options: DownloadOptions, session: object
) -> DownloadResult:
    import requests

    shown = public_url(url)
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
    if part.exists() and expected_sha is None and state.get("url") not in (None, shown):
        # without a digest to check the result, never splice bytes of one URL onto another's
        _discard(part, state_path)
    resumed_from = part.stat().st_size if part.exists() else 0
    _check_space(dest.parent, None if size is None else size - resumed_from)

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
            except _Unreachable as err:  # no network at the start: say so now, not after a minute of retries
                if attempt == 0:
                    kept = (
                        f"the partial file is kept at {part}" if part.exists() else "nothing was downloaded"
                    )
                    raise DownloadError(
                        f"{err}; {kept}. Connect and run the same command again, or {MIRROR_ADVICE}."
                    ) from None
                errors.append(str(err))  # the server went away mid-download: the retries may find it back
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
                f"downloading {shown} failed after {options.retries + 1} attempt(s) (last error: {errors[-1]}); "
                f"{kept}, or {MIRROR_ADVICE}."
            )
    finally:
        if own_session:
            http.close()

    have = part.stat().st_size if part.exists() else 0
    if size is not None and have != size:
        _discard(part, state_path)
        raise DownloadError(
            f"{shown} gave {have:,} bytes but the published file is {size:,} bytes; the download was deleted and "
            f"nothing was stored. Try again, or {MIRROR_ADVICE}."
        )
    digest = sha256_file(part)
    if expected_sha is not None and digest != expected_sha:
        _discard(part, state_path)
        raise DownloadError(
            f"{shown} has sha256 {digest}, but the published file has {expected_sha}: it is not the file the catalogue "
            f"describes (corrupted in transit, or another version on this server). The download was deleted and "
            f"nothing was stored; try again or {MIRROR_ADVICE}."
        )
    os.replace(part, dest)
    _discard(state_path)
    return DownloadResult(dest, have, digest, transferred, resumed_from)
