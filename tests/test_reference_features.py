"""The paper's published WIT-1024 features, offline: a local HTTP server (127.0.0.1, started here) serves small
files written in the reference's format; prh fetches them (resume, hash checks, no unpickling) into the feature
store, and prh.Alignment scores against them exactly as the reference's Alignment.score does (to 1e-4)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import reference_alignment
from prh.cli import app
from prh.data import load_dataset
from prh.errors import DownloadError, InputError, MissingFeaturesError, OfflineError
from prh.features.download import DownloadOptions, download
from prh.features.reference import (
    ENV_CATALOGUE,
    ENV_URL,
    FetchConfig,
    fetch_reference,
    load_catalogue,
    load_published,
    read_reference_file,
)
from prh.features.store import FeatureStore

N = 48  # items of the test catalogue's dataset (the real one has 1024)
FAST = DownloadOptions(timeout=5.0, retries=0, backoff=0.0, progress=False, chunk_size=4096)


# ---------------------------------------------------------------------------------------------------------------
# A local file server with byte ranges (for resume), ETags, and scripted failures
# ---------------------------------------------------------------------------------------------------------------
class FileServer:
    """Serves ``files`` ({name: bytes}) on 127.0.0.1 from a thread; logs every request.

    ``cut[name] = (nbytes, times)``: the next ``times`` responses for ``name`` announce the full length but send
    only ``nbytes`` bytes and close the connection. ``die_after_cut``: after such a response the server stops
    (its socket is closed: later connections are refused).
    """

    def __init__(self, files: dict[str, bytes], die_after_cut: bool = False):
        self.files = dict(files)
        self.cut: dict[str, tuple[int, int]] = {}
        self.die_after_cut = die_after_cut
        self.log: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                name = self.path.rsplit("/", 1)[-1]
                entry = {
                    "name": name,
                    "range": self.headers.get("Range"),
                    "if_range": self.headers.get("If-Range"),
                }
                server.log.append(entry)
                data = server.files.get(name)
                if data is None:
                    entry["status"] = 404
                    self.send_error(404, "Not Found")
                    return
                etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", entry["range"] or "")
                if match and entry["if_range"] in (None, etag):
                    start = int(match.group(1))
                    if start >= len(data):
                        entry["status"] = 416
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                entry["status"] = 206 if start else 200
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                nbytes, times = server.cut.get(name, (0, 0))
                if times > 0:
                    server.cut[name] = (nbytes, times - 1)
                    self.wfile.write(body[:nbytes])
                    self.wfile.flush()
                    entry["sent"] = min(nbytes, len(body))
                    if server.die_after_cut:
                        server.httpd.shutdown()  # from a handler thread: serve_forever runs elsewhere
                        server.httpd.server_close()
                    return
                self.wfile.write(body)
                entry["sent"] = len(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/prh/wit_1024/"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers: list[FileServer] = []

    def start(files: dict[str, bytes], **kw) -> FileServer:
        servers.append(FileServer(files, **kw))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


# ---------------------------------------------------------------------------------------------------------------
# Files in the reference's format and a catalogue describing them
# ---------------------------------------------------------------------------------------------------------------
def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _latent(n: int = N, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 12, generator=torch.Generator().manual_seed(seed))


def _model(dims: list[int], noise: list[float], seed: int) -> list[torch.Tensor]:
    """Layers that all see one shared latent through their own random map, with layer-specific noise (so that
    scores are positive and differ from layer to layer: no ties in the best pair)."""
    g = torch.Generator().manual_seed(seed)
    z = _latent()
    return [
        z @ torch.randn(12, d, generator=g) + s * torch.randn(N, d, generator=g) for d, s in zip(dims, noise)
    ]


def _vision_file(seed: int = 1) -> bytes:
    """Like extract_lvm_features: (N, L, D) float32 class tokens per block + num_params."""
    feats = torch.stack(_model([24, 24, 24, 24], [3.0, 1.0, 0.4, 2.0], seed), dim=1)
    feats[0, 0, 0] = 40.0  # an outlier for the q = 0.95 clamp to act on
    return _saved({"feats": feats, "num_params": 86_000_000})


def _language_file(seed: int = 2) -> bytes:
    """Like extract_llm_features: (N, L, D) float16 masked means of every hidden state, num_params, the attention
    mask, mean loss and bits per byte."""
    feats = torch.stack(_model([32, 32, 32], [2.0, 0.5, 1.2], seed), dim=1).to(torch.float16)
    lengths = torch.randint(3, 9, (N,), generator=torch.Generator().manual_seed(seed))
    mask = (torch.arange(9).view(1, -1) >= (9 - lengths).view(-1, 1)).long()  # left padding
    return _saved(
        {
            "feats": feats,
            "num_params": 559_214_592,
            "mask": mask,
            "loss": torch.tensor(2.5),
            "bpb": torch.tensor(0.91),
        }
    )


def _list_file(seed: int = 3) -> bytes:
    """A list of per-layer tensors of different widths (the reference clamps each layer on its own)."""
    layers = _model([16, 40, 28], [1.5, 0.6, 2.5], seed)
    layers[1][3, 5] = -25.0
    return _saved({"feats": layers, "num_params": 11_000_000})


class Evil:
    """A pickled object whose unpickling creates a file: proof that nothing ran if the file is absent."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _catalogue(tmp_path: Path, url: str, entries: list[dict], n: int = N, fingerprint: str = "") -> Path:
    lines = [
        f'base_url = "{url}"',
        'hash_source = "the test"',
        "[dataset]",
        'repo = "minhuh/prh"',
        'revision = "wit_1024"',
        f"n = {n}",
        f'fingerprint = "{fingerprint}"',
    ]
    for e in entries:
        lines.append("[[feature]]")
        for key, value in e.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path = tmp_path / "catalogue.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _entry(name: str, data: bytes | None, modality: str = "vision", pool: str = "cls", **kw) -> dict:
    entry = {"name": name, "file": f"{name}_pool-{pool}.pt", "model": f"test/{name}", "modality": modality}
    entry.update(pool=pool, listed=True)
    if data is not None:
        entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest(), verified=True)
    else:
        entry["verified"] = False
    entry.update(kw)
    return entry


@pytest.fixture
def published(tmp_path, serve, monkeypatch):
    """Three published files (vision tensor, float16 language tensor, list of layers) on a local server, a
    catalogue for them (``$PRH_REFERENCE_CATALOGUE``), and an empty store."""
    files = {
        "vit_pool-cls.pt": _vision_file(),
        "llm_pool-avg.pt": _language_file(),
        "convnet_pool-cls.pt": _list_file(),
    }
    server = serve(files)
    entries = [
        _entry("vit", files["vit_pool-cls.pt"]),
        _entry("llm", files["llm_pool-avg.pt"], modality="language", pool="avg"),
        _entry("convnet", None),  # not verified: no size or hash known
    ]
    monkeypatch.setenv(ENV_CATALOGUE, str(_catalogue(tmp_path, server.url, entries)))
    monkeypatch.delenv(ENV_URL, raising=False)
    return {"server": server, "files": files, "store": tmp_path / "store", "tmp": tmp_path}


def _config(**kw) -> FetchConfig:
    return FetchConfig(download=kw.pop("download", FAST), **kw)


def _leftovers(store: Path) -> list[str]:
    folder = store / ".downloads"
    return sorted(p.name for p in folder.iterdir() if p.name != ".locks") if folder.is_dir() else []


# ---------------------------------------------------------------------------------------------------------------
# The built-in catalogue
# ---------------------------------------------------------------------------------------------------------------
PLATONIC_NAMES = (
    "i21k_t i21k_s i21k_b i21k_l dinov2_s dinov2_m dinov2_l dinov2_g clip_b clip_l clip_h clip_i21k_ft_b "
    "clip_i21k_ft_l clip_i21k_ft_h bloom_560m bloom_1b1 bloom_1b7 bloom_3b bloom_7b1 openllama_3b openllama_7b "
    "openllama_13b llama_7b llama_13b llama_30b llama_65b"
).split()


def test_builtin_catalogue_lists_the_references_files_and_what_is_verified(monkeypatch):
    monkeypatch.delenv(ENV_CATALOGUE, raising=False)
    cat = load_catalogue()
    assert cat.members("platonic") == PLATONIC_NAMES  # platonic/__init__.py, in its order
    assert cat.base_url == "http://vision14.csail.mit.edu/prh/wit_1024/"
    assert (cat.dataset.name, cat.dataset.n) == ("minhuh/prh@wit_1024", 1024)
    verified = [cat.features[n] for n in cat.members("verified")]
    assert len(verified) == 29 and all(f.size and len(f.sha256) == 64 for f in verified)
    assert {f.file for f in verified if f.modality == "language"} == {
        cat.features[n].file for n in PLATONIC_NAMES if cat.features[n].modality == "language"
    }  # the 12 language files of the reference's list are the 12 with Git-LFS pointers
    assert sum(f.file.endswith("_pool-none.pt") for f in verified) == 17
    assert not cat.features["dinov2_l"].verified and cat.features["dinov2_l_pool-none"].verified
    assert cat.url(cat.features["llama_7b"]) == (
        "http://vision14.csail.mit.edu/prh/wit_1024/huggyllama_llama-7b_pool-avg.pt"
    )
    monkeypatch.setenv(ENV_URL, "https://mirror.example.org/prh")
    assert (
        cat.url(cat.features["llama_7b"]) == "https://mirror.example.org/prh/huggyllama_llama-7b_pool-avg.pt"
    )
    with pytest.raises(InputError, match="Did you mean 'dinov2_l'"):
        cat.select("dinov2_lx")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"modality": "audio"}, "modality='audio'"),
        ({"colour": "red"}, "unknown field"),
        ({"sha256": "abc"}, "64 lower-case hex"),
        ({"verified": True, "sha256": None}, "verified = true needs both"),
        ({"file": "../x.pt"}, "plain file name"),
        ({"name": "all"}, "not one of"),
    ],
)
def test_a_bad_catalogue_entry_is_refused_naming_the_field(tmp_path, change, message):
    entry = _entry("vit", b"12345")
    entry.update(change)
    entry = {k: v for k, v in entry.items() if v is not None}
    with pytest.raises(InputError, match=re.escape(message)):
        load_catalogue(_catalogue(tmp_path, "http://127.0.0.1:1/", [entry]))


# ---------------------------------------------------------------------------------------------------------------
# Fetching over HTTP
# ---------------------------------------------------------------------------------------------------------------
def test_fetch_converts_to_the_store_with_provenance_and_drops_the_pickle(published):
    store = FeatureStore(published["store"])
    outcomes = fetch_reference(["vit", "llm", "convnet"], store, _config())
    assert [(o.name, o.status, o.verified) for o in outcomes] == [
        ("vit", "fetched", True),
        ("llm", "fetched", True),
        ("convnet", "fetched", False),
    ]
    assert _leftovers(published["store"]) == []  # the downloaded .pt files are gone
    feats = load_published(["vit", "llm", "convnet"], store)
    llm = feats["llm"]
    raw = torch.load(io.BytesIO(published["files"]["llm_pool-avg.pt"]), weights_only=True)
    assert len(llm.layers) == 3 and all(
        torch.equal(a, b.float()) for a, b in zip(llm.layers, raw["feats"].unbind(1))
    )
    meta = llm.meta
    assert meta["model"] == "published/llm" and meta["pool"] == "avg" and meta["model_id"] == "test/llm"
    assert meta["dataset"] == {"name": "minhuh/prh@wit_1024", "fingerprint": "unknown", "n": N}
    assert meta["params"] == 559_214_592 and meta["bits_per_byte"] == pytest.approx(0.91)
    assert meta["storage_dtype"] == "float16"  # kept as published, no lossy cast
    info = meta["published"]
    assert info["url"] == published["server"].url + "llm_pool-avg.pt" and info["verified"] is True
    assert info["sha256"] == hashlib.sha256(published["files"]["llm_pool-avg.pt"]).hexdigest()
    assert info["fields"]["loss"] == pytest.approx(2.5) and info["fields"]["mask"]["shape"] == [N, 9]
    assert torch.equal(llm.per_sample["n_tokens"], raw["mask"].sum(1))
    assert feats["convnet"].meta["published"]["feats_layout"] == "list"
    assert [t.shape[1] for t in feats["convnet"].layers] == [16, 40, 28]
    assert feats["vit"].meta["published"]["feats_layout"] == "tensor"

    requests_before = len(published["server"].log)
    again = fetch_reference("vit,llm", store, _config())
    assert [o.status for o in again] == ["present", "present"] and len(
        published["server"].log
    ) == requests_before
    forced = fetch_reference("vit", store, _config(force=True, keep_download=True))
    assert forced[0].status == "fetched" and _leftovers(published["store"]) == ["vit_pool-cls.pt"]


def test_a_truncated_download_is_resumed_with_a_range_request(published):
    server, size = published["server"], len(published["files"]["llm_pool-avg.pt"])
    server.cut["llm_pool-avg.pt"] = (size * 2 // 5, 1)  # the first response stops at 40%
    config = _config(download=DownloadOptions(retries=2, backoff=0.0, progress=False, chunk_size=4096))
    (outcome,) = fetch_reference("llm", published["store"], config)
    assert outcome.status == "fetched" and outcome.verified
    first, second = server.log
    assert first["range"] is None and first["sent"] == size * 2 // 5
    offset = int(second["range"].split("=")[1].rstrip("-"))
    assert second["status"] == 206 and 0 < offset <= size * 2 // 5 and second["if_range"]
    assert first["sent"] + second["sent"] < 1.5 * size  # resumed, not downloaded twice
    assert _leftovers(published["store"]) == []


def test_the_server_stopping_mid_transfer_keeps_the_partial_file_and_the_next_run_resumes(published, serve):
    files = published["files"]
    size = len(files["vit_pool-cls.pt"])
    dying = serve(files, die_after_cut=True)
    dying.cut["vit_pool-cls.pt"] = (size // 2, 1)
    config = _config(
        base_url=dying.url, download=DownloadOptions(retries=2, backoff=0.0, progress=False, chunk_size=4096)
    )
    with pytest.raises(DownloadError) as err:
        fetch_reference("vit", published["store"], config)
    part = published["store"] / ".downloads" / "vit_pool-cls.pt.part"
    message = str(err.value)
    assert "after 3 attempt(s)" in message and "cannot connect" in message
    assert f"kept at {part}" in message and "run the same command again to resume" in message
    assert 0 < part.stat().st_size <= size // 2
    assert FeatureStore(published["store"]).entries() == []

    healthy = serve(files)  # another server (a mirror): the sha256 is known, so the part is resumed there
    kept = part.stat().st_size
    (outcome,) = fetch_reference("vit", published["store"], _config(base_url=healthy.url))
    assert (
        outcome.verified and healthy.log[0]["range"] == f"bytes={kept}-" and healthy.log[0]["status"] == 206
    )
    assert healthy.log[0]["sent"] == size - kept and not part.exists()
    assert len(load_published("vit", published["store"])["vit"].layers) == 4


def test_a_partial_file_that_cannot_be_trusted_is_not_spliced(serve, tmp_path):
    data = _vision_file()
    server = serve({"f.pt": data})
    url, dest = server.url + "f.pt", tmp_path / "f.pt"
    part, state = tmp_path / "f.pt.part", tmp_path / "f.pt.part.json"
    digest = hashlib.sha256(data).hexdigest()
    # the file changed on the server since the part was written: If-Range does not match, the server sends it all
    part.write_bytes(b"old version " * 100)
    state.write_text(json.dumps({"url": url, "validator": '"stale"', "total": len(data)}))
    result = download(url, dest, size=len(data), sha256=digest, options=FAST)
    assert server.log[-1]["if_range"] == '"stale"' and server.log[-1]["status"] == 200
    assert result.sha256 == digest and dest.read_bytes() == data and not part.exists() and not state.exists()
    # a part from another URL, with no digest to check the result: thrown away, no Range request
    dest.unlink()
    part.write_bytes(data[:1000])
    state.write_text(json.dumps({"url": "http://elsewhere.invalid/f.pt", "validator": None, "total": None}))
    download(url, dest, options=FAST)
    assert server.log[-1]["range"] is None and dest.read_bytes() == data
    # a part that is already complete (size unknown): the server answers 416 with the length, nothing is sent again
    dest.unlink()
    part.write_bytes(data)
    state.write_text(json.dumps({"url": url, "validator": None, "total": len(data)}))
    result = download(url, dest, options=FAST)
    assert server.log[-1]["status"] == 416 and result.transferred == 0 and dest.read_bytes() == data
    # a complete, verified file is not downloaded again
    before = len(server.log)
    assert download(url, dest, size=len(data), sha256=digest, options=FAST).transferred == 0
    assert len(server.log) == before


def test_a_wrong_hash_is_refused_and_nothing_is_stored(published, tmp_path, monkeypatch):
    files = published["files"]
    bad = _entry("vit", files["vit_pool-cls.pt"], sha256="0" * 64)
    monkeypatch.setenv(ENV_CATALOGUE, str(_catalogue(tmp_path, published["server"].url, [bad])))
    with pytest.raises(
        DownloadError, match=r"sha256 .* but the published file has 0{64}.*nothing was stored"
    ):
        fetch_reference("vit", published["store"], _config())
    assert FeatureStore(published["store"]).entries() == [] and _leftovers(published["store"]) == []
    # a file of another size is refused from the response headers, before its body is read
    wrong_size = _entry("vit", files["vit_pool-cls.pt"], size=len(files["vit_pool-cls.pt"]) + 1)
    monkeypatch.setenv(ENV_CATALOGUE, str(_catalogue(tmp_path, published["server"].url, [wrong_size])))
    with pytest.raises(DownloadError, match="is not the file the catalogue describes"):
        fetch_reference("vit", published["store"], _config())
    assert FeatureStore(published["store"]).entries() == [] and _leftovers(published["store"]) == []
    # --no-verify: the digest is recorded, the entry is marked unverified
    (outcome,) = fetch_reference("vit", published["store"], _config(verify=False))
    assert outcome.status == "fetched" and not outcome.verified


def test_a_file_that_needs_full_unpickling_is_refused_and_nothing_runs(tmp_path, serve, monkeypatch):
    marker = tmp_path / "code-ran"
    data = _saved({"feats": torch.randn(N, 2, 8), "num_params": 1, "extra": Evil(marker)})
    assert not marker.exists()
    server = serve({"evil_pool-cls.pt": data})
    monkeypatch.setenv(ENV_CATALOGUE, str(_catalogue(tmp_path, server.url, [_entry("evil", data)])))
    store = tmp_path / "store"
    with pytest.raises(
        InputError,
        match=r"refused: this file needs full unpickling, which can run code \(it references io\.open\)",
    ):
        fetch_reference("evil", store, _config())
    assert not marker.exists()  # torch.load(weights_only=True) refused before anything ran
    assert FeatureStore(store).entries() == [] and _leftovers(store) == []


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"feats": torch.randn(N + 1, 3, 4)}, "N=49 rows but the dataset has N=48"),
        ({"num_params": 3}, "expected a dict with 'feats'"),
        ({"feats": torch.randint(0, 3, (N, 4))}, "must hold floats"),
        ({"feats": [torch.randn(N, 4), torch.randn(N - 1, 4)]}, "different numbers of rows"),
        ({"feats": torch.full((N, 4), float("nan"))}, "NaN/Inf"),
    ],
)
def test_files_of_another_shape_are_refused_naming_the_file(tmp_path, obj, message):
    path = tmp_path / "x.pt"
    path.write_bytes(_saved(obj))
    with pytest.raises(InputError, match=re.escape(message)) as err:
        read_reference_file(path, n=N)
    assert str(path) in str(err.value)
    path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")  # an LFS pointer
    with pytest.raises(InputError, match="not a readable torch.save file"):
        read_reference_file(path, n=N)


def test_http_errors_and_an_unreachable_server_say_what_to_do(published, tmp_path):
    with pytest.raises(DownloadError, match=r"HTTP 404.*--base-url"):
        download(published["server"].url + "missing.pt", tmp_path / "m.pt", options=FAST)
    published["server"].stop()
    with pytest.raises(DownloadError, match=r"cannot connect.*nothing was downloaded.*--base-url"):
        fetch_reference("vit", published["store"], _config())


def test_a_mirror_that_lacks_a_file_is_not_told_to_use_a_mirror(published, serve):
    mirror = serve({})  # answers 404 for every file
    with pytest.raises(DownloadError, match="HTTP 404") as err:
        fetch_reference("vit", published["store"], _config(base_url=mirror.url))
    message = str(err.value)
    assert "use a mirror" not in message
    assert f"check that {mirror.url} holds the published files" in message and "leave --base-url" in message
    with pytest.raises(DownloadError, match="HTTP 404.*use a mirror with --base-url"):  # the default advice
        download(published["server"].url + "missing.pt", published["tmp"] / "m.pt", options=FAST)


def test_the_command_line_fetches_from_a_mirror_given_by_flag_or_environment(published, monkeypatch):
    runner = CliRunner()
    store = str(published["store"])
    url = published["server"].url
    monkeypatch.setenv(ENV_CATALOGUE, str(published["tmp"] / "catalogue.toml"))
    res = runner.invoke(
        app, ["fetch-reference", "vit", "--store", store, "--base-url", url, "-q", "--retries", "0"]
    )
    assert res.exit_code == 0, res.output
    assert "vit: fetched" in res.output and "sha256 verified" in res.output
    monkeypatch.setenv(ENV_URL, url)
    res = runner.invoke(app, ["fetch-reference", "all", "--store", store, "-q"])
    assert res.exit_code == 0, res.output
    assert (
        "vit: already stored" in res.output
        and "llm: fetched" in res.output
        and "convnet: fetched" in res.output
    )
    res = runner.invoke(app, ["fetch-reference", "--list", "--store", store])
    assert res.exit_code == 0 and "convnet" in res.output
    res = runner.invoke(app, ["fetch-reference", "nope", "--store", store])
    assert isinstance(res.exception, InputError)


# ---------------------------------------------------------------------------------------------------------------
# prh.Alignment: a drop-in for platonic.Alignment, with the reference's numbers
# ---------------------------------------------------------------------------------------------------------------
@pytest.fixture
def platonic(published, monkeypatch):
    """``prh.Alignment`` on the published files; the first use fetches them (from ``$PRH_REFERENCE_URL``)."""
    import prh

    monkeypatch.setenv(ENV_URL, published["server"].url)
    alignment = prh.Alignment(
        dataset="minhuh/prh", subset="wit_1024", models=["vit", "llm", "convnet"], store=published["store"]
    )
    files = {}
    for name, file in (
        ("vit", "vit_pool-cls.pt"),
        ("llm", "llm_pool-avg.pt"),
        ("convnet", "convnet_pool-cls.pt"),
    ):
        files[name] = published["tmp"] / file
        files[name].write_bytes(published["files"][file])
    return alignment, files


def _my_features(as_list: bool):
    """The scored model: (N, 5, 20) tensor or a list of five layers of different widths."""
    layers = _model(
        [20, 20, 20, 20, 20] if not as_list else [10, 20, 30, 20, 12], [2.5, 1.0, 0.3, 0.8, 4.0], 9
    )
    layers[2][7, 1] = 30.0
    return layers if as_list else torch.stack(layers, dim=1)


DIFFS: dict[str, float] = {}


@pytest.mark.parametrize("metric", ["mutual_knn", "cycle_knn", "cka", "unbiased_cka", "cknna"])
@pytest.mark.parametrize("as_list", [False, True], ids=["tensor", "list"])
def test_scores_equal_the_reference_alignment_score(platonic, metric, as_list):
    alignment, files = platonic
    feats = _my_features(as_list)
    ours = alignment.score(feats, metric=metric, topk=7)
    theirs = reference_alignment.alignment_score(feats, files, metric, topk=7)
    assert list(ours) == list(theirs) == ["vit", "llm", "convnet"]
    for name in theirs:
        score, layers = ours[name]
        assert layers == theirs[name][1], (name, ours[name], theirs[name])
        assert abs(score - theirs[name][0]) < 1e-4, (name, score, theirs[name][0])
        key = metric
        DIFFS[key] = max(DIFFS.get(key, 0.0), abs(score - theirs[name][0]))
    print(f"max |prh - reference| {metric} ({'list' if as_list else 'tensor'} feats): {DIFFS[metric]:.2e}")


def test_score_keeps_the_references_structure_and_adds_the_grid_and_p_values(platonic):
    alignment, _ = platonic
    feats = _my_features(False)
    scores = alignment.score(feats, "mutual_knn", topk=5)
    score, (i, j) = scores["vit"]
    assert isinstance(score, float) and (i, j) == scores["vit"].layers
    assert scores["vit"].sweep.scores.shape == (5, 4) and scores["vit"].p_value is None
    assert scores["convnet"].sweep.scores.shape == (5, 3)
    assert alignment.score(feats, "mutual_knn", k=5) == scores  # topk is the reference's name of k
    assert alignment.score(feats, "cka", topk=5) == alignment.score(
        feats, "cka"
    )  # ignored without neighbours
    with pytest.raises(InputError, match="topk=5 and k=3 disagree"):
        alignment.score(feats, "mutual_knn", topk=5, k=3)

    calibrated = alignment.score(feats, "mutual_knn", topk=5, calibrate=99, seed=1)
    from prh.stats import calibrate_sweep

    for name, result in calibrated.items():
        assert tuple(result) == tuple(scores[name])
        assert 1 / 100 <= result.p_value <= 1.0
        assert result.calibration.K == 99
    assert calibrated["vit"].p_value == pytest.approx(1 / 100)  # related features: beyond every permutation
    mine = torch.nn.functional.normalize(reference_alignment.prepare_features(feats), dim=-1)
    direct = calibrate_sweep(mine, alignment.references[0].layers, "mutual_knn", K=99, seed=1, k=5)
    assert direct.score == pytest.approx(calibrated["vit"].calibration.score, abs=1e-12)
    assert direct.p_value == calibrated["vit"].p_value

    rounded = alignment.score(feats, "cka", dtype="bfloat16")  # the reference's default dtype, when asked
    plain = alignment.score(feats, "cka")
    assert all(abs(rounded[n].score - plain[n].score) < 1e-2 for n in plain)
    assert any(rounded[n].score != plain[n].score for n in plain)
    with pytest.raises(InputError, match="dtype='int8' is not one of"):
        alignment.score(feats, "cka", dtype="int8")
    with pytest.raises(InputError, match="N=10 rows but the references have N=48"):
        alignment.score(feats[:10])


def test_alignment_refuses_what_the_published_set_does_not_have(published, monkeypatch):
    import prh

    monkeypatch.setenv(ENV_URL, published["server"].url)
    store = published["store"]
    with pytest.raises(InputError, match="published features exist for dataset='minhuh/prh' only"):
        prh.Alignment(dataset="openmoji", subset="wit_1024", models=["vit"], store=store)
    with pytest.raises(InputError, match="subset='wit_2048' is not a published subset"):
        prh.Alignment(dataset="minhuh/prh", subset="wit_2048", models=["vit"], store=store)
    with pytest.raises(InputError, match="name the published features"):
        prh.Alignment(dataset="minhuh/prh", subset="wit_1024", store=store)
    with pytest.raises(InputError, match="Did you mean 'vit'"):
        prh.Alignment(dataset="minhuh/prh", subset="wit_1024", models=["vitt"], store=store)
    vision = prh.Alignment(
        dataset="minhuh/prh", subset="wit_1024", models="all", store=store, modality="vision"
    )
    assert vision.models == ["vit", "convnet"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline, and no cached copy: load_dataset's own offline error
    monkeypatch.setenv("HF_DATASETS_CACHE", str(published["tmp"] / "no-datasets-cache"))
    with pytest.raises(OfflineError, match="cannot load dataset 'minhuh/prh' .*--dataset openmoji") as err:
        vision.get_data("text")
    with pytest.raises(OfflineError) as direct:
        load_dataset("wit_1024")
    assert str(err.value) == str(direct.value)
    with pytest.raises(MissingFeaturesError, match="prh fetch-reference llm"):
        load_published(["vit", "llm"], store)


def test_get_data_checks_the_dataset_against_the_bound_fingerprint(published, monkeypatch):
    import prh
    import prh.data
    from prh.data.base import PairedDataset

    class Toy(PairedDataset):
        def __init__(self, tweak: str = ""):
            super().__init__(
                "minhuh/prh@wit_1024", [f"{i}" for i in range(N)], [[f"c{i}{tweak}"] for i in range(N)]
            )

        def _image_bytes(self, i):
            return b"img%d" % i

    fetch_reference("vit", published["store"], _config(), dataset=Toy())
    with pytest.raises(InputError, match="N=47 items"):
        fetch_reference(
            "vit",
            published["store"],
            _config(),
            dataset=type("Short", (), {"__len__": lambda s: 47, "fingerprint": lambda s: "x"})(),
        )
    monkeypatch.setattr(prh.data, "load_dataset", lambda name, n=None: Toy())
    alignment = prh.Alignment(dataset="minhuh/prh", subset="wit_1024", models="vit", store=published["store"])
    assert alignment.get_data("text")[:2] == ["c0", "c1"]
    monkeypatch.setattr(prh.data, "load_dataset", lambda name, n=None: Toy(tweak="!"))
    other = prh.Alignment(dataset="minhuh/prh", subset="wit_1024", models="vit", store=published["store"])
    with pytest.raises(InputError, match="may not be the features' rows"):
        other.get_data("text")
