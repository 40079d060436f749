"""A models file may ask to run code; only the person running prh grants it (command line or Python call), and the
code that will be imported is named in one line, the same line that refuses a request nobody granted."""

from __future__ import annotations

import json
import sys
import warnings

import pytest

from prh.errors import InputError, PrhWarning
from prh.models import build_adapter, get_model, load_user_config, reset_registry
from prh.models.spec import ModelSpec
from prh.models.trust import check_remote_code, remote_code_modules


@pytest.fixture
def fresh_registry(monkeypatch):
    monkeypatch.delenv("PRH_MODELS", raising=False)
    reset_registry()
    yield
    reset_registry()


def _repo(tmp_path, marker):
    """A local model folder whose config asks transformers to import modeling_evil.py (which would leave marker)."""
    repo = tmp_path / "evil-repo"
    repo.mkdir()
    (repo / "config.json").write_text(
        json.dumps({"model_type": "evil", "auto_map": {"AutoModel": "modeling_evil.EvilModel"}})
    )
    (repo / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["tokenization_evil.EvilTokenizer", None]}})
    )
    (repo / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    return repo


def _entry(repo, trust_remote_code=True):
    return (
        f'[[model]]\nname = "evil"\nsource = "{repo}"\nadapter = "hf-vision"\n'
        f"trust_remote_code = {'true' if trust_remote_code else 'false'}\n"
    )


def test_remote_code_modules_reads_auto_map(tmp_path):
    repo = _repo(tmp_path, tmp_path / "pwned")
    assert remote_code_modules(str(repo)) == ["modeling_evil.py", "tokenization_evil.py"]
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text('{"model_type": "vit"}')
    assert remote_code_modules(str(plain)) == []
    assert remote_code_modules(str(tmp_path / "missing-folder")) is None  # nothing readable: unknown


def test_a_files_request_for_repository_code_is_refused_without_the_grant(tmp_path, fresh_registry):
    marker = tmp_path / "pwned"
    repo = _repo(tmp_path, marker)
    f = tmp_path / "models.toml"
    f.write_text(_entry(repo))
    load_user_config(f)  # asking is allowed; running is not
    spec = get_model("evil")
    assert spec.trust_remote_code is True
    with pytest.raises(InputError) as err:
        build_adapter(spec, device="cpu")
    text = str(err.value)
    for word in (
        "model 'evil'",
        "trust_remote_code = true",
        "modeling_evil.py",
        "refused",
        "--trust-remote-code",
    ):
        assert word in text, (word, text)
    assert "\n" not in text
    assert not marker.exists()


def test_granted_repository_code_is_announced_in_the_same_line(tmp_path):
    repo = _repo(tmp_path, tmp_path / "pwned")
    spec = ModelSpec(
        name="evil", source=str(repo), adapter="hf-vision", modality="vision", trust_remote_code=True
    )
    with pytest.raises(InputError) as refused:
        check_remote_code(spec, granted=False)
    with pytest.warns(PrhWarning) as record:
        check_remote_code(spec, granted=True)
    (line,) = [str(w.message) for w in record]
    assert "modeling_evil.py, tokenization_evil.py from " + str(repo) in line
    assert line.endswith("allowed by --trust-remote-code.")
    assert line.split(": allowed")[0] == str(refused.value).split(": refused")[0]  # the same line
    # granted, not asked, and the configs name no code: nothing will be imported, nothing to say
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text('{"model_type": "vit"}')
    quiet = ModelSpec(name="vit", source=str(plain), adapter="hf-vision", modality="vision")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_remote_code(quiet, granted=True)
        check_remote_code(quiet, granted=False)


def test_granted_but_unasked_code_is_still_named(tmp_path):
    repo = _repo(tmp_path, tmp_path / "pwned")
    spec = ModelSpec(name="evil", source=str(repo), adapter="hf-vision", modality="vision")
    with pytest.warns(PrhWarning, match="modeling_evil.py"):
        check_remote_code(spec, granted=True)


def _cli(monkeypatch, capsys, *args):
    from prh.cli import main

    monkeypatch.setattr(sys, "argv", ["prh", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


@pytest.mark.parametrize("how", ["models-file", "PRH_MODELS"])
def test_prh_extract_refuses_a_files_request_up_front(tmp_path, monkeypatch, capsys, fresh_registry, how):
    marker = tmp_path / "pwned"
    repo = _repo(tmp_path, marker)
    f = tmp_path / "models.toml"
    f.write_text(_entry(repo))
    store = tmp_path / "store"
    monkeypatch.chdir(tmp_path)
    args = ["extract", "--models", "evil", "--dataset", "openmoji", "--n", "4", "--device", "cpu"]
    args += ["--store", str(store), "--no-progress"]
    if how == "PRH_MODELS":
        monkeypatch.setenv("PRH_MODELS", str(f))
    else:
        args += ["--models-file", str(f)]
    code, err = _cli(monkeypatch, capsys, *args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    for word in ("error: ", "model 'evil'", "modeling_evil.py", "refused", "--trust-remote-code"):
        assert word in lines[0], (word, lines[0])
    assert not marker.exists()
    assert not store.exists() or not any(store.rglob("*.safetensors"))


def test_the_trust_code_flag_does_not_grant_repository_code(tmp_path, monkeypatch, capsys, fresh_registry):
    """--trust-code grants builders, not trust_remote_code: each kind of code has its own flag."""
    marker = tmp_path / "pwned"
    f = tmp_path / "models.toml"
    f.write_text(_entry(_repo(tmp_path, marker)))
    monkeypatch.chdir(tmp_path)
    code, err = _cli(
        monkeypatch, capsys, "extract", "--models", "evil", "--dataset", "openmoji", "--n", "4",
        "--device", "cpu", "--store", str(tmp_path / "s"), "--no-progress", "--models-file", str(f), "--trust-code",
    )  # fmt: skip
    assert code == 2 and "--trust-remote-code" in err and not marker.exists(), err
