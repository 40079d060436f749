"""Downloads fail cleanly and keep no secrets: every file-system and URL problem is one line (exit 2 on the command
line, no traceback) with nothing half-written left; URLs are recorded and shown without credentials or query;
authentication goes through ~/.netrc or a header from the environment. Against a server on 127.0.0.1."""

from __future__ import annotations

import base64
import errno
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from prh.errors import DownloadError, InputError
from prh.features.download import (
    ENV_AUTH_HEADER,
    DownloadOptions,
    check_url,
    download,
    download_lock,
    public_url,
)
from prh.features.reference import ENV_CATALOGUE
from test_reference_features import _catalogue, _entry, _vision_file

FAST = DownloadOptions(timeout=5.0, retries=0, backoff=0.0, progress=False, lock_timeout=0.2)
SECRET = "s3cr3t-pw"
TOKEN = "tok-123456"


class Server:
    """Serves ``files``; ``redirects[name] = location`` answers 302; ``cut[name] = n`` sends n bytes then closes;
    logs the path and headers of every request."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.redirects, self.cut, self.log = dict(files), {}, {}, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                name = self.path.split("?")[0].rsplit("/", 1)[-1]
                server.log.append({"path": self.path, "headers": dict(self.headers)})
                if name in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[name])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(name)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                n = server.cut.get(name)
                self.wfile.write(data if n is None else data[:n])
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/prh/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = Server({"a.bin": os.urandom(5000), "vit_pool-cls.pt": _vision_file()})
    yield srv
    srv.stop()


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != ".locks") if folder.is_dir() else []


def _cli(monkeypatch, capsys, *args):
    from prh.cli import main

    monkeypatch.setattr(sys, "argv", ["prh", *args])
    try:
        main()
    except SystemExit as exc:
        out = capsys.readouterr()
        return int(exc.code or 0), out.out, out.err
    out = capsys.readouterr()
    return 0, out.out, out.err


def _one_error_line(code, err, words):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])


# ------------------------------------------------------------------------------------------ no secrets on disk
def test_public_url_drops_credentials_query_and_fragment():
    assert public_url(f"https://me:{SECRET}@host:8443/a/b.pt?token={TOKEN}#x") == "https://host:8443/a/b.pt"
    assert public_url("http://[::1]:80/x") == "http://[::1]:80/x"
    assert public_url("http://[::1/x") == "<a malformed URL>"


def test_credentials_in_the_base_url_reach_the_server_but_never_disk_or_terminal(
    server, tmp_path, monkeypatch, capsys
):
    data = server.files["vit_pool-cls.pt"]
    monkeypatch.setenv(ENV_CATALOGUE, str(_catalogue(tmp_path, server.url, [_entry("vit", data)])))
    base = f"http://me:{SECRET}@127.0.0.1:{server.port}/prh/"
    store = tmp_path / "store"
    code, out, err = _cli(
        monkeypatch, capsys, "fetch-reference", "vit", "--store", str(store), "-q", "--base-url", base
    )
    assert code == 0, err
    sent = server.log[-1]["headers"].get("Authorization", "")
    assert base64.b64decode(sent.split()[1]).decode() == f"me:{SECRET}"  # it authenticated
    assert SECRET not in out + err and "me:" not in out + err
    for path in store.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    (sidecar,) = store.rglob("*.json")
    assert json.loads(sidecar.read_text())["published"]["url"] == server.url + "vit_pool-cls.pt"


def test_a_header_from_the_environment_authenticates_and_stays_off_disk(server, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_AUTH_HEADER, f"Authorization: Bearer {TOKEN}")
    result = download(server.url + f"a.bin?sig={TOKEN}", tmp_path / "a.bin", options=FAST)
    assert server.log[-1]["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert result.size == 5000
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes() or path.name == "a.bin"
    monkeypatch.setenv(ENV_AUTH_HEADER, "no colon here")
    with pytest.raises(InputError, match=ENV_AUTH_HEADER) as err:
        download(server.url + "a.bin", tmp_path / "b.bin", options=FAST)
    assert "no colon" not in str(err.value)


def test_an_error_message_never_shows_the_password_or_query(server, tmp_path):
    with pytest.raises(DownloadError) as err:
        download(
            f"http://me:{SECRET}@127.0.0.1:{server.port}/prh/missing.bin?t={TOKEN}",
            tmp_path / "m",
            options=FAST,
        )
    assert SECRET not in str(err.value) and TOKEN not in str(err.value) and "HTTP 404" in str(err.value)


# ------------------------------------------------------------------------------------------ URLs and redirects
@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/x/",
        "http://host:port/x/",
        "ftp://host/x/",
        "file:///etc/",
        "http:///nohost/",
        "not a url",
        "//h/x",
    ],
)
def test_a_malformed_base_url_is_one_line(tmp_path, monkeypatch, capsys, url):
    monkeypatch.setenv(
        ENV_CATALOGUE, str(_catalogue(tmp_path, "http://127.0.0.1:9/prh/", [_entry("vit", b"x")]))
    )
    store = tmp_path / "store"
    code, _, err = _cli(
        monkeypatch, capsys, "fetch-reference", "vit", "--store", str(store), "-q", "--base-url", url
    )
    _one_error_line(code, err, ["base_url"])
    assert not store.exists()


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("file:///etc/passwd", ["file:///etc/passwd", "http(s) only"]),
        ("ftp://127.0.0.1/a.bin", ["ftp://127.0.0.1/a.bin", "http(s) only"]),
        ("a.bin", ["more than 5 times", "a loop"]),  # redirects to itself
    ],
)
def test_redirects_go_to_http_only_and_end(server, tmp_path, location, words):
    server.redirects["a.bin"] = location
    with pytest.raises(DownloadError) as err:
        download(server.url + "a.bin", tmp_path / "a.bin", options=FAST)
    for word in words:
        assert word in str(err.value), (word, str(err.value))
    assert _files(tmp_path) == []


def test_a_redirect_to_http_is_followed_and_the_auth_header_stays_home(server, tmp_path, monkeypatch):
    other = Server({"b.bin": b"hello"})
    try:
        server.redirects["a.bin"] = other.url + "b.bin"
        monkeypatch.setenv(ENV_AUTH_HEADER, f"X-Token: {TOKEN}")
        assert download(server.url + "a.bin", tmp_path / "a.bin", options=FAST).size == 5
        assert server.log[-1]["headers"]["X-Token"] == TOKEN
        assert "X-Token" not in other.log[-1]["headers"]  # another origin: not sent
    finally:
        other.stop()


# ------------------------------------------------------------------------------------------ the store
def test_a_store_that_is_a_file_is_named(server, tmp_path, monkeypatch, capsys):
    data = server.files["vit_pool-cls.pt"]
    monkeypatch.setenv(ENV_CATALOGUE, str(_catalogue(tmp_path, server.url, [_entry("vit", data)])))
    store = tmp_path / "store"
    store.write_text("not a folder")
    code, _, err = _cli(monkeypatch, capsys, "fetch-reference", "vit", "--store", str(store), "-q")
    _one_error_line(code, err, [str(store), "is a file, not a folder"])
    assert store.read_text() == "not a folder"
    with pytest.raises(InputError, match="is a file, not a folder"):
        download(server.url + "a.bin", store / "sub" / "a.bin", options=FAST)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_store_is_named(server, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(InputError, match="not writable"):
            download(server.url + "a.bin", folder / "a.bin", options=FAST)
    finally:
        folder.chmod(0o755)


def test_not_enough_free_space_is_refused_before_the_transfer(server, tmp_path, monkeypatch):
    import shutil

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage._replace(free=100))
    n = len(server.log)
    with pytest.raises(DownloadError, match=r"needs 5,000 bytes, 100 are free"):
        download(server.url + "a.bin", tmp_path / "a.bin", size=5000, options=FAST)
    assert len(server.log) == n  # the catalogue's size: refused before any request
    with pytest.raises(DownloadError, match=r"needs 5,000 bytes, 100 are free"):
        download(server.url + "a.bin", tmp_path / "a.bin", options=FAST)  # the announced Content-Length
    assert _files(tmp_path) == []


def test_a_full_disk_removes_the_part_and_says_so(server, tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, _b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.fh.close()

    def fake_open(path, mode="r", *a, **kw):
        fh = real_open(path, mode, *a, **kw)
        return Full(fh) if str(path).endswith(".part") else fh

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(DownloadError) as err:
        download(server.url + "a.bin", tmp_path / "a.bin", options=FAST)
    assert "no space left on the device" in str(err.value) and "partial file was removed" in str(err.value)
    assert _files(tmp_path) == []


def test_a_cut_transfer_keeps_what_arrived(server, tmp_path):
    server.cut["a.bin"] = 1234
    with pytest.raises(DownloadError, match="kept at"):
        download(server.url + "a.bin", tmp_path / "a.bin", options=FAST)
    assert (tmp_path / "a.bin.part").stat().st_size == 1234
    server.cut.clear()
    assert download(server.url + "a.bin", tmp_path / "a.bin", options=FAST).size == 5000


def test_one_download_per_file_at_a_time(server, tmp_path):
    dest = tmp_path / "a.bin"
    held = rf"another process \(pid {os.getpid()}\) is downloading a.bin"
    # another process would hold it the same way
    with download_lock(dest, 1.0), pytest.raises(DownloadError, match=held):
        download(server.url + "a.bin", dest, options=FAST)
    assert download(server.url + "a.bin", dest, options=FAST).size == 5000


def test_check_url_accepts_http_and_refuses_the_rest():
    assert check_url("https://h.example/x/", "u") == "https://h.example/x/"
    for bad in ("ftp://h/x", "http://", 3, "http://h:99999999/"):
        with pytest.raises(InputError, match="u="):
            check_url(bad, "u")


# ------------------------------------------------------------------------------------------ catalogues
_HEAD = (
    'base_url = "http://127.0.0.1:9/prh/"\n[dataset]\nrepo = "minhuh/prh"\nrevision = "wit_1024"\nn = 4\n'
    'fingerprint = ""\n[[feature]]\nmodel = "m"\npool = "cls"\nverified = false\nmodality = "vision"\n'
)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'name = "a"\nfile = "a?x=1.pt"\n', ["feature 'a'", "file='a?x=1.pt'", "plain file name"]),
        (b'name = "a"\nfile = ".hidden"\n', ["feature 'a'", "file='.hidden'"]),
        (b'name = "a"\nfile = "../../etc/passwd"\n', ["feature 'a'", "no folders"]),
        (b'name = "a b"\nfile = "a.pt"\n', ["feature 'a b'", "name must be"]),
        (b'name = "a"\nfile = "a.pt"\nsize = 1.5\n', ["feature 'a'", "'size'"]),
        (b'name = "a"\nfile = "a.pt"\n# caf\xe9\n', ["not UTF-8"]),
    ],
    ids=["query", "hidden", "traversal", "name", "size", "encoding"],
)
def test_an_invalid_catalogue_is_refused_with_entry_and_field(tmp_path, monkeypatch, capsys, body, words):
    cat = tmp_path / "c.toml"
    cat.write_bytes(_HEAD.encode() + body)
    monkeypatch.setenv(ENV_CATALOGUE, str(cat))
    code, _, err = _cli(monkeypatch, capsys, "fetch-reference", "--list")
    _one_error_line(code, err, [str(cat), *words])


# ------------------------------------------------------------------------------------------ a file for a folder
def test_a_file_given_as_the_store_or_results_folder_is_named(tmp_path, monkeypatch, capsys):
    import prh
    from prh.align import Results

    f = tmp_path / "afile"
    f.write_text("x")
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(monkeypatch, capsys, "align", "--models", "minilm-l6,effnet-lite0", "--store", str(f))
    _one_error_line(code, err, [str(f), "is a file, not a folder"])
    with pytest.raises(InputError, match="is a file, not a folder"):
        prh.Alignment(models=["minilm-l6", "effnet-lite0"], store=str(f))
    code, _, err = _cli(monkeypatch, capsys, "report", str(f))
    _one_error_line(code, err, [str(f), "is a file, not a folder"])
    with pytest.raises(InputError, match="is a file, not a folder"):
        Results.load(f)
    with pytest.raises(InputError, match="is a file, not a folder"):
        prh.Alignment(dataset="minhuh/prh", subset="wit_1024", models=["dinov2_l"], store=str(f / "sub"))
    assert f.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
