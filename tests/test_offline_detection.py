"""Without network, hub model loads and published-feature downloads say so at once instead of retrying for a
minute: checked against a closed port on 127.0.0.1 (nothing listens there, like a machine without network)."""

from __future__ import annotations

import socket

import huggingface_hub.constants as hconst
import pytest

import prh.data.hf as hf
import prh.features.download as dl
from prh.errors import DownloadError, OfflineError
from prh.models.guards import loading
from prh.models.spec import ModelSpec


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def no_network(monkeypatch):
    """The hub endpoint and any URL point at a closed local port; the probe memo starts empty."""
    port = _closed_port()
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(hf, "_HUB_PROBES", {})
    return f"http://127.0.0.1:{port}"


def _hub_spec() -> ModelSpec:
    return ModelSpec(
        name="some-hub-model", source="someone/not-cached-model", adapter="hf-causal-lm", modality="language"
    )


def test_closed_port_is_unreachable_and_a_listening_one_reachable(no_network):
    assert not hf.url_reachable(no_network + "/x.pt", timeout=2.0)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        assert hf.url_reachable(f"http://127.0.0.1:{sock.getsockname()[1]}/x.pt", timeout=2.0)


def test_unreachable_hub_loads_from_the_cache_only_and_says_offline(no_network, tmp_path):
    from huggingface_hub import hf_hub_download

    before = hconst.HF_HUB_OFFLINE
    with pytest.raises(OfflineError, match="unreachable or offline mode is on") as info, loading(_hub_spec()):
        assert hconst.HF_HUB_OFFLINE is True  # the load never touches the network
        hf_hub_download("someone/not-cached-model", "config.json", cache_dir=tmp_path)
    assert "\n" not in str(info.value)
    assert hconst.HF_HUB_OFFLINE == before  # restored
    assert hf._HUB_PROBES == {no_network: False}  # probed once, remembered for the process


def test_reachable_hub_is_left_online(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{sock.getsockname()[1]}")
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setattr(hf, "_HUB_PROBES", {})
        monkeypatch.setattr(hconst, "HF_HUB_OFFLINE", False)
        with loading(_hub_spec()):
            assert hconst.HF_HUB_OFFLINE is False


def test_offline_flag_needs_no_probe(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(
        hf, "url_reachable", lambda *a, **k: pytest.fail("probed although offline mode is on")
    )
    assert hf.hub_offline()


def test_local_models_are_not_probed(monkeypatch, tmp_path):
    monkeypatch.setattr(hf, "_HUB_PROBES", {})
    monkeypatch.setattr(hf, "url_reachable", lambda *a, **k: pytest.fail("probed for a local model"))
    spec = ModelSpec(name="local", source=str(tmp_path), adapter="hf-causal-lm", modality="language")
    with loading(spec):
        pass


def test_download_from_an_unreachable_server_fails_at_once(no_network, tmp_path, monkeypatch):
    """One attempt, no backoff sleeps (the default would retry 5 times over ~31 s), one line naming the cause."""
    sleeps = []
    monkeypatch.setattr(dl.time, "sleep", sleeps.append)
    with pytest.raises(DownloadError, match="no network, or nothing answers") as info:
        dl.download(no_network + "/files/x.pt", tmp_path / "x.pt", options=dl.DownloadOptions(progress=False))
    assert sleeps == []
    assert "\n" not in str(info.value)
    assert not (tmp_path / "x.pt").exists()
