"""The frozen, validated configs: prh.align.AlignConfig (every option that changes an alignment's numbers, and the
result-cache key), prh.features.ExtractConfig, prh.distributed.RayOptions and prh.align.DatasetName. Bad values
raise InputError naming the field and the fix, at the config, before any work; the APIs take the config (or a
mapping of its fields) and nothing else."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from typer.testing import CliRunner

from prh.align import AlignConfig, DatasetName, ModelFeatures, PairGrid, results_key, run_alignment
from prh.cli import app
from prh.distributed import RayOptions
from prh.errors import InputError
from prh.features import ExtractConfig


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"k": 0}, r"k=0 must be at least 1"),
        ({"k": 2.5}, r"k=2.5 must be an integer"),
        ({"k": True}, r"k=True must be an integer"),
        ({"alpha": 1.5}, r"alpha=1.5 must satisfy 0.0 < alpha < 1.0"),
        ({"alpha": 0}, r"alpha=0.0 must satisfy"),
        ({"metrics": ["mutual_knn", "nope"]}, r"metrics='nope' is not one of"),
        ({"metrics": "mutal_knn"}, r"Did you mean 'mutual_knn'"),
        ({"metrics": []}, r"metrics is empty"),
        ({"metrics": ["cka", "cka"]}, r"metrics names \['cka'\] more than once"),
        ({"metrics": 3}, r"metrics=3 must be a list of names"),
        ({"calibrate": -1}, r"calibrate=-1 must be at least 0 \(a number of permutations K; 0 = off\)"),
        ({"calibrate": "10"}, r"calibrate='10' must be an integer"),
        ({"calibrate": 5}, r"calibrate=5 permutations cannot reach alpha=0.05.*calibrate >= 19"),
        ({"calibrate": 50, "alpha": 0.01}, r"calibrate >= 99"),
        ({"calibrate_metrics": ["cknnaa"]}, r"calibrate_metrics='cknnaa' is not one of.*'cknna'"),
        ({"calibrate_within": "false"}, r"calibrate_within='false' must be true or false"),
        ({"shuffle_control": 1}, r"shuffle_control=1 must be true or false"),
        ({"bootstrap": -3}, r"bootstrap=-3 must be at least 0"),
        ({"bootstrap": 1}, r"bootstrap=1 is too few.*bootstrap >= 2"),
        ({"seed": 1.5}, r"seed=1.5 must be an integer"),
        ({"q": 0}, r"q=0.0 must satisfy 0.0 < q <= 1.0"),
        ({"q": 1.2}, r"q=1.2 must satisfy"),
        ({"q": float("nan")}, r"q=nan must be a finite number"),
        ({"pool": "max"}, r"pool='max' is not one of \['mean', 'last', 'cls'\]"),
    ],
)
def test_align_config_refuses_bad_values_naming_the_field(bad, match):
    with pytest.raises(InputError, match=match):
        AlignConfig(**bad)


def test_align_config_normalises_and_is_frozen():
    config = AlignConfig(metrics="mutual_knn, cknna", calibrate_metrics=["cknna"], k=5, alpha=1 / 20)
    assert config.metrics == ("mutual_knn", "cknna") and config.calibrate_metrics == ("cknna",)
    assert isinstance(config.alpha, float) and config == AlignConfig(
        metrics=("mutual_knn", "cknna"), k=5, calibrate_metrics=("cknna",)
    )
    assert AlignConfig().metrics == ("mutual_knn", "cknna", "unbiased_cka")
    assert AlignConfig(calibrate_metrics=[]).calibrate_metrics == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.k = 3  # type: ignore[misc]
    assert AlignConfig(calibrate=19).calibrate == 19 and AlignConfig(bootstrap=2).bootstrap == 2


def test_align_config_round_trip_replace_and_coerce():
    config = AlignConfig(metrics=["cka", "rsa"], k=4, calibrate=99, bootstrap=10, seed=3, pool="cls")
    data = config.to_dict()
    assert [f.name for f in dataclasses.fields(AlignConfig)] == list(data)
    assert data["metrics"] == ["cka", "rsa"] and AlignConfig.from_dict(data) == config
    assert config.replace(k=7) == AlignConfig.from_dict({**data, "k": 7})
    with pytest.raises(InputError, match="k=0 must be at least 1"):
        config.replace(k=0)
    with pytest.raises(InputError, match=r"unknown option\(s\) \['kk'\] of AlignConfig. Did you mean 'k'"):
        AlignConfig.from_dict({"kk": 3})
    with pytest.raises(InputError, match="unknown option"):
        config.replace(not_an_option=1)
    assert AlignConfig.coerce(None) == AlignConfig() and AlignConfig.coerce(config) is config
    assert AlignConfig.coerce({"k": 4}) == AlignConfig(k=4)
    with pytest.raises(InputError, match="config must be an instance of AlignConfig"):
        AlignConfig.coerce("k=4")


#: a second valid value of every field (each differs from the default)
OTHER_VALUES = {
    "metrics": ("mutual_knn",),
    "k": 5,
    "calibrate": 99,
    "calibrate_metrics": ("mutual_knn",),
    "calibrate_within": False,
    "bootstrap": 20,
    "alpha": 0.01,
    "seed": 1,
    "q": 0.9,
    "pool": "mean",
    "shuffle_control": True,
    "select": "held-out",
    "select_splits": 5,
    "neighbors": "approximate",
    "path": "gram",
}


def test_the_result_cache_key_covers_every_config_field():
    assert set(OTHER_VALUES) == {f.name for f in dataclasses.fields(AlignConfig)}, "add the new field here"
    features = [
        ModelFeatures(name, [], {"write_id": f"w-{name}", "dataset": {"fingerprint": "f"}, "pool": "mean"})
        for name in ("a", "b")
    ]
    base = results_key(features, AlignConfig(), ["a", "b"])
    assert base == results_key(features, AlignConfig(), ["a", "b"])  # deterministic
    keys = {base}
    for name, value in OTHER_VALUES.items():
        changed = AlignConfig().replace(**{name: value})
        assert getattr(changed, name) != getattr(AlignConfig(), name)
        keys.add(results_key(features, changed, ["a", "b"]))
    assert len(keys) == 1 + len(OTHER_VALUES)  # every field changes the key
    assert results_key(features, AlignConfig(), ["a"], ["b"]) != base  # so do the model sets
    moved = [ModelFeatures("a", [], {**features[0].info, "write_id": "new"}), features[1]]
    assert results_key(moved, AlignConfig(), ["a", "b"]) != base  # and the stored features' identity


def test_experiment_takes_the_config_and_reads_its_fields():
    g = torch.Generator().manual_seed(0)
    x = ModelFeatures("x", [torch.randn(12, 4, generator=g)], {"modality": "vision"})
    y = ModelFeatures("y", [torch.randn(12, 3, generator=g)], {"modality": "language"})
    exp = PairGrid([x], [y], {"metrics": ["mutual_knn"], "k": 3})
    assert exp.config == AlignConfig(metrics=["mutual_knn"], k=3)
    assert (exp.metrics, exp.k, exp.calibrate, exp.alpha, exp.seed) == (("mutual_knn",), 3, 0, 0.05, 0)
    assert exp.run(progress=False).table["k"].tolist() == [3]
    assert PairGrid([x]).config == AlignConfig()
    with pytest.raises(InputError, match="config must be an instance of AlignConfig"):
        PairGrid([x], [y], ["mutual_knn"])
    with pytest.raises(InputError, match="k=0"):
        PairGrid([x], [y], {"k": 0})


def test_run_alignment_checks_its_config_and_dataset_before_reading_the_store(tmp_path):
    from prh.features.store import FeatureStore

    store = FeatureStore(tmp_path / "nothing-here")
    with pytest.raises(InputError, match=r"unknown option\(s\) \['metric'\]"):
        run_alignment([], None, store, {"metric": "cka"}, dataset="openmoji")
    with pytest.raises(InputError, match="dataset=42 must be a dataset"):
        run_alignment([], None, store, AlignConfig(), dataset=42)
    with pytest.raises(InputError, match="models_x is empty"):
        run_alignment([], None, store, AlignConfig(), dataset="openmoji")


def test_dataset_name():
    assert DatasetName("openmoji", 64) == DatasetName("openmoji", n=64)
    with pytest.raises(InputError, match="n=0 must be at least 1"):
        DatasetName("openmoji", 0)
    with pytest.raises(InputError, match="must be a non-empty string"):
        DatasetName("")


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"batch_size": 0}, r"batch_size=0 must be at least 1"),
        ({"batch_size": "8"}, r"batch_size='8' must be an integer"),
        ({"device": "gpu:0"}, r"device='gpu:0' is not a torch device; use 'auto', 'cpu'"),
        ({"device": 0}, r"device=0 must be a device name"),
        ({"dtype": "int8"}, r"dtype='int8' is not supported; use one of float32, float16, bfloat16, auto"),
        ({"pool": "max"}, r"pool='max' is not one of"),
        ({"force": "false"}, r"force='false' must be true or false"),
        ({"trust_remote_code": 1}, r"trust_remote_code=1 must be true or false"),
        ({"stop_on_error": None}, r"stop_on_error=None must be true or false"),
        ({"device_map": ""}, r"device_map='' must be a string such as 'auto', or None"),
    ],
)
def test_extract_config_refuses_bad_values_naming_the_field(bad, match):
    with pytest.raises(InputError, match=match):
        ExtractConfig(**bad)


def test_extract_config_defaults_and_canonical_dtype():
    config = ExtractConfig()
    assert (config.pool, config.device, config.dtype, config.batch_size, config.force) == (
        None,
        "auto",
        "float32",
        16,
        False,
    )
    assert ExtractConfig(dtype="BF16").dtype == "bfloat16" and ExtractConfig(dtype="auto").dtype == "auto"
    assert ExtractConfig(device="cuda:3").device == "cuda:3"  # not checked against this machine's hardware
    assert ExtractConfig.from_dict(ExtractConfig(batch_size=4).to_dict()) == ExtractConfig(batch_size=4)
    with pytest.raises(InputError, match=r"unknown option\(s\) \['batchsize'\] of ExtractConfig"):
        ExtractConfig.from_dict({"batchsize": 4})


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"max_retries": -1}, r"max_retries=-1 must be at least 0"),
        ({"block_size": 0}, r"block_size=0 must be at least 1 \(models per tile side\)"),
        ({"cpus_per_task": 0}, r"cpus_per_task=0.0 must satisfy 0.0 < cpus_per_task"),
        ({"address": 6379}, r"address=6379 must be a Ray address string"),
        ({"init_kwargs": "num_cpus=2"}, r"init_kwargs='num_cpus=2' must be a dict"),
    ],
)
def test_ray_options_refuse_bad_values(bad, match):
    with pytest.raises(InputError, match=match):
        RayOptions(**bad)


@pytest.mark.parametrize(
    "flags, match",
    [
        (["--k", "0"], "k=0 must be at least 1"),
        (["--alpha", "1.5"], "alpha=1.5 must satisfy"),
        (["--metric", "mutual_knn,nope"], "metrics='nope' is not one of"),
        (["--calibrate", "-1"], "calibrate=-1 must be at least 0"),
        (["--bootstrap", "1"], "bootstrap=1 is too few"),
        (["--pool", "max"], "pool='max' is not one of"),
    ],
)
def test_prh_align_validates_its_flags_through_the_config_before_any_work(flags, match, tmp_path):
    args = [
        "align",
        "--models",
        "no-such-model",
        "--store",
        str(tmp_path / "s"),
        "--out",
        str(tmp_path / "r"),
    ]
    res = CliRunner().invoke(app, args + flags)
    assert isinstance(res.exception, InputError), res.output
    assert match in str(res.exception)
    assert not (tmp_path / "r").exists()


def test_prh_extract_validates_its_flags_through_the_config(tmp_path):
    res = CliRunner().invoke(
        app, ["extract", "--models", "no-such-model", "--dtype", "int8", "--store", str(tmp_path / "s")]
    )
    assert isinstance(res.exception, InputError) and "dtype='int8' is not supported" in str(res.exception)


def test_alignment_checks_q_like_the_config_before_loading_anything(tmp_path):
    import prh

    with pytest.raises(InputError, match=r"q=1.5 must satisfy 0.0 < q <= 1.0"):
        prh.Alignment(dataset="openmoji", models="no-such-model", store=tmp_path, q=1.5)


def test_world_settings_and_learner_config_are_config_fields():
    import json

    from prh.world.experiment import FAST, WorldSettings
    from prh.world.learner import LearnerConfig

    assert WorldSettings.from_dict(json.loads(json.dumps(FAST.to_dict()))) == FAST  # lists back to tuples
    assert FAST.replace(k=3).k == 3 and FAST.replace(widths=[2, 4]).widths == (2, 4)
    with pytest.raises(InputError, match="Did you mean 'widths'"):
        WorldSettings.from_dict({"widht": (2, 4)})
    with pytest.raises(InputError, match=r"widths\[1\]=0 must be at least 1"):
        WorldSettings(widths=(4, 0))
    with pytest.raises(InputError, match="data_tokens must be strictly increasing"):
        WorldSettings(data_tokens=(1000, 1000))
    with pytest.raises(InputError, match="lossy_fraction=0.0"):
        WorldSettings(lossy_fraction=0.0)
    config = LearnerConfig(width=8, lr=1e-2)
    assert LearnerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match="temperature=0.0"):
        config.replace(temperature=0.0)
    with pytest.raises(InputError, match="batch_size=1 must be at least 2"):
        LearnerConfig(batch_size=1)
